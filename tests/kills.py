"""Runs killed with SIGKILL (an OOM kill, a node going away, ``kill -9``) at a named point inside
dlt, for ``tests/test_kills.py`` and the randomized model (``tests/test_model.py``).

A run is either the user's own code, the README's (``USER_CODE``: a pipeline with dlt's defaults
and ``rackwave_source()``, every setting from the environment, as a scheduler runs a script), or
the ``rackwave`` command (``python -m pipelines.rackwave_pipeline``). Either is started through
``HOOK``, which wraps one dlt function to SIGKILL its own process at the point named in
``RACKWAVE_TEST_SIGKILL_AT``, then runs the script or the module as Python would.

Where a run is in dlt 1.31 is visible in its working folder, ``<DLT_DATA_DIR>/pipelines/<name>/``:

* ``normalize/<8 random chars>/<load id>/``: the package being extracted. A killed extract leaves
  it behind; dlt never reads it again (each extract uses a new random folder), and ``state.json``
  (the local state) gets the run's cursors only once the extract has finished.
* ``normalize/extracted/<load id>/``: extracted, waiting for normalize.
* ``load/new/<load id>/`` while it is normalized, then ``load/normalized/<load id>/`` while it is
  loaded: there every table's job file moves ``new_jobs/`` -> ``started_jobs/`` ->
  ``completed_jobs/``; a package with a started or completed job is "partially loaded".
* ``load/loaded/<load id>/``: loaded, and recorded in the destination's ``_dlt_loads``.

The points (the same names on every destination):

* ``extract:before-commit``: every page read, nothing committed;
* ``normalize:before-commit``: files written, not committed;
* ``normalize:half-committed``: between normalize's two renames (its package is in
  ``load/normalized`` and still in ``normalize/extracted``);
* ``load:before-job:<table>`` / ``load:after-job:<table>``: around the first load job of
  ``<table>`` (``leads``, ``contacts``, ``leads_history``, dlt's ``_dlt_pipeline_state``); after
  it, its work is committed in the warehouse but dlt has not recorded the job as done;
* ``load:after-merge:<table>``: after the SQL job that merges ``<table>``, not yet recorded;
* ``load:before-complete``: every table done, the load not recorded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from support import Loader, command_environment
from warehouses import DuckDBWarehouse, Warehouse

POINT_VARIABLE = "RACKWAVE_TEST_SIGKILL_AT"

#: The user's code, as the README shows it: every setting from the environment.
USER_CODE = """
import os, dlt
from rackwave_source import rackwave_source

where = os.environ["WAREHOUSE"]
destination = dlt.destinations.duckdb(os.environ["DUCKDB_FILE"]) if where == "duckdb" else where
pipeline = dlt.pipeline("rackwave", destination=destination,
                        dataset_name=os.environ.get("RACKWAVE_TEST_DATASET", "rackwave"))
source = rackwave_source(full_scan=True) if os.environ.get("FULL_SCAN") else rackwave_source()
print(pipeline.run(source, table_format="delta" if where == "filesystem" else None))
"""

#: ``python -c HOOK script.py`` runs the script, ``python -c HOOK -m module args...`` the module,
#: each SIGKILLing its own process at the point named in RACKWAVE_TEST_SIGKILL_AT.
HOOK = r"""
import os, runpy, signal, sys

point = os.environ.get("RACKWAVE_TEST_SIGKILL_AT", "")
where, _, table = point.partition(":")[2].partition(":") if point.startswith("load:") else ("", "", "")

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def wrap(owner, name, before=False, after=False, when=lambda *a, **k: True):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        if before and when(*args, **kwargs):
            die()
        result = original(*args, **kwargs)
        if after and when(*args, **kwargs):
            die()
        return result
    setattr(owner, name, wrapper)

of_table = lambda self, *a, **k: self.load_table_name == table
if point == "extract:before-commit":
    from dlt.extract.extract import Extract
    wrap(Extract, "commit_packages", before=True)
elif point in ("normalize:before-commit", "normalize:half-committed"):
    from dlt.common.storages.load_storage import LoadStorage
    wrap(LoadStorage, "commit_new_load_package", before=point.endswith("before-commit"),
         after=point.endswith("half-committed"))
elif where in ("before-job", "after-job"):
    from dlt.common.destination.client import RunnableLoadJob
    wrap(RunnableLoadJob, "run_managed", before=where == "before-job",
         after=where == "after-job", when=of_table)
