"""rackwave_runs: one row per resource per completed run, on DuckDB, Postgres and Delta tables.

One story per warehouse, as a scheduled job lives it: a first load, an incremental run with new
records (one of them quarantined), a full scan after edits and deletions, a full scan in flag
mode, a run that fails (no row), and a run SIGKILLed right after its rackwave_runs job was
written, then resumed (one row, not two). After every run the summary's figures are the row's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List

import pytest

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from rackwave_source import ServerError
import doc_pages
from support import command_environment
from warehouses import Warehouse

RUNS = "rackwave.rackwave_runs"
SOON = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
KINDS = ("leads", "contacts")
#: ``python -c KILL_AFTER_RUNS_JOB <args>`` is the `rackwave` command, SIGKILLed as soon as the
#: job that writes rackwave_runs into the destination has run (committed), before dlt records it
#: as done: a resumed load runs that job again.
KILL_AFTER_RUNS_JOB = r"""
import os, runpy, signal
from dlt.common.destination.client import RunnableLoadJob

release = RunnableLoadJob._release
def release_then_die(self, next_state):
    if next_state == "completed" and self.load_table_name == "rackwave_runs":
        os.kill(os.getpid(), signal.SIGKILL)
    release(self, next_state)
RunnableLoadJob._release = release_then_die
runpy.run_module("pipelines.rackwave_pipeline", run_name="__main__", alter_sys=True)
"""


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def run_rows(loader: Any) -> List[Dict[str, Any]]:
    names, rows = loader.target.query(f"SELECT * FROM {RUNS}")
    return [dict(zip(names, row)) for row in rows]


def rows_of(loader: Any, load_id: str) -> Dict[str, Dict[str, Any]]:
    """The load's rows by resource; fails if a resource has more than one."""
    found = [row for row in run_rows(loader) if row["load_id"] == load_id]
    resources = [row["resource"] for row in found]
    assert len(resources) == len(set(resources)), f"load {load_id}: {resources}"
    return {row["resource"]: row for row in found}


def assert_run(loader: Any, result: Any, server: Any, **expected: Dict[str, int]) -> None:
    """One row per resource for the load just finished, equal to the summary, with ``expected``
    (``leads={"rows_new": 5}``) and the API's count as ``api_total``."""
    load_ids = {table.load_id for table in result.tables}
    assert len(load_ids) == 1 and None not in load_ids, load_ids
    load_id = load_ids.pop()
    rows = rows_of(loader, load_id)
    assert set(rows) == set(KINDS)
    assert load_id in result.pipeline.list_completed_load_packages()  # loaded, by this run
    for table in result.tables:
        row = rows[table.table]
        assert (table.mode, table.pages, table.new, table.updated, table.removed, table.requests,
                table.rate_limited) == (row["mode"].replace("_", " "), row["pages"],
                                        row["rows_new"], row["rows_updated"],
                                        row["rows_removed"] + row["rows_flagged"],
                                        row["requests"], row["rate_limited"])
        assert row["api_total"] == len(server.admin.ids(table.table))
        assert row["started_at"] <= row["finished_at"]
        want = expected.get(table.table, {})
        assert {k: row[k] for k in want} == want, (table.table, row)


