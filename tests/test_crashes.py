"""A run killed with SIGKILL (OOM killer, a node going away, ``kill -9``): the next run completes
exactly.

The pipeline runs as the command a scheduler starts (``python -m pipelines.rackwave_pipeline``),
against an in-process sandbox, and is killed at a known moment. Where a run is in dlt 1.31 is
visible in its working folder, ``<DLT_DATA_DIR>/pipelines/<pipeline name>/``:

* ``normalize/<8 random chars>/<load id>/``: the package being extracted. A killed extract leaves
  it behind; dlt never reads it again (each extract uses a new random folder), and ``state.json``
  (the local state) gets the run's cursors only once the extract has finished.
* ``normalize/extracted/<load id>/``: extracted, waiting for normalize.
* ``load/new/<load id>/`` while it is normalized, then ``load/normalized/<load id>/`` while it is
  loaded: there every table's job file moves ``new_jobs/`` -> ``started_jobs/`` ->
  ``completed_jobs/``; a package with a started or completed job is "partially loaded".
* ``load/loaded/<load id>/``: loaded, and recorded in the destination's ``_dlt_loads``.

dlt itself would finish a package it finds in ``normalize/extracted`` or ``load/normalized``
(running jobs left in ``started_jobs`` again) and return without extracting; the ``rackwave``
command instead discards such an interrupted run and reads again from the API
(``discard_interrupted_run``). These tests do not depend on either choice: after the kill, the
next run must leave the warehouse equal to the API.

Kills during extract are timed on the sandbox's request counter (pages have latency). Kills during
load are timed in two ways: from outside, by polling ``load/normalized/*/started_jobs`` every
millisecond (the load step of these runs lasts ~200 ms, a job ~80 ms, so the poll lands inside
it; a run that ends first fails the test rather than passing it); and, for moments a few
milliseconds wide, from inside: the command is started through a bootstrap (``HOOK``) that wraps
one dlt function to SIGKILL its own process at exactly that point, then runs the same module.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional

import duckdb
import pytest

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from support import Loader
from test_faults import api_snapshot, assert_warehouse_equals, assert_warehouse_equals_api, \
    change_records

REPO = Path(__file__).resolve().parents[1]
PIPELINE = "rackwave"
POINT_VARIABLE = "RACKWAVE_TEST_SIGKILL_AT"
LOAD_ID = re.compile(r"^\d+\.\d+$")
#: Settings for cases with edits and deletes before the killed run: resumed or read again, the
#: run after it must be a full scan too for those to reach the warehouse.
EVERY_RUN_A_FULL_SCAN = {"per_page": 50, "full_scan_every": "0s"}

#: ``python -c HOOK <args>`` is ``python -m pipelines.rackwave_pipeline <args>``, except that the
#: process SIGKILLs itself at the point named in RACKWAVE_TEST_SIGKILL_AT:
#: ``before-load-job:<table>`` / ``after-load-job:<table>`` around the SQL that copies a table's
#: file into DuckDB (after: committed, but not yet recorded as done by dlt), or
#: ``after-normalize-commit``, between normalize's two renames (its package is in
#: load/normalized and still in normalize/extracted).
HOOK = r"""
import os, runpy, signal

point = os.environ.get("RACKWAVE_TEST_SIGKILL_AT", "")

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point.startswith(("before-load-job:", "after-load-job:")):
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob
    when, table = point.split(":")
    copy = DuckDbCopyJob.run
    def run(self):
        if when == "before-load-job" and self.load_table_name == table:
            die()
        copy(self)
        if when == "after-load-job" and self.load_table_name == table:
            die()
    DuckDbCopyJob.run = run
elif point == "after-normalize-commit":
    from dlt.common.storages.load_storage import LoadStorage
    commit = LoadStorage.commit_new_load_package
    def commit_then_die(self, *args, **kwargs):
        commit(self, *args, **kwargs)
        die()
    LoadStorage.commit_new_load_package = commit_then_die
elif point:
    raise SystemExit(f"unknown {point!r}")

