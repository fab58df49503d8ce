"""Plain dlt code killed at any step, then run again as it is: exact after at most two reruns.

The user's code is the README's: ``dlt.pipeline(...).run(rackwave_source())`` with dlt's defaults,
no setting and no code of ours around it. It runs in a process of its own, killed with SIGKILL
(an OOM kill, a node going away) at a point inside dlt, for each kind of run: the first load, an
incremental run, and a full scan asked for in code (``rackwave_source(full_scan=True)``). Then the
same code runs again, without ``full_scan``, as the scheduler's next slot would.

dlt resumes a package a killed run left: the first rerun loads it and returns without extracting,
the second reads the API again. So after at most two reruns both tables equal the API, and after
every run, the killed one included, no id is in a table twice. What makes it hold
(``rackwave_source/``): every run merges on ``id``, full scans too, so a package loaded twice or
a job run again changes nothing; a full scan asked for and killed stays owed
(``read/scan_requests.py``); a package left between normalize's two renames is repaired
(``recovery.py``). The kill points are in ``KILL_POINTS`` (``tests/test_crashes.py`` explains
where dlt keeps a run's work).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from support import assert_equals_api, command_environment
from warehouses import DeltaWarehouse, DuckDBWarehouse, PostgresWarehouse
from test_faults import FIELDS, api_snapshot, assert_warehouse_equals, change_records, \
    warehouse_rows

REPO = Path(__file__).resolve().parents[1]

#: The user's code, as the README shows it.
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

#: Runs USER_CODE, SIGKILLing its own process at the point named in RACKWAVE_TEST_SIGKILL_AT.
HOOK = r"""
import os, runpy, signal, sys

point = os.environ.get("RACKWAVE_TEST_SIGKILL_AT", "")

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

if point == "extract:before-commit":
    from dlt.extract.extract import Extract
    wrap(Extract, "commit_packages", before=True)
elif point == "normalize:before-commit":
    from dlt.common.storages.load_storage import LoadStorage
    wrap(LoadStorage, "commit_new_load_package", before=True)
elif point == "normalize:half-committed":
    from dlt.common.storages.load_storage import LoadStorage
    wrap(LoadStorage, "commit_new_load_package", after=True)
elif point in ("load:before-leads-job", "load:after-leads-job"):
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob
    leads = lambda self: self.load_table_name == "leads"
    wrap(DuckDbCopyJob, "run", before=point.endswith("before-leads-job"),
         after=point.endswith("after-leads-job"), when=leads)
elif point == "load:after-leads-job-any":
    from dlt.common.destination.client import RunnableLoadJob
    wrap(RunnableLoadJob, "run_managed", after=True,
         when=lambda self, *a, **k: self.load_table_name == "leads")
elif point == "load:after-state-job":
    from dlt.common.destination.client import RunnableLoadJob
    wrap(RunnableLoadJob, "run_managed", after=True,
         when=lambda self, *a, **k: self.load_table_name == "_dlt_pipeline_state")
elif point == "load:before-complete":
    from dlt.load.load import Load
    wrap(Load, "complete_package", before=True)
elif point:
    raise SystemExit(f"unknown {point!r}")

