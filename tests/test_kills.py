"""A run killed with SIGKILL at any step (an OOM kill, a node going away, ``kill -9``), then run
again as it is: the warehouse equals the API, and no id is ever in a table twice.

One matrix (``CASES``) varies what can matter to a resume: the point the run was killed at
(``tests/kills.py`` names them and says where dlt keeps a run's work), the kind of run (the first
load, an incremental run, a full scan asked for), the way in (the user's own plain dlt code, the
README's, or the ``rackwave`` command), the warehouse, and ``history = "scd2"``. It is not the
full product: every kill point meets every kind of run once, by each way in, and the warehouses
and history share them out (``test_the_matrix_covers_every_point_and_kind_by_both_ways``). The
randomized model (``tests/test_model.py``) draws further combinations.

Between the kill and the rerun, records are created, as a scheduler's next slot finds them. The
command is exact after one rerun (it finishes an interrupted load, then reads the API in the same
run); plain dlt code after at most two: its first rerun loads the package the killed run left
and returns without extracting, the second reads the API again. What makes it hold
(``rackwave_source/``): every run merges on ``id``, full scans too, so a package loaded twice or
a job run again changes nothing; a full scan asked for and killed stays owed
(``read/scan_requests.py``); a package left between normalize's two renames is repaired
(``warehouse/recovery.py``).

Then the stories a matrix cannot tell: kills timed from outside (a number of pages read, a load
job started), a killed full scan still owed by the next plain run, a DuckDB file deleted under
its pipeline's local state.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple

import pytest

from kills import Rows, Runs, started_jobs
from support import DATASET, assert_equals_api
from test_faults import api_snapshot, assert_warehouse_equals, assert_warehouse_equals_api, \
    change_records
from test_history import assert_intervals_chain, current, versions

FIRST, INCREMENTAL, FULL = "first load", "incremental run", "full scan"
LOAD_ID = re.compile(r"^\d+\.\d+$")


class Case(NamedTuple):
    point: str
    kind: str
    way: str
    warehouse: str
    history: bool = False


CASES = [  # point, kind of run, way in, warehouse, history
    Case("extract:before-commit", FIRST, "dlt", "duckdb"),
    Case("extract:before-commit", INCREMENTAL, "command", "postgres"),
    Case("extract:before-commit", FULL, "dlt", "delta"),
    Case("normalize:before-commit", FIRST, "command", "duckdb"),
    Case("normalize:before-commit", INCREMENTAL, "dlt", "duckdb"),
    Case("normalize:before-commit", FULL, "command", "postgres"),
    Case("normalize:half-committed", FIRST, "dlt", "postgres"),
    Case("normalize:half-committed", INCREMENTAL, "dlt", "delta"),
    Case("normalize:half-committed", FULL, "command", "duckdb"),
    # the first load into a new DuckDB file has no staging tables; its resume had (cc50f9c)
    Case("load:before-job:leads", FIRST, "command", "duckdb"),
    Case("load:before-job:leads", INCREMENTAL, "dlt", "postgres"),
    Case("load:before-job:leads", FULL, "dlt", "duckdb"),
    Case("load:after-job:leads", FIRST, "command", "snowflake"),
    Case("load:after-job:leads", INCREMENTAL, "command", "duckdb"),
    Case("load:after-job:leads", FULL, "dlt", "bigquery"),
    # a full scan's leads copied, not recorded: resumed, it doubled every lead (cc50f9c)
    Case("load:after-job:leads", FULL, "command", "duckdb"),
    Case("load:after-job:_dlt_pipeline_state", FIRST, "command", "postgres"),
    Case("load:after-job:_dlt_pipeline_state", INCREMENTAL, "dlt", "duckdb"),
    Case("load:after-job:_dlt_pipeline_state", FULL, "dlt", "postgres"),
    Case("load:before-complete", FIRST, "dlt", "delta"),
    Case("load:before-complete", INCREMENTAL, "command", "duckdb"),
    Case("load:before-complete", FULL, "dlt", "duckdb"),
    Case("load:before-complete", FIRST, "dlt", "postgres", history=True),
    Case("load:after-job:leads_history", FIRST, "dlt", "duckdb", history=True),
    Case("load:after-job:leads_history", FULL, "command", "postgres", history=True),
    Case("load:after-merge:leads_history", FIRST, "command", "duckdb", history=True),
    Case("load:after-merge:leads_history", FULL, "dlt", "duckdb", history=True),
]
#: the points every destination has; the rest are history's
EVERY_DESTINATION = ("extract:before-commit", "normalize:before-commit",
                     "normalize:half-committed", "load:before-job:leads", "load:after-job:leads",
                     "load:after-job:_dlt_pipeline_state", "load:before-complete")


def case_id(case: Case) -> str:
    return "-".join([case.point, case.kind, case.way, case.warehouse,
                     *(["history"] if case.history else [])])


def test_the_matrix_covers_every_point_and_kind_by_both_ways():
    generic = [c for c in CASES if not c.history]
    assert {(c.point, c.kind) for c in generic} == \
        {(p, k) for p in EVERY_DESTINATION for k in (FIRST, INCREMENTAL, FULL)}
    for point in {c.point for c in CASES}:
        assert {c.way for c in CASES if c.point == point} == {"dlt", "command"}, point
    for kind in (FIRST, INCREMENTAL, FULL):
        assert {c.way for c in generic if c.kind == kind} == {"dlt", "command"}, kind
    for where in ("duckdb", "postgres", "delta"):
        assert {c.kind for c in generic if c.warehouse == where} == {FIRST, INCREMENTAL, FULL}
    assert {c.warehouse for c in generic} >= {"bigquery", "snowflake"}
    history = [c for c in CASES if c.history]
    assert {(c.point, c.kind) for c in history if "history" in c.point} == {
        (p, k) for p in ("load:after-job:leads_history", "load:after-merge:leads_history")
        for k in (FIRST, FULL)}
    assert {c.way for c in history} == {"dlt", "command"}


@pytest.mark.parametrize("warehouse, case", [
    pytest.param(c.warehouse, c, id=case_id(c)) for c in CASES], indirect=["warehouse"])
def test_killed_at_any_step_then_run_again_is_exact(sandbox_factory, tmp_path, warehouse, case):
    server = sandbox_factory(leads=300, contacts=100)
    runs = Runs(server, tmp_path, case.way, warehouse,
                {"per_page": 50, **({"history": "scd2"} if case.history else {})})
    changed: List[str] = []
    deleted: List[str] = []
    if case.kind != FIRST:
        runs.arrange()
        loaded = {lead["id"]: lead for lead in server.admin.records("leads")}
        change_records(server, updates=case.kind == FULL)  # edits reach only full scans
        now = {lead["id"]: lead for lead in server.admin.records("leads")}
        changed = [i for i in loaded if i in now and now[i] != loaded[i]]
        deleted = [i for i in loaded if i not in now]

    runs.killed(case.point, full_scan=case.kind == FULL)
    assert_no_id_twice(warehouse)
    change_records(server, updates=False)  # created while it was down

    failures = []
    for _ in (1,) if case.way == "command" else (1, 2):
        again = runs.run()
        assert again.returncode == 0, again.stderr[-3000:]
        assert_no_id_twice(warehouse)
        try:
            assert_equals_api(Rows(warehouse), server)
            break
        except AssertionError as exc:
            failures.append(str(exc))
    else:
        pytest.fail(f"not exact after {len(failures)} reruns: {failures}")
    if case.history:
        assert_history_exact(warehouse, server, changed, deleted)


def loaded_ids(warehouse: Any) -> Dict[str, List[str]]:
    """Every id in each table, as many times as it is there; a table not made yet is left out."""
    found = {}
    for table in ("leads", "contacts"):
        try:
            found[table] = [row[0] for row in
                            warehouse.query(f"SELECT id FROM {DATASET}.{table}")[1]]
        except Exception as exc:  # noqa: BLE001 - the killed run created no table yet
            if not re.search(r"does not exist|not found", str(exc), re.IGNORECASE):
                raise
    return found


def assert_no_id_twice(warehouse: Any) -> None:
    for table, ids in loaded_ids(warehouse).items():
        doubled = [i for i, n in Counter(ids).items() if n > 1]
        assert not doubled, f"{table}: {len(doubled)} ids twice, e.g. {doubled[:3]}"


def assert_history_exact(warehouse: Any, server: Any, changed: List[str],
                         deleted: List[str]) -> None:
    """One version per record and state, no version twice; the current ones are the API's."""
    rows = warehouse.query(f"SELECT id, _rackwave_row_hash FROM {DATASET}.leads_history")[1]
    twice = [key for key, n in Counter(rows).items() if n > 1]
    assert not twice, f"{len(twice)} versions loaded twice, e.g. {twice[:2]}"
    history = versions(Rows(warehouse))
    assert_intervals_chain(history)
    assert current(history) == {r["id"]: r["status"] for r in server.admin.records("leads")}
    for record, kept in history.items():
        expected = 2 if record in changed else 1
        assert len(kept) == expected, f"{record}: {len(kept)} versions, {expected} expected"
        assert (kept[-1][3] is not None) == (record in deleted), record