runpy.run_module("pipelines.rackwave_pipeline", run_name="__main__", alter_sys=True)
"""


@dataclass
class Command:
    """The `rackwave` command of one machine: a working folder, a DuckDB file, one sandbox.

    Its folders are those of ``support.Loader(workdir=...)``, so a run in-process and the command
    share the pipeline.
    """

    server: Any
    workdir: Path
    settings: Optional[dict] = None

    @property
    def duckdb_path(self) -> Path:
        return self.workdir / "rackwave_data.duckdb"

    @property
    def pipeline_dir(self) -> Path:
        return self.workdir / "pipelines" / PIPELINE

    def start(self, *args: str, sigkill_at: str = "") -> "Started":
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SOURCES__", "RUNTIME__", "DESTINATION__", "NORMALIZE__",
                                    "LOAD__"))}
        env.update({
            "PYTHONPATH": str(REPO),
            "DLT_DATA_DIR": str(self.workdir),  # pipelines in <workdir>/pipelines, as Loader's
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "SOURCES__RACKWAVE__CLIENT_ID": DEMO_CLIENT_ID,
            "SOURCES__RACKWAVE__CLIENT_SECRET": DEMO_CLIENT_SECRET,
            POINT_VARIABLE: sigkill_at,
            **{f"SOURCES__RACKWAVE__{k.upper()}": str(v) for k, v in (self.settings or {}).items()},
        })
        entry = ["-c", HOOK] if sigkill_at else ["-m", "pipelines.rackwave_pipeline"]
        log_path = self.workdir / f"run-{time.monotonic_ns()}.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, *entry, "--base-url", self.server.base_url,
                 "--duckdb-file", str(self.duckdb_path), *args],
                cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        return Started(process, log_path)

    def run(self, *args: str, sigkill_at: str = "") -> "Started":
        started = self.start(*args, sigkill_at=sigkill_at)
        started.process.wait(timeout=120)
        return started

    def packages(self, stage: str) -> List[str]:
        """Load ids of the packages in ``stage`` (dlt's temporary folders have other names)."""
        folder = self.pipeline_dir / stage
        names = os.listdir(folder) if folder.is_dir() else []
        return sorted(name for name in names if LOAD_ID.match(name))

    def jobs(self, state: str) -> int:
        """Job files in ``state`` (new_jobs, started_jobs, completed_jobs) of packages in load."""
        folder = self.pipeline_dir / "load" / "normalized"
        if not folder.is_dir():
            return 0
        total = 0
        for package in os.listdir(folder):
            try:
                total += len(os.listdir(folder / package / state))
            except FileNotFoundError:  # moved on meanwhile
                pass
        return total

    def loader(self) -> Loader:
        """The same pipeline, run in-process (quicker, for arranging a previous good load)."""
        return Loader(server=self.server, workdir=self.workdir, pipeline_name=PIPELINE,
                      options=dict(self.settings or {}))


@dataclass
class Started:
    """One run of the command; stdout and stderr go to a log file."""

    process: subprocess.Popen
    log_path: Path

    @property
    def returncode(self) -> Optional[int]:
        return self.process.returncode

    @property
    def output(self) -> str:
        return self.log_path.read_text()


def kill_when(run: Started, condition: Callable[[], bool], moment: str) -> None:
    """SIGKILLs the run as soon as ``condition()`` holds; fails if the run ended first."""
    process = run.process
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if condition():
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return
        time.sleep(0.001)
    if process.poll() is None:
        process.kill()
    process.wait()
    pytest.fail(f"the run ended (exit {process.returncode}) before {moment}; make it slower:\n"
                f"{run.output[-2000:]}")


def local_state(command: Command) -> dict:
    """The pipeline's local state file (dlt writes it when a pipeline is created, and when an
    extract finishes)."""
    path = command.pipeline_dir / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def assert_loaded_nothing(command: Command) -> None:
    if not command.duckdb_path.exists():
        return
    with duckdb.connect(str(command.duckdb_path), read_only=True) as con:
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'rackwave' "
            "AND table_name IN ('leads', 'contacts')").fetchall()
        for (table,) in tables:
            assert con.execute(f"SELECT COUNT(*) FROM rackwave.{table}").fetchone() == (0,)


@pytest.fixture
def command(sandbox_factory, tmp_path) -> Callable[..., Command]:
    def make(settings: Optional[dict] = None, **sandbox: Any) -> Command:
        return Command(sandbox_factory(**sandbox), tmp_path, settings)

    return make


# --- killed during extract -----------------------------------------------------------------------

def test_sigkill_during_extract_then_the_next_run_loads_exactly(command):
    # 60 pages at 20 ms, two at a time: ~0.7 s of paging; killed after 15 pages of leads.
    cli = command({"per_page": 20, "concurrency": 2}, leads=1_000, contacts=200, latency_ms=20)
    run = cli.start()
    kill_when(run, lambda: cli.server.admin.requests("GET /v1/leads") >= 15,
              "15 pages of leads were read")

    assert cli.packages("normalize/extracted") == []
    assert cli.packages("load/normalized") == [] and cli.packages("load/loaded") == []
    assert "sources" not in local_state(cli)  # no cursor was kept
    assert_loaded_nothing(cli)

    change_records(cli.server)  # records created, edited and deleted before the next run
    again = cli.run()

    assert again.returncode == 0, again.output
    assert_warehouse_equals_api(cli.server, cli.duckdb_path)


