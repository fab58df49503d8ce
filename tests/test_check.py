"""`rackwave check`: a person asks what the next run would do before running it, and nothing
moves: the answer comes from one token request and page 1 of each resource, and the run that
follows does what the check said."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from support import Finished, rackwave_in_process

CREDENTIALS = {"SOURCES__RACKWAVE__CLIENT_ID": "rw_test_sandbox",
               "SOURCES__RACKWAVE__CLIENT_SECRET": "sk_test_sandbox"}
ONE_PAGE_EACH = {"POST /v1/auth/token": 1, "GET /v1/leads": 1, "GET /v1/contacts": 1}


def rackwave(cwd: Path, *args: str, env: Optional[Dict[str, str]] = None) -> Finished:
    """The command, in this process (``support.rackwave_in_process``), with its folder's dlt
    data and the demo credentials."""
    return rackwave_in_process(cwd, *args, env={**CREDENTIALS, **(env or {})})


def check(cwd: Path, server: Any, *args: str, env: Optional[Dict[str, str]] = None
          ) -> Tuple[Finished, Dict[str, Any]]:
    """`rackwave check --json` against ``server``: the process, and its document by resource."""
    run = rackwave(cwd, "check", "--base-url", server.base_url, "--json", *args, env=env)
    document = json.loads(run.stdout)
    document["by_name"] = {r["table"]: r for r in document["resources"]}
    return run, document


def load(cwd: Path, server: Any, *args: str, env: Optional[Dict[str, str]] = None) -> None:
    run = rackwave(cwd, "--base-url", server.base_url, *args, env=env)
    assert run.returncode == 0, run.stderr


def snapshot(cwd: Path) -> Dict[str, Tuple[int, int, str]]:
    """Every file of the DuckDB file and the pipeline's folder: size, mtime, content hash."""
    files = [cwd / "rackwave_data.duckdb", *sorted((cwd / "dlt").rglob("*"))]
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes())
                     .hexdigest()) for p in files if p.is_file()}


def page_requests(server: Any) -> Dict[str, int]:
    requests = server.admin.stats()["requests"]
    return {kind: requests.get(f"GET /v1/{kind}", 0) for kind in ("leads", "contacts")}


def test_a_first_check_asks_for_page_1_only_and_leaves_nothing_behind(tmp_path, sandbox):
    sandbox.admin.reset_stats()

    run, document = check(tmp_path, sandbox)

    assert run.returncode == 0, run.stderr
    assert sandbox.admin.stats()["requests"] == ONE_PAGE_EACH
    assert not (tmp_path / "rackwave_data.duckdb").exists()
    assert not (tmp_path / "dlt" / "pipelines").exists()
    assert {k: document[k] for k in ("status", "exit_code", "destination", "dataset",
                                     "pipeline", "error")} == {
        "status": "ok", "exit_code": 0, "destination": "duckdb", "dataset": "rackwave",
        "pipeline": "rackwave", "error": None}
    leads = document["by_name"]["leads"]
    assert (leads["total"], leads["last_page"], leads["mode"], leads["reason"]) == (
        250, 3, "full scan", "first run")
    assert (leads["records"], leads["pages"], leads["requests"]) == (250, 3, 4)
    assert leads["seconds_basis"] == "latency" and leads["seconds_estimated"] is True

    sandbox.admin.reset_stats()
    load(tmp_path, sandbox)  # the run does what the check said: 3 pages and page 1 again
    assert page_requests(sandbox) == {
        name: r["requests"] for name, r in document["by_name"].items()}


def test_after_a_load_the_check_sees_the_incremental_run_and_changes_no_byte(tmp_path, sandbox):
    load(tmp_path, sandbox)
    newest = datetime.now(timezone.utc).replace(microsecond=0)
    sandbox.admin.insert("leads", records=[
        {"created_at": (newest - timedelta(minutes=m)).isoformat().replace("+00:00", "Z")}
        for m in range(5)])
    before = snapshot(tmp_path)
    sandbox.admin.reset_stats()

    run, document = check(tmp_path, sandbox)

    assert run.returncode == 0, run.stderr
    assert sandbox.admin.stats()["requests"] == ONE_PAGE_EACH
    assert snapshot(tmp_path) == before
    leads, contacts = document["by_name"]["leads"], document["by_name"]["contacts"]
    assert leads["mode"] == "incremental" and leads["reason"].startswith("incremental from ")
    assert leads["total"] == 255 and leads["cursor"] is not None
    # the 5 new records and the loaded ones sharing the cursor's second, read again
    assert leads["records"] >= 6 and not leads["records_estimated"]
    assert (leads["pages"], leads["requests"]) == (1, 1)
    assert (contacts["mode"], contacts["pages"]) == ("incremental", 1)

    sandbox.admin.reset_stats()
    load(tmp_path, sandbox)
    assert page_requests(sandbox) == {"leads": 1, "contacts": 1}