def test_a_pipeline_whose_duckdb_file_was_deleted_loads_everything_again(sandbox, tmp_path):
    """The local state outlives the file; dlt notices the dataset is gone and wipes it, so the
    next run is a first load, not an incremental run into an empty file."""
    runs = Runs(sandbox, tmp_path)
    assert runs.run().returncode == 0
    runs.duckdb_file.unlink()
    sandbox.admin.insert("leads", count=2)

    again = runs.run()

    assert again.returncode == 0, again.stderr
    assert_warehouse_equals(runs.duckdb_file, api_snapshot(sandbox))


# --- kills timed from outside, by the command ----------------------------------------------------

class Started(NamedTuple):
    process: subprocess.Popen
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text()


def start(runs: Runs, *args: str) -> Started:
    """The command, started as its scheduler starts it; its output in a log file."""
    log = runs.folder / f"run-{time.monotonic_ns()}.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, *runs.entry(full_scan=False), *args], cwd=runs.folder,
            env=runs.environment("", False), stdout=out, stderr=subprocess.STDOUT)
    return Started(process, log)


def finished(runs: Runs, *args: str) -> Started:
    started = start(runs, *args)
    started.process.wait(timeout=120)
    return started


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


def packages(runs: Runs, stage: str) -> List[str]:
    """Load ids of the packages in ``stage`` (dlt's temporary folders have other names)."""
    folder = runs.folder / "pipelines" / "rackwave" / stage
    names = os.listdir(folder) if folder.is_dir() else []
    return sorted(name for name in names if LOAD_ID.match(name))