elif where == "after-merge":
    from dlt.destinations.job_client_impl import SqlLoadJob
    wrap(SqlLoadJob, "run", after=True, when=of_table)
elif point == "load:before-complete":
    from dlt.load.load import Load
    wrap(Load, "complete_package", before=True)
elif point:
    raise SystemExit(f"unknown {point!r}")

if sys.argv[1] == "-m":
    sys.argv = sys.argv[2:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclass
class Runs:
    """One machine's scheduled runs, by one way in (``"dlt"``: the user's code; ``"command"``:
    the ``rackwave`` command), into one warehouse. Its folders are ``support.Loader``'s for the
    same ``folder``, so a run arranged in-process and the runs here share the pipeline."""

    server: Any
    folder: Path
    way: str = "dlt"
    warehouse: Optional[Warehouse] = None
    settings: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.duckdb_file = self.folder / "rackwave_data.duckdb"
        self.target: Warehouse = self.warehouse or DuckDBWarehouse(self.duckdb_file)
        self.script = self.folder / "load_rackwave.py"
        self.script.write_text(USER_CODE)

    def run(self, kill_at: str = "", full_scan: bool = False) -> subprocess.CompletedProcess:
        """One run in a process of its own, as its scheduler starts it."""
        return subprocess.run(
            [sys.executable, *(["-c", HOOK] if kill_at else []), *self.entry(full_scan)],
            cwd=self.folder, env=self.environment(kill_at, full_scan), capture_output=True,
            text=True, timeout=self.target.run_timeout)

    def entry(self, full_scan: bool) -> List[str]:
        if self.way == "dlt":
            return [str(self.script)]
        return ["-m", "pipelines.rackwave_pipeline", "--base-url", self.server.base_url,
                "--destination", self.target.name, "--dataset", self.target.dataset,
                *(["--duckdb-file", str(self.duckdb_file)] if self.target.name == "duckdb"
                  else []),
                *(["--full-scan"] if full_scan else [])]

    def environment(self, kill_at: str, full_scan: bool) -> Dict[str, str]:
        return command_environment(
            self.folder,  # pipelines in <folder>/pipelines, as Loader's
            SOURCES__RACKWAVE__CLIENT_ID=DEMO_CLIENT_ID,
            SOURCES__RACKWAVE__CLIENT_SECRET=DEMO_CLIENT_SECRET,
            SOURCES__RACKWAVE__BASE_URL=self.server.base_url,
            **{f"SOURCES__RACKWAVE__{k.upper()}": str(v) for k, v in self.settings.items()},
            DUCKDB_FILE=str(self.duckdb_file), WAREHOUSE=self.target.name,
            RACKWAVE_TEST_DATASET=self.target.dataset, **self.target.settings(),
            **{POINT_VARIABLE: kill_at}, **({"FULL_SCAN": "1"} if full_scan else {}))

    def arrange(self) -> None:
        """A good load before the story, run in-process (the same pipeline, sooner)."""
        loader = Loader(server=self.server, workdir=self.folder, options=dict(self.settings),
                        warehouse=self.target, via=self.way)
        loader.run()

    def killed(self, kill_at: str, full_scan: bool = False) -> subprocess.CompletedProcess:
        done = self.run(kill_at=kill_at, full_scan=full_scan)
        assert done.returncode == -signal.SIGKILL, \
            f"not killed at {kill_at} (exit {done.returncode}):\n{done.stderr[-2000:]}"
        return done


def started_jobs(pipeline_dir: Path) -> int:
    """Load jobs running now in the pipeline's folder (dlt moves each job file new_jobs ->
    started_jobs -> completed_jobs of its package in ``load/normalized``)."""
    folder = pipeline_dir / "load" / "normalized"
    total = 0
    for package in (os.listdir(folder) if folder.is_dir() else []):
        try:
            total += len(os.listdir(folder / package / "started_jobs"))
        except FileNotFoundError:  # moved on meanwhile
            pass
    return total


class Rows:
    """A warehouse as ``support.assert_equals_api`` reads it."""

    def __init__(self, warehouse: Any) -> None:
        self.warehouse = warehouse

    def query(self, sql: str) -> List[Any]:
        return list(self.warehouse.query(sql)[1])