def story(loader: Any, server: Any, workdir: Path, warehouse: Warehouse,
          monkeypatch: pytest.MonkeyPatch) -> None:
    first = loader.run()
    assert_run(loader, first, server,
               leads={"mode": "full_scan", "rows_new": 250, "rows_updated": 0, "rows_removed": 0},
               contacts={"mode": "full_scan", "rows_new": 120, "rows_updated": 0})

    # the newest lead, a second after the others, is quarantined: the cursor stops below it
    server.admin.insert("leads", count=4, created_at=iso(SOON))
    server.admin.insert("leads", count=1, created_at=iso(SOON + timedelta(seconds=1)))
    server.admin.insert("contacts", count=2)
    server.admin.add_faults([{"kind": "tamper", "path": "/v1/leads", "page": 1, "count": 1,
                              "tamper": {"record": 0, "set": {"created_at": "yesterday"}}}])
    incremental = loader.run(source_options={"bad_records": "quarantine"})
    assert_run(loader, incremental, server,
               leads={"mode": "incremental", "rows_new": 4, "rows_quarantined": 1,
                      "rows_removed": 0},
               contacts={"mode": "incremental", "rows_new": 2, "rows_quarantined": 0})

    leads = server.admin.records("leads")
    for lead in leads[10:13]:
        server.admin.update("leads", lead["id"], status="won" if lead["status"] != "won" else "lost")
    for lead in leads[20:23]:
        server.admin.delete("leads", lead["id"])
    server.admin.delete("contacts", server.admin.ids("contacts")[0])
    full = loader.run(full_scan=True)
    # the quarantined lead comes now: created after the cursor, which never passed it
    assert_run(loader, full, server,
               leads={"mode": "full_scan", "rows_new": 1, "rows_updated": 254 - 3,
                      "rows_removed": 3, "rows_flagged": 0},
               contacts={"mode": "full_scan", "rows_new": 0, "rows_updated": 121,
                         "rows_removed": 1})

    server.admin.delete("leads", server.admin.ids("leads")[5])
    flagged = loader.run(full_scan=True, source_options={"deleted_records": "flag"})
    assert_run(loader, flagged, server,
               leads={"rows_removed": 0, "rows_flagged": 1, "rows_new": 0, "rows_updated": 251},
               contacts={"rows_removed": 0, "rows_flagged": 0})

    before = run_rows(loader)
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.01")
    server.admin.insert("leads", count=3, created_at=iso(SOON + timedelta(seconds=2)))
    server.admin.add_faults([{"kind": "500", "count": 10, "path": "/v1/contacts"}])
    with pytest.raises(ServerError):
        loader.run()
    assert run_rows(loader) == before  # the leads finished reading, but nothing of the run loaded
    server.admin.clear_faults()
    monkeypatch.delenv("RUNTIME__REQUEST_MAX_ATTEMPTS")
    monkeypatch.delenv("RUNTIME__REQUEST_BACKOFF_FACTOR")

    killed_id = killed_after_writing_its_row(server, workdir, warehouse)
    resumed = loader.run()  # finishes the killed load first, then runs
    assert set(rows_of(loader, killed_id)) == set(KINDS)  # once each, not twice
    assert rows_of(loader, killed_id)["leads"]["rows_new"] == 3
    assert_run(loader, resumed, server, leads={"rows_new": 0}, contacts={"rows_new": 0})
    assert len(run_rows(loader)) == 2 * 6  # six completed runs, the failed one left nothing


def killed_after_writing_its_row(server: Any, workdir: Path, warehouse: Warehouse) -> str:
    """Runs the command in its own process, killed right after rackwave_runs was written; returns
    the load id of the package it left."""
    # One load job at a time: killed in the rackwave_runs job, no other job is left half done
    # (on Postgres, dlt's own _dlt_pipeline_state job run twice fails on its unique _dlt_id).
    env = command_environment(workdir, SOURCES__RACKWAVE__CLIENT_ID=DEMO_CLIENT_ID,
                              SOURCES__RACKWAVE__CLIENT_SECRET=DEMO_CLIENT_SECRET,
                              LOAD__WORKERS="1", **warehouse.settings())
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_RUNS_JOB, "--base-url", server.base_url,
         "--destination", warehouse.name, "--dataset", warehouse.dataset,
         "--duckdb-file", str(workdir / "rackwave_data.duckdb")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=warehouse.run_timeout)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    pending = os.listdir(workdir / "pipelines" / "rackwave" / "load" / "normalized")
    assert len(pending) == 1, pending
    return pending[0]


def test_every_completed_run_leaves_one_row_per_resource(
        sandbox, make_loader, warehouse, tmp_path, monkeypatch):
    story(make_loader(sandbox, warehouse=warehouse), sandbox, tmp_path, warehouse, monkeypatch)


def test_the_docs_describe_every_column_of_rackwave_runs():
    from rackwave_source.schema import RUN_COLUMNS

    section = doc_pages.section("tables-and-history.md", "`rackwave_runs`")
    missing = [name for name in RUN_COLUMNS if f"`{name}`" not in section]
    assert not missing, \
        f"docs/tables-and-history.md, `rackwave_runs`, does not describe rackwave_runs.{missing}"