@pytest.fixture
def paged_slowly(sandbox_factory, tmp_path) -> Runs:
    """60 pages at 20 ms, two at a time: ~0.7 s of paging, long enough to kill it mid-way."""
    server = sandbox_factory(leads=1_000, contacts=200, latency_ms=20)
    return Runs(server, tmp_path, "command", settings={"per_page": 20, "concurrency": 2})


def test_killed_after_15_pages_the_next_run_loads_exactly(paged_slowly):
    runs = paged_slowly
    run = start(runs)
    kill_when(run, lambda: runs.server.admin.requests("GET /v1/leads") >= 15,
              "15 pages of leads were read")

    assert packages(runs, "normalize/extracted") == []
    assert packages(runs, "load/normalized") == packages(runs, "load/loaded") == []
    state = runs.folder / "pipelines" / "rackwave" / "state.json"
    assert "sources" not in (json.loads(state.read_text()) if state.exists() else {})
    assert not runs.duckdb_file.exists() or not any(loaded_ids(runs.target).values())

    change_records(runs.server)  # records created, edited and deleted before the next run
    again = finished(runs)

    assert again.process.returncode == 0, again.output
    assert_warehouse_equals_api(runs.server, runs.duckdb_file)


def test_a_killed_full_scan_is_owed_until_one_finishes(paged_slowly):
    runs = paged_slowly
    runs.arrange()
    change_records(runs.server)  # edits and deletes: only a full scan applies them
    runs.server.admin.reset_stats()

    run = start(runs, "--full-scan")
    kill_when(run, lambda: runs.server.admin.requests("GET /v1/leads") >= 15,
              "15 pages of leads were read")
    again = finished(runs)  # a plain run, as the scheduler starts it

    assert again.process.returncode == 0, again.output
    assert "leads: this run is a full scan: the full scan asked for at" in again.output
    assert "leads     full scan" in again.output
    assert_warehouse_equals_api(runs.server, runs.duckdb_file)
    after = finished(runs)  # owed no more
    assert "leads     incremental" in after.output and "full scan" not in after.output


def test_killed_while_a_load_job_runs_the_old_rows_stay_until_the_next_run(sandbox_factory,
                                                                          tmp_path):
    server = sandbox_factory(leads=1_000, contacts=200)
    runs = Runs(server, tmp_path, "command", settings={"per_page": 50, "full_scan_every": "0s"})
    runs.arrange()
    before = api_snapshot(server)
    change_records(server)

    run = start(runs)
    pipeline_dir = runs.folder / "pipelines" / "rackwave"
    kill_when(run, lambda: started_jobs(pipeline_dir) > 0, "a load job started")

    assert len(packages(runs, "load/normalized")) == 1  # killed while loading
    assert_warehouse_equals(runs.duckdb_file, before)  # the killed full scan replaced nothing
    again = finished(runs)

    assert again.process.returncode == 0, again.output
    assert packages(runs, "load/normalized") == []
    assert_warehouse_equals_api(server, runs.duckdb_file)

