"""dlt's own tools on the `rackwave` command's pipeline, run from the folder the command ran in:
`dlt pipeline rackwave info` / `trace`, `dlt.attach("rackwave").dataset()` and the dashboard
(`dlt pipeline rackwave show`) all see the DuckDB file the command wrote, never a new
`rackwave.duckdb` (dlt's default name, which the command cannot use: see docs/integrations.md).

Each test loads the sandbox with the real command in a subprocess, then runs dlt's tool as a
subprocess in the same folder, with the same dlt data folder (where the pipeline's state is).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, List

import pytest

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from support import command_environment, sandbox_ids

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DLT = str(VENV_BIN / "dlt")

ATTACH_AND_READ = """
import json, dlt
pipeline = dlt.attach("rackwave")
print(json.dumps({
    "database": pipeline.dataset().destination_client.config.credentials.database,
    "leads": sorted(pipeline.dataset().leads.df()["id"]),
    "contacts": len(pipeline.dataset().contacts.df()),
}))
"""


def project(tmp_path: Path, with_settings: bool = True) -> Path:
    """The folder a user runs `rackwave` from: with this repository's .dlt/config.toml (a
    checkout, or a RACKWAVE_HOME set up as the crontab recipe says), or with none at all."""
    folder = tmp_path / "project"
    (folder / ".dlt").mkdir(parents=True)
    if with_settings:
        shutil.copy(REPO / ".dlt" / "config.toml", folder / ".dlt" / "config.toml")
    return folder


def environment(tmp_path: Path) -> Dict[str, str]:
    return command_environment(tmp_path / "dlt", PATH=f"{VENV_BIN}:/usr/bin:/bin",
                               SOURCES__RACKWAVE__CLIENT_ID=DEMO_CLIENT_ID,
                               SOURCES__RACKWAVE__CLIENT_SECRET=DEMO_CLIENT_SECRET)


def run(folder: Path, env: Dict[str, str], *command: str) -> subprocess.CompletedProcess:
    done = subprocess.run(list(command), cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def load(folder: Path, env: Dict[str, str], server, *args: str) -> None:
    """`rackwave` with settings (credentials from the environment), as a scheduler runs it."""
    run(folder, env, sys.executable, "-m", "pipelines.rackwave_pipeline",
        "--base-url", server.base_url, *args)


def attach_and_read(folder: Path, env: Dict[str, str]) -> Dict[str, object]:
    return json.loads(run(folder, env, sys.executable, "-c", ATTACH_AND_READ).stdout)


def duckdb_files(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.rglob("*.duckdb"))


def test_info_and_trace_show_the_loaded_tables_and_rows(sandbox, tmp_path):
    folder, env = project(tmp_path), environment(tmp_path)
    load(folder, env, sandbox)

    info = run(folder, env, DLT, "pipeline", "rackwave", "info").stdout
    trace = run(folder, env, DLT, "pipeline", "rackwave", "trace").stdout

    assert "dataset_name: rackwave" in info
    # each resource's own table, and rackwave_runs beside it
    assert re.search(r"leads with \d table\(s\)", info) and "contacts with" in info
    assert "- leads: 250 row(s)" in trace and "- contacts: 120 row(s)" in trace
    assert f"duckdb:///{folder / 'rackwave_data.duckdb'} location" in trace
    assert duckdb_files(folder) == ["rackwave_data.duckdb"]


def test_dlt_attach_reads_the_api_rows_from_the_commands_file(sandbox, tmp_path):
    folder, env = project(tmp_path), environment(tmp_path)
    load(folder, env, sandbox)

    seen = attach_and_read(folder, env)

    assert seen["database"] == str(folder / "rackwave_data.duckdb")
    assert seen["leads"] == sandbox_ids(sandbox, "leads")
    assert seen["contacts"] == 120
    assert duckdb_files(folder) == ["rackwave_data.duckdb"]  # no rackwave.duckdb was created


def test_dlt_attach_finds_the_file_from_a_folder_without_settings(sandbox, tmp_path):
    folder, env = project(tmp_path, with_settings=False), environment(tmp_path)
    load(folder, env, sandbox)

    seen = attach_and_read(folder, env)

    assert seen["leads"] == sandbox_ids(sandbox, "leads")
    assert duckdb_files(folder) == ["rackwave_data.duckdb"]


def test_dlt_attach_finds_a_duckdb_file_given_by_flag(sandbox, tmp_path):
    folder, env = project(tmp_path), environment(tmp_path)
    elsewhere = tmp_path / "warehouse" / "leads.duckdb"
    elsewhere.parent.mkdir()
    load(folder, env, sandbox, "--duckdb-file", str(elsewhere))

    seen = attach_and_read(folder, env)

    assert seen["database"] == str(elsewhere)
    assert seen["leads"] == sandbox_ids(sandbox, "leads")
    assert duckdb_files(folder) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_dashboard_serves_and_opens_the_commands_file(sandbox, tmp_path):
    """`dlt pipeline rackwave show` starts dlt's dashboard app with marimo; in dlt 1.31 the
    command itself also insists on `dlt[hub]` (see docs/integrations.md), so this starts the very command
    line it builds (dlt's run_dashboard_command), on a free port, headless."""
    pytest.importorskip("marimo", reason="the dashboard needs marimo and ibis-framework")
    pytest.importorskip("ibis", reason="the dashboard needs marimo and ibis-framework")
    websockets = pytest.importorskip("websockets")
    from dlt._workspace.helpers.dashboard.runner import run_dashboard_command

    folder, env = project(tmp_path), environment(tmp_path)
    load(folder, env, sandbox)
    port = free_port()
    command = run_dashboard_command(pipeline_name="rackwave", port=port, headless=True)
    command[0] = str(VENV_BIN / command[0])
    dashboard = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    try:
        status = wait_for_page(f"http://127.0.0.1:{port}/", dashboard)
        ops = run_a_session(websockets, port)
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=20)

    assert status == 200
    assert "completed-run" in ops  # a browser session's cells ran against the pipeline
    # what the dashboard shows as the pipeline's destination, by its own helper
    where = run(folder, env, sys.executable, "-c",
                "from dlt._workspace.helpers.dashboard.utils.pipeline import get_pipeline, "
                "get_destination_config as c; "
                "print(c(get_pipeline('rackwave', None)).credentials.database)").stdout.strip()
    assert where == str(folder / "rackwave_data.duckdb")
    assert duckdb_files(folder) == ["rackwave_data.duckdb"]


def wait_for_page(url: str, process: subprocess.Popen, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the dashboard exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(response.status)
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the dashboard did not answer at {url} within {seconds} s")


def run_a_session(websockets, port: int) -> List[str]:
    """Connects as a browser would; marimo runs the app's cells for the session."""
    import asyncio

    async def session() -> List[str]:
        ops: List[str] = []
        url = f"ws://127.0.0.1:{port}/ws?session_id=s_test"
        async with websockets.connect(url, max_size=None) as ws:
            deadline = time.monotonic() + 60
            while "completed-run" not in ops and time.monotonic() < deadline:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
                ops.append(message.get("op") or message.get("data", {}).get("op"))
        return ops

    return asyncio.run(session())