def test_records_beyond_page_1_are_estimated_from_its_created_at_values(tmp_path, sandbox):
    small_pages = {"SOURCES__RACKWAVE__PER_PAGE": "10"}
    load(tmp_path, sandbox, "--resources", "leads", env=small_pages)
    cursor = datetime.fromisoformat(sandbox.admin.records("leads")[0]["created_at"][:-1] + "+00:00")
    sandbox.admin.insert("leads", records=[  # one a minute since the cursor: page 1 shows the pace
        {"created_at": (cursor + timedelta(minutes=m)).isoformat().replace("+00:00", "Z")}
        for m in range(1, 36)])

    run, document = check(tmp_path, sandbox, "--resources", "leads", env=small_pages)

    assert run.returncode == 0, run.stderr
    leads = document["by_name"]["leads"]
    assert leads["mode"] == "incremental" and leads["records_estimated"] is True
    assert 35 <= leads["records"] <= 40 and leads["pages"] == 4
    assert "~" + str(leads["records"]) in rackwave(
        tmp_path, "check", "--base-url", sandbox.base_url, "--resources", "leads",
        env=small_pages).stdout  # the table marks the estimate

    sandbox.admin.reset_stats()
    load(tmp_path, sandbox, "--resources", "leads", env=small_pages)
    assert page_requests(sandbox)["leads"] == leads["requests"]


def test_a_known_rate_gives_the_time_and_full_scan_plans_a_full_scan(tmp_path, sandbox):
    load(tmp_path, sandbox)

    run, document = check(tmp_path, sandbox, "--full-scan",
                          env={"SOURCES__RACKWAVE__MAX_REQUESTS_PER_SECOND": "2"})

    assert run.returncode == 0, run.stderr
    leads = document["by_name"]["leads"]
    assert (leads["mode"], leads["reason"]) == ("full scan", "full scan requested")
    assert (leads["requests"], leads["seconds"], leads["seconds_basis"]) == (4, 2.0, "rate")
    assert leads["seconds_estimated"] is False
    text = rackwave(tmp_path, "check", "--base-url", sandbox.base_url,
                    env={"SOURCES__RACKWAVE__MAX_REQUESTS_PER_SECOND": "2"}).stdout
    assert "at the known rate of 2 requests/s" in text
    assert "Nothing was loaded and no state changed." in text


def test_a_full_scan_still_owed_makes_the_next_run_a_full_scan(tmp_path, sandbox):
    load(tmp_path, sandbox)
    sandbox.admin.add_faults([{"kind": "500", "path": "/v1/leads", "page": 2, "count": 100}])
    failed = rackwave(tmp_path, "--base-url", sandbox.base_url, "--full-scan",
                      env={"RUNTIME__REQUEST_MAX_ATTEMPTS": "1"})
    assert failed.returncode == 75, failed.stderr
    sandbox.admin.clear_faults()

    run, document = check(tmp_path, sandbox)

    assert run.returncode == 0, run.stderr
    leads, contacts = document["by_name"]["leads"], document["by_name"]["contacts"]
    assert leads["mode"] == "full scan"
    assert leads["reason"].startswith("the full scan asked for at ")
    assert leads["reason"].endswith("has not finished yet")
    assert contacts["mode"] in ("full scan", "incremental")  # it may have finished its own


