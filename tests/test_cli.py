"""The command a person types: `rackwave --sandbox`, then again, then mistakes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]


def rackwave(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("SOURCES__", "RUNTIME__", "DESTINATION__"))
    }
    environment.update({"DLT_DATA_DIR": str(cwd / "dlt"), "PYTHONPATH": str(REPO),
                        "RUNTIME__DLTHUB_TELEMETRY": "false"})
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pipelines.rackwave_pipeline", *args],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=300,
    )


def test_sandbox_demo_loads_then_runs_incrementally(tmp_path):
    first = rackwave(tmp_path, "--sandbox", "--sandbox-leads", "300", "--sandbox-contacts", "120")
    assert first.returncode == 0, first.stderr
    assert "leads     full scan" in first.stdout
    assert "300" in first.stdout and "120" in first.stdout
    with duckdb.connect(str(tmp_path / "rackwave_data.duckdb"), read_only=True) as con:
        assert con.execute("SELECT COUNT(*) FROM rackwave.leads").fetchone() == (300,)
        assert con.execute("SELECT COUNT(*) FROM rackwave.contacts").fetchone() == (120,)

    second = rackwave(tmp_path, "--sandbox", "--sandbox-leads", "300", "--sandbox-contacts", "120",
                      "--progress")
    assert second.returncode == 0, second.stderr
    assert "leads     incremental" in second.stdout


def test_unknown_resource_exits_2_with_the_choices(tmp_path):
    run = rackwave(tmp_path, "--sandbox", "--resources", "deals")
    assert run.returncode == 2
    assert "Available resources: leads, contacts" in run.stderr


def test_missing_credentials_exit_2_and_say_where_to_put_them(tmp_path):
    run = rackwave(tmp_path, "--base-url", "http://127.0.0.1:9/v1")
    assert run.returncode == 2
    assert "SOURCES__RACKWAVE__CLIENT_SECRET" in run.stderr
    assert "Traceback" not in run.stderr


def test_unreachable_api_exits_75_so_a_scheduler_can_retry(tmp_path):
    run = rackwave(tmp_path, "--base-url", "http://127.0.0.1:9/v1", env={
        "SOURCES__RACKWAVE__CLIENT_ID": "id", "SOURCES__RACKWAVE__CLIENT_SECRET": "sk_cli_hidden_value",
        "RUNTIME__REQUEST_MAX_ATTEMPTS": "2", "RUNTIME__REQUEST_BACKOFF_FACTOR": "0.01",
    })
    assert run.returncode == 75, run.stderr
    assert "Could not reach the Rackwave token endpoint http://127.0.0.1:9/v1/auth/token" in run.stderr
    assert "sk_cli_hidden_value" not in run.stderr + run.stdout
