"""Operating the `rackwave` command: overlapping runs, signals, a DuckDB file someone else holds,
and ``--json`` for schedulers and alerting (docs/operations.md).

Every run is the command as a scheduler starts it (``python -m pipelines.rackwave_pipeline``, a
real subprocess) against an in-process sandbox, into a real DuckDB file. Moments inside a run are
timed on the sandbox's request counter (pages have latency) or on the pipeline's working folder
(``load/normalized/*/started_jobs``), as in tests/test_kills.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import duckdb
import pytest

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from support import command_environment, dlt_warnings
from kills import started_jobs
from test_faults import assert_warehouse_equals_api, change_records

PIPELINE = "rackwave"
#: pages of 20 at 20 ms, two workers: ~0.7 s of paging for 1,000 leads, time to act inside it
SLOW = {"per_page": 20, "concurrency": 2}
TIMEOUT_S = 120


@dataclass
class Run:
    """One `rackwave` process; stdout and stderr kept apart (``--json`` owns stdout)."""

    process: subprocess.Popen  # type: ignore[type-arg]
    out_path: Path
    err_path: Path

    def wait(self) -> "Run":
        self.process.wait(timeout=TIMEOUT_S)
        return self

    @property
    def returncode(self) -> Optional[int]:
        return self.process.returncode

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def document(self) -> Dict[str, Any]:
        """The JSON document, which must be all of stdout."""
        lines = self.stdout.splitlines()
        assert len(lines) == 1, f"stdout is not one JSON document:\n{self.stdout}"
        return dict(json.loads(lines[0]))


@dataclass
class Machine:
    """One machine's `rackwave` runs: a working folder, its DuckDB file, one sandbox."""

    server: Any
    workdir: Path
    settings: Dict[str, Any]
    environment: Dict[str, str] = field(default_factory=dict)  # DESTINATION__..., say

    @property
    def duckdb_path(self) -> Path:
        return self.workdir / "rackwave_data.duckdb"

    @property
    def pipelines_dir(self) -> Path:
        return self.workdir / "dlt" / "pipelines"

    @property
    def pipeline_dir(self) -> Path:
        return self.pipelines_dir / PIPELINE

    def start(self, *args: str, server: Any = None) -> Run:
        env = command_environment(
            self.workdir / "dlt",
            SOURCES__RACKWAVE__CLIENT_ID=DEMO_CLIENT_ID,
            SOURCES__RACKWAVE__CLIENT_SECRET=DEMO_CLIENT_SECRET,
            **{f"SOURCES__RACKWAVE__{k.upper()}": str(v) for k, v in self.settings.items()},
            **self.environment)
        stamp = time.monotonic_ns()
        out_path, err_path = self.workdir / f"{stamp}.out", self.workdir / f"{stamp}.err"
        with open(out_path, "w") as out, open(err_path, "w") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "pipelines.rackwave_pipeline",
                 "--base-url", (server or self.server).base_url,
                 "--duckdb-file", str(self.duckdb_path), *args],
                cwd=self.workdir, env=env, stdout=out, stderr=err)
        return Run(process, out_path, err_path)

    def run(self, *args: str, server: Any = None) -> Run:
        return self.start(*args, server=server).wait()

    def started_jobs(self) -> int:
        return started_jobs(self.pipeline_dir)

    def leads_read(self) -> int:
        return self.server.admin.requests("GET /v1/leads")


@pytest.fixture
def machine(sandbox_factory: Any, tmp_path: Path) -> Callable[..., Machine]:
    def make(settings: Optional[Dict[str, Any]] = None, **sandbox: Any) -> Machine:
        return Machine(sandbox_factory(**sandbox), tmp_path, dict(settings or {}))

    return make


def wait_for(run: Run, condition: Callable[[], bool], moment: str) -> None:
    """Returns as soon as ``condition()`` holds while ``run`` is still running; fails the test if
    the run ended first (it must then be made slower, not pass by luck)."""
    deadline = time.monotonic() + TIMEOUT_S
    while run.process.poll() is None and time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.001)
    if run.process.poll() is None:
        run.process.kill()
    run.process.wait()
    pytest.fail(f"the run ended (exit {run.returncode}) before {moment}:\n{run.stderr[-2000:]}")