runpy.run_path(sys.argv[1], run_name="__main__")
"""

KILL_POINTS = [
    pytest.param("extract:before-commit", id="extract: every page read, nothing committed"),
    pytest.param("normalize:before-commit", id="normalize: files written, not committed"),
    pytest.param("normalize:half-committed", id="normalize: between its two renames"),
    pytest.param("load:before-leads-job", id="load: before the leads job"),
    pytest.param("load:after-leads-job", id="load: leads copied, not yet recorded"),
    pytest.param("load:before-complete", id="load: every table merged, load not recorded"),
]
RUNS = ["first load", "incremental run", "full scan"]


#: Elsewhere than DuckDB: the points that are the same on every destination, and the one after
#: a leads job ran (a Postgres COPY into staging; the Delta merge of the table), before dlt
#: recorded it.
OTHER_WAREHOUSE_POINTS = [
    pytest.param("extract:before-commit", id="extract"),
    pytest.param("normalize:half-committed", id="normalize: between its two renames"),
    pytest.param("load:after-leads-job-any", id="load: leads job done, not yet recorded"),
    pytest.param("load:after-state-job", id="load: dlt's state row written, not yet recorded"),
    pytest.param("load:before-complete", id="load: every table done, load not recorded"),
]


class UserCode:
    """The user's script in a folder of its own (its DuckDB file or warehouse, dlt's data dir)."""

    def __init__(self, server: Any, folder: Path, warehouse: Any = None) -> None:
        self.server, self.folder = server, folder
        self.script = folder / "load_rackwave.py"
        self.script.write_text(USER_CODE)
        self.duckdb_file = folder / "rackwave_data.duckdb"
        self.warehouse = warehouse or DuckDBWarehouse(self.duckdb_file)

    def run(self, kill_at: str = "", full_scan: bool = False) -> subprocess.CompletedProcess:
        env = command_environment(
            self.folder / "dlt",
            SOURCES__RACKWAVE__CLIENT_ID=DEMO_CLIENT_ID,
            SOURCES__RACKWAVE__CLIENT_SECRET=DEMO_CLIENT_SECRET,
            SOURCES__RACKWAVE__BASE_URL=self.server.base_url,
            SOURCES__RACKWAVE__PER_PAGE="50",
            DUCKDB_FILE=str(self.duckdb_file), WAREHOUSE=self.warehouse.name,
            RACKWAVE_TEST_DATASET=self.warehouse.dataset,
            **self.warehouse.settings(),
            RACKWAVE_TEST_SIGKILL_AT=kill_at,
            **({"FULL_SCAN": "1"} if full_scan else {}),
        )
        entry = ["-c", HOOK, str(self.script)] if kill_at else [str(self.script)]
        return subprocess.run([sys.executable, *entry], cwd=self.folder, env=env,
                              capture_output=True, text=True, timeout=self.warehouse.run_timeout)


class Rows:
    """A warehouse as ``support.assert_equals_api`` reads it."""

    def __init__(self, warehouse: Any) -> None:
        self.warehouse = warehouse

    def query(self, sql: str) -> List[Tuple[Any, ...]]:
        return self.warehouse.query(sql)[1]


def assert_no_id_twice(duckdb_file: Path) -> None:
    if not duckdb_file.exists():
        return
    for kind in FIELDS:
        try:
            counts, _ = warehouse_rows(duckdb_file, kind)
        except Exception as exc:  # noqa: BLE001 - the table is not there yet
            if "does not exist" in str(exc):
                continue
            raise
        doubled = [i for i, n in counts.items() if n > 1]
        assert not doubled, f"{kind}: {len(doubled)} ids twice, e.g. {doubled[:3]}"


@pytest.mark.parametrize("kill_at", KILL_POINTS)
@pytest.mark.parametrize("kind", RUNS)
def test_plain_dlt_code_killed_at_any_step_is_exact_after_at_most_two_reruns(
        sandbox_factory, tmp_path, kind, kill_at):
    server = sandbox_factory(leads=400, contacts=150)
    user = UserCode(server, tmp_path)
    if kind != "first load":
        arranged = user.run()
        assert arranged.returncode == 0, arranged.stderr
        change_records(server, updates=kind == "full scan")  # edits reach only full scans
    expected = api_snapshot(server)

    killed = user.run(kill_at=kill_at, full_scan=kind == "full scan")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert_no_id_twice(user.duckdb_file)

    outcomes: Dict[int, str] = {}
    for rerun in (1, 2):
        again = user.run()  # plain, as the next scheduled slot runs it
        assert again.returncode == 0, again.stderr[-3000:]
        assert_no_id_twice(user.duckdb_file)
        try:
            assert_warehouse_equals(user.duckdb_file, expected)
            outcomes[rerun] = "exact"
            break
        except AssertionError as exc:
            outcomes[rerun] = str(exc)
    assert "exact" in outcomes.values(), outcomes


def test_a_pipeline_whose_duckdb_file_was_deleted_loads_everything_again(sandbox, tmp_path):
    """The local state outlives the file; dlt notices the dataset is gone and wipes it, so the
    next run is a first load, not an incremental run into an empty file."""
    user = UserCode(sandbox, tmp_path)
    assert user.run().returncode == 0
    user.duckdb_file.unlink()
    sandbox.admin.insert("leads", count=2)

    again = user.run()

    assert again.returncode == 0, again.stderr
    assert_warehouse_equals(user.duckdb_file, api_snapshot(sandbox))


def other_warehouse_cases() -> List[Any]:
    """Every kill point on each warehouse, each with one kind of run, alternating (the DuckDB
    matrix above has every pair): each warehouse sees both kinds, each kill point both kinds."""
    cases = []
    for where, offset in (("postgres", 0), ("delta", 1)):
        for index, point in enumerate(OTHER_WAREHOUSE_POINTS):
            kill_at, = point.values
            if where == "delta" and kill_at == "load:after-state-job":
                continue  # the filesystem destination writes dlt's state without a load job
            kind = ("first load", "full scan")[(index + offset) % 2]
            cases.append(pytest.param(where, kind, kill_at, id=f"{where}-{kind}-{point.id}"))
    return cases


@pytest.mark.parametrize("where, kind, kill_at", other_warehouse_cases())
def test_on_postgres_and_delta_too(sandbox_factory, postgres_server, tmp_path, where, kind,
                                   kill_at):
    server = sandbox_factory(leads=300, contacts=100)
    with postgres_server.database() as dsn:
        warehouse = PostgresWarehouse(dsn) if where == "postgres" else \
            DeltaWarehouse(tmp_path / "lake")
        user = UserCode(server, tmp_path, warehouse)
        if kind != "first load":
            arranged = user.run()
            assert arranged.returncode == 0, arranged.stderr[-3000:]
            change_records(server)

        killed = user.run(kill_at=kill_at, full_scan=kind == "full scan")
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

        failures = []
        for _ in (1, 2):
            again = user.run()
            assert again.returncode == 0, again.stderr[-3000:]
            try:
                assert_equals_api(Rows(warehouse), server)
                break
            except AssertionError as exc:
                assert "more than once" not in str(exc), exc  # never doubled, not even once
                failures.append(str(exc))
        else:
            pytest.fail(f"not exact after two reruns: {failures}")