def test_a_killed_full_scan_is_owed_until_one_finishes(command):
    cli = command({"per_page": 20, "concurrency": 2}, leads=1_000, contacts=200, latency_ms=20)
    cli.loader().run()
    change_records(cli.server)  # edits and deletes: only a full scan applies them
    cli.server.admin.reset_stats()

    run = cli.start("--full-scan")
    kill_when(run, lambda: cli.server.admin.requests("GET /v1/leads") >= 15,
              "15 pages of leads were read")
    again = cli.run()  # a plain run, as the scheduler starts it

    assert again.returncode == 0, again.output
    assert "leads: this run is a full scan: the full scan asked for at" in again.output
    assert "leads     full scan" in again.output
    assert_warehouse_equals_api(cli.server, cli.duckdb_path)
    after = cli.run()  # owed no more
    assert "leads     incremental" in after.output and "full scan" not in after.output


# --- killed during load --------------------------------------------------------------------------

def test_sigkill_during_load_of_a_full_scan_then_the_next_run_loads_exactly(command):
    """Killed from outside while a load job runs; the old rows stay until the next run."""
    cli = command(EVERY_RUN_A_FULL_SCAN, leads=1_000, contacts=200)
    cli.loader().run()
    before = api_snapshot(cli.server)
    change_records(cli.server)

    run = cli.start()
    kill_when(run, lambda: cli.jobs("started_jobs") > 0, "a load job started")

    assert len(cli.packages("load/normalized")) == 1  # killed while loading
    assert_warehouse_equals(cli.duckdb_path, before)  # the killed full scan replaced nothing
    again = cli.run()

    assert again.returncode == 0, again.output
    assert cli.packages("load/normalized") == []
    assert_warehouse_equals_api(cli.server, cli.duckdb_path)


@pytest.mark.parametrize("mode", [
    pytest.param("incremental", id="incremental run (merge)"),
    pytest.param("full scan", id="full scan (replace)"),
])
def test_sigkill_right_after_a_table_was_copied_then_the_next_run_loads_exactly(command, mode):
    """Killed after the leads file was copied into DuckDB (committed) but before dlt recorded the
    job as done: a resumed load copies it again. A merge deduplicates on `id`; a full scan's
    replace (insert-from-staging) does not, so resuming doubled every lead (cc50f9c)."""
    full_scans = mode == "full scan"
    cli = command(EVERY_RUN_A_FULL_SCAN if full_scans else {"per_page": 50},
                  leads=1_000, contacts=200)
    cli.loader().run()
    change_records(cli.server, updates=full_scans)  # incremental runs do not see edits

    killed = cli.run(sigkill_at="after-load-job:leads")
    assert killed.returncode == -signal.SIGKILL
    assert len(cli.packages("load/normalized")) == 1
    again = cli.run()

    assert again.returncode == 0, again.output
    assert_warehouse_equals_api(cli.server, cli.duckdb_path)


def test_sigkill_during_the_first_load_into_a_new_duckdb_file(command):
    """The first load into a new file replaces with truncate-and-insert (no staging tables); the
    next run finds the file and uses insert-from-staging. Resuming the package with it failed on
    every later run: rackwave_staging.<table> does not exist (cc50f9c)."""
    cli = command({"per_page": 50}, leads=1_000, contacts=200)

    killed = cli.run(sigkill_at="before-load-job:leads")
    assert killed.returncode == -signal.SIGKILL
    again = cli.run()

    assert again.returncode == 0, again.output
    assert_warehouse_equals_api(cli.server, cli.duckdb_path)


def test_records_created_after_a_run_killed_during_load_arrive_with_the_next_run(command):
    """A resumed package is all a run loads (dlt returns without extracting): records created
    meanwhile came one run late, and that run printed the killed run's figures (cc50f9c)."""
    cli = command({"per_page": 50}, leads=1_000, contacts=200)
    cli.loader().run()
    change_records(cli.server, updates=False)

    killed = cli.run(sigkill_at="before-load-job:leads")
    assert killed.returncode == -signal.SIGKILL
    change_records(cli.server, updates=False)
    again = cli.run()

    assert again.returncode == 0, again.output
    assert_warehouse_equals_api(cli.server, cli.duckdb_path)


def test_sigkill_between_normalize_and_load(command):
    """dlt's normalize commits in two steps (rename load/new/<id> to load/normalized/<id>, then
    delete normalize/extracted/<id>). Killed between them, a resumed run normalized the package
    again and failed on every later run: "[Errno 39] Directory not empty" (cc50f9c)."""
    cli = command(EVERY_RUN_A_FULL_SCAN, leads=1_000, contacts=200)
    cli.loader().run()
    change_records(cli.server)

    killed = cli.run(sigkill_at="after-normalize-commit")
    assert killed.returncode == -signal.SIGKILL
    again = cli.run()

    assert again.returncode == 0, again.output
    assert_warehouse_equals_api(cli.server, cli.duckdb_path)