def folder_snapshot(folder: Path) -> Dict[str, Tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            stat = path.stat()
            found[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return found


# --- overlapping runs ----------------------------------------------------------------------------

def test_a_second_run_while_one_runs_exits_75_at_once_and_touches_nothing(machine, sandbox_factory):
    cli = machine(SLOW, leads=1_000, contacts=200, latency_ms=20)
    first = cli.start()
    wait_for(first, lambda: cli.leads_read() >= 10, "10 pages of leads were read")
    os.kill(first.process.pid, signal.SIGSTOP)  # holds still: whatever changes now, the second did
    try:
        other_api = sandbox_factory(leads=10, contacts=10)  # the second run's requests land here
        before = folder_snapshot(cli.workdir / "dlt")
        db_before = cli.duckdb_path.stat().st_mtime_ns if cli.duckdb_path.exists() else None
        started = time.monotonic()
        second = cli.run("--json", server=other_api)
        took = time.monotonic() - started

        assert second.returncode == 75, second.stderr
        assert f"(pid {first.process.pid})" in second.stderr
        assert "pipeline `rackwave` is already running since 20" in second.stderr
        assert "Traceback" not in second.stderr
        assert took < 15  # at once: the time to start Python and import dlt, nothing waited for
        error = second.document()["error"]
        assert error["class"] == "PipelineAlreadyRunning" and error["exit_code"] == 75
        assert other_api.admin.stats()["total"] == 0  # not even a token
        assert folder_snapshot(cli.workdir / "dlt") == before
        assert (cli.duckdb_path.stat().st_mtime_ns if cli.duckdb_path.exists() else None) \
            == db_before
    finally:
        os.kill(first.process.pid, signal.SIGCONT)
    assert first.wait().returncode == 0, first.stderr  # the first run never noticed
    assert_warehouse_equals_api(cli.server, cli.duckdb_path)


def test_the_lock_of_a_killed_run_does_not_block_the_next(machine):
    cli = machine(SLOW, leads=1_000, contacts=200, latency_ms=20)
    killed = cli.start()
    wait_for(killed, lambda: cli.leads_read() >= 10, "10 pages of leads were read")
    os.kill(killed.process.pid, signal.SIGKILL)
    killed.wait()
    lock = json.loads((cli.pipelines_dir / f"{PIPELINE}.lock").read_text())
    assert lock["pid"] == killed.process.pid  # stale content: it must not matter

    change_records(cli.server)
    again = cli.run()

    assert again.returncode == 0, again.stderr
    assert "already running" not in again.stderr
    assert_warehouse_equals_api(cli.server, cli.duckdb_path)


# --- signals -------------------------------------------------------------------------------------

STOPS = [
    pytest.param(signal.SIGINT, "extract", id="SIGINT during extract"),
    pytest.param(signal.SIGTERM, "extract", id="SIGTERM during extract"),
    pytest.param(signal.SIGINT, "load", id="SIGINT during load"),
    pytest.param(signal.SIGTERM, "load", id="SIGTERM during load"),
]


@pytest.mark.parametrize("signum, step", STOPS)
def test_a_signal_stops_the_run_cleanly_and_the_next_run_is_exact(machine, signum, step):
    # every run a full scan, so edits and deletes made before the next run reach the warehouse
    cli = machine({**SLOW, "full_scan_every": "0s"}, leads=1_000, contacts=200,
                  latency_ms=20 if step == "extract" else 0)
    if step == "load":
        assert cli.run().returncode == 0  # a table to merge into: the load takes long enough
        change_records(cli.server)
    run = cli.start("--json")
    if step == "extract":
        wait_for(run, lambda: cli.leads_read() >= 10, "10 pages of leads were read")
    else:
        wait_for(run, lambda: cli.started_jobs() > 0, "a load job started")
    os.kill(run.process.pid, signum)
    run.wait()

    name = signal.Signals(signum).name
    assert run.returncode == 128 + signum, run.stderr
    assert f"interrupted by {name}: the run stopped. Nothing past the last completed load was " \
           "recorded" in run.stderr
    assert "Traceback" not in run.stderr and not dlt_warnings(run.stderr)
    document = run.document()
    assert document["status"] == "interrupted" and document["exit_code"] == 128 + signum
    assert document["error"]["class"] == "RunInterrupted"

    change_records(cli.server)
    again = cli.run()
    assert again.returncode == 0, again.stderr
    assert not dlt_warnings(again.stderr)
    if step == "load":  # the package left halfway is finished first, then the API read again
        assert "did not finish loading; its load is finished first" in again.stderr
    assert_warehouse_equals_api(cli.server, cli.duckdb_path)


# --- a DuckDB file held by another process -------------------------------------------------------

HOLD = """
import sys, duckdb, time
con = duckdb.connect(sys.argv[1], read_only=len(sys.argv) > 2)
print("open", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("read_only", [False, True], ids=["a writer", "a reader"])
def test_a_duckdb_file_held_open_elsewhere_names_the_holder_and_exits_75(machine, read_only):
    cli = machine(leads=250, contacts=120)
    assert cli.run().returncode == 0
    change_records(cli.server, updates=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(cli.duckdb_path), *(["ro"] if read_only else [])],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        blocked = cli.run("--json")
    finally:
        holder.kill()
        holder.wait()

    assert blocked.returncode == 75, blocked.stderr
    assert f"The DuckDB file {cli.duckdb_path} is locked by " in blocked.stderr
    assert f"(pid {holder.pid})" in blocked.stderr
    assert "Close that connection" in blocked.stderr and "or wait for it to end" in blocked.stderr
    assert "Could not reach" not in blocked.stderr and "Traceback" not in blocked.stderr
    assert blocked.document()["error"]["class"] == "WarehouseLockedError"

    again = cli.run()  # closed: the next run loads what the blocked one would have
    assert again.returncode == 0, again.stderr
    assert_warehouse_equals_api(cli.server, cli.duckdb_path)


# --- --json ----------------------------------------------------------------------------------------

def test_json_is_the_whole_stdout_with_every_table_figure(machine):
    cli = machine({"full_scan_every": "0s"}, leads=250, contacts=120)
    first = cli.run("--json")
    assert first.returncode == 0, first.stderr
    change_records(cli.server)  # +5 leads, 3 edited, 2 deleted; +3 contacts, 2 edited, 1 deleted

    second = cli.run("--json", "--progress")
    document = second.document()

    assert second.returncode == 0, second.stderr
    assert {k: document[k] for k in ("format_version", "status", "exit_code", "pipeline",
                                     "destination", "dataset", "error")} == {
        "format_version": 1, "status": "loaded", "exit_code": 0, "pipeline": "rackwave",
        "destination": "duckdb", "dataset": "rackwave", "error": None}
    assert 0 < document["seconds"] < TIMEOUT_S
    tables = {t["table"]: t for t in document["tables"]}
    leads, contacts = tables["leads"], tables["contacts"]
    assert leads["mode"] == "full scan" and leads["rows_read"] == 253
    assert (leads["new"], leads["updated"], leads["removed"]) == (5, 248, 2)
    assert (leads["rows_before"], leads["rows_now"]) == (None, 253)  # not counted: not free
    assert leads["pages"] >= 3 and leads["requests"] >= leads["pages"]
    assert leads["rate_limited"] == 0
    assert (leads["api_total"], leads["rows_held"], leads["count_offset"], leads["verdict"]) == (
        253, 253, 0, "exact")
    assert (contacts["new"], contacts["removed"], contacts["rows_now"]) == (3, 1, 122)
    with duckdb.connect(str(cli.duckdb_path), read_only=True) as con:
        assert con.execute("SELECT COUNT(*) FROM rackwave.leads").fetchone() == (253,)


def test_json_reports_a_failure_with_its_class_message_and_exit_code(machine):
    cli = machine(leads=10, contacts=10)
    bad_setting = cli.run("--json", "--resources", "deals")
    usage = cli.run("--json", "--no-such-flag")

    assert bad_setting.returncode == 2
    assert bad_setting.document()["status"] == "bad_settings"
    assert bad_setting.document()["error"] == {
        "class": "ConfigurationError", "exit_code": 2,
        "message": "Invalid Rackwave setting `resources`: unknown resource 'deals'. Available "
                   "resources: leads, contacts."}
    assert "unknown resource 'deals'" in bad_setting.stderr  # people still read stderr
    assert usage.returncode == 2
    assert usage.document()["error"]["class"] == "UsageError"
    assert "unrecognized arguments: --no-such-flag" in usage.document()["error"]["message"]
    assert cli.server.admin.stats()["total"] == 0


# --- one pipeline name, several warehouses -------------------------------------------------------

MOVED = "last loaded another warehouse or dataset: this run goes on from the state kept in this one"


def lake_ids(bucket: Path, table: str) -> List[str]:
    from deltalake import DeltaTable

    return sorted(DeltaTable(str(bucket / "rackwave" / table)).to_pyarrow_table(columns=["id"])
                  .column("id").to_pylist())


def test_a_pipeline_moved_to_another_warehouse_and_back_keeps_each_exact(machine, tmp_path):
    """dlt keeps one local state per pipeline name: back on DuckDB, the lake's newer cursor was
    kept, the 5 leads created while the pipeline loaded the lake were never read, and the run
    said "exact". dlt also warned at every switch."""
    cli = machine(leads=300, contacts=100)
    bucket = tmp_path / "lake"
    cli.environment["DESTINATION__FILESYSTEM__BUCKET_URL"] = bucket.as_uri()
    first = cli.run()
    assert first.returncode == 0 and not dlt_warnings(first.stderr), first.stderr
    cli.server.admin.insert("leads", count=5)

    lake = cli.run("--destination", "filesystem")
    assert lake.returncode == 0, lake.stderr
    assert not dlt_warnings(lake.stderr) and lake.stderr.count(MOVED) == 1, lake.stderr
    assert lake_ids(bucket, "leads") == sorted(cli.server.admin.ids("leads"))
    assert cli.run("--destination", "filesystem").returncode == 0  # the local state moves on

    back = cli.run()
    assert back.returncode == 0, back.stderr
    assert not dlt_warnings(back.stderr) and back.stderr.count(MOVED) == 1, back.stderr
    assert_warehouse_equals_api(cli.server, cli.duckdb_path)


def test_a_load_left_unfinished_in_one_warehouse_is_never_loaded_into_another(machine, tmp_path):
    cli = machine(leads=1_000, contacts=200)
    cli.environment["DESTINATION__FILESYSTEM__BUCKET_URL"] = (tmp_path / "lake").as_uri()
    assert cli.run().returncode == 0  # a table to merge into: the load takes long enough
    change_records(cli.server)
    killed = cli.start("--full-scan")
    wait_for(killed, lambda: cli.started_jobs() > 0, "a load job started")
    os.kill(killed.process.pid, signal.SIGKILL)
    killed.wait()

    elsewhere = cli.run("--destination", "filesystem")
    assert elsewhere.returncode == 2, elsewhere.stderr
    assert "has a load into another warehouse or dataset left unfinished" in elsewhere.stderr
    assert not (tmp_path / "lake").exists()
    again = cli.run()
    assert again.returncode == 0, again.stderr
    assert_warehouse_equals_api(cli.server, cli.duckdb_path)


def test_plain_dlt_code_moved_to_a_lake_and_back_keeps_each_exact(sandbox, tmp_path, monkeypatch):
    """The user's own code, the source made before its pipeline (so only the resources can tell
    where they load): DuckDB, then Delta tables twice, then DuckDB again."""
    import dlt

    from rackwave_source import rackwave_source

    monkeypatch.setenv("SOURCES__RACKWAVE__CLIENT_ID", DEMO_CLIENT_ID)
    monkeypatch.setenv("SOURCES__RACKWAVE__CLIENT_SECRET", DEMO_CLIENT_SECRET)
    bucket = tmp_path / "lake"

    def load(destination: Any) -> None:
        source = rackwave_source(base_url=sandbox.base_url)
        pipeline = dlt.pipeline("rackwave", destination=destination, dataset_name="rackwave",
                                pipelines_dir=str(tmp_path / "p"))
        pipeline.run(source, table_format="delta" if destination == "filesystem" else None)

    duckdb_file = dlt.destinations.duckdb(str(tmp_path / "a.duckdb"))
    load(duckdb_file)
    sandbox.admin.insert("leads", count=5)
    monkeypatch.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", bucket.as_uri())
    load("filesystem")
    load("filesystem")
    assert lake_ids(bucket, "leads") == sorted(sandbox.admin.ids("leads"))
    load(duckdb_file)
    assert_warehouse_equals_api(sandbox, tmp_path / "a.duckdb")