def test_the_state_comes_from_the_destination_on_a_new_machine(tmp_path, sandbox):
    load(tmp_path, sandbox)
    subprocess.run(["rm", "-rf", str(tmp_path / "dlt")], check=True)  # a fresh runner
    before = snapshot(tmp_path)

    run, document = check(tmp_path, sandbox)

    assert run.returncode == 0, run.stderr
    assert document["by_name"]["leads"]["mode"] == "incremental"
    assert snapshot(tmp_path) == before and not (tmp_path / "dlt" / "pipelines").exists()


def test_a_lost_destination_means_a_first_run(tmp_path, sandbox):
    load(tmp_path, sandbox)
    (tmp_path / "rackwave_data.duckdb").unlink()

    run, document = check(tmp_path, sandbox)

    assert run.returncode == 0, run.stderr
    assert document["by_name"]["leads"]["reason"] == "first run"
    assert not (tmp_path / "rackwave_data.duckdb").exists()


def test_settings_and_credentials_fail_as_a_run_fails(tmp_path, sandbox):
    missing = {"SOURCES__RACKWAVE__CLIENT_SECRET": ""}
    as_run = rackwave(tmp_path, "--base-url", sandbox.base_url, env=missing)
    as_check = rackwave(tmp_path, "check", "--base-url", sandbox.base_url, env=missing)
    assert (as_check.returncode, as_run.returncode) == (2, 2)
    assert as_check.stderr.strip().splitlines()[-1] == as_run.stderr.strip().splitlines()[-1]

    bad = rackwave(tmp_path, "check", "--base-url", sandbox.base_url,
                   env={"SOURCES__RACKWAVE__PER_PAGE": "500"})
    assert bad.returncode == 2 and "per_page" in bad.stderr

    sandbox.admin.reset_stats()
    run, document = check(tmp_path, sandbox, env={"SOURCES__RACKWAVE__CLIENT_SECRET": "sk_wrong"})
    assert run.returncode == 1
    assert "credentials were rejected by" in run.stderr and "sk_wrong" not in run.stderr
    assert (document["status"], document["exit_code"], document["resources"]) == (
        "failed", 1, [])
    assert document["error"]["class"] == "AuthenticationError"
    assert sandbox.admin.stats()["requests"] == {"POST /v1/auth/token": 1}

    refused = rackwave(tmp_path, "check", "--json", "--destination", "oracle")
    assert refused.returncode == 2 and "invalid choice: 'oracle'" in refused.stderr
    assert json.loads(refused.stdout)["error"]["class"] == "UsageError"

    down = rackwave(tmp_path, "check", "--base-url", "http://127.0.0.1:9/v1", env={
        "RUNTIME__REQUEST_MAX_ATTEMPTS": "1"})
    assert down.returncode == 75 and "temporary, safe to run again" in down.stderr
    assert not (tmp_path / "rackwave_data.duckdb").exists()


def test_the_sandbox_demo_can_be_checked_too(tmp_path):
    run = rackwave(tmp_path, "check", "--sandbox", "--sandbox-leads", "300",
                   "--sandbox-contacts", "120")

    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("Rackwave check -> duckdb, dataset `rackwave`, pipeline `rackwave`")
    leads = next(line for line in lines if line.startswith("leads "))
    assert leads.split()[:6] == ["leads", "300", "full", "scan", "300", "4"]
    assert "leads: full scan: first run" in lines
    assert not (tmp_path / "rackwave_data.duckdb").exists()


def test_postgres_state_is_read_from_the_warehouse(tmp_path, sandbox, postgres_server):
    assert rackwave(tmp_path, "check", "--destination", "postgres", "--base-url",
                    sandbox.base_url).returncode == 2  # no warehouse credentials, as a run
    with postgres_server.database() as dsn:
        warehouse = {"DESTINATION__POSTGRES__CREDENTIALS": dsn}
        load(tmp_path, sandbox, "--destination", "postgres", env=warehouse)
        subprocess.run(["rm", "-rf", str(tmp_path / "dlt")], check=True)  # a fresh runner
        sandbox.admin.reset_stats()

        run, document = check(tmp_path, sandbox, "--destination", "postgres", env=warehouse)

        assert run.returncode == 0, run.stderr
        assert sandbox.admin.stats()["requests"] == ONE_PAGE_EACH
        assert [r["mode"] for r in document["resources"]] == ["incremental", "incremental"]
        assert document["destination"] == "postgres"
        assert not (tmp_path / "dlt" / "pipelines").exists()
