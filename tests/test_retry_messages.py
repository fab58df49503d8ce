"""An API that fails or cannot be reached is visible while the command retries: one line per
retry on stderr (WARNING, the default level), naming what failed, the attempt out of the
maximum and the wait, and never a secret, a token or a query string."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from support import command_environment

RETRY = re.compile(r"Rackwave API: (GET|POST) (\S+)(?: page (\d+))? failed \((.+)\), "
                   r"attempt (\d+) of (\d+); next attempt in (\d+\.\d+) s")
QUICK_RETRIES = {"RUNTIME__REQUEST_MAX_ATTEMPTS": "4", "RUNTIME__REQUEST_BACKOFF_FACTOR": "0.05"}


def rackwave(cwd: Path, base_url: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    environment = command_environment(cwd / "dlt", **QUICK_RETRIES, **env)
    return subprocess.run(
        [sys.executable, "-m", "pipelines.rackwave_pipeline", "--base-url", base_url],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=120)


def test_failing_pages_are_retried_in_view(tmp_path, sandbox):
    sandbox.admin.add_faults([
        {"kind": "502_html", "path": "/v1/leads", "page": 2, "count": 2},
        {"kind": "drop", "path": "/v1/contacts", "count": 1},
    ])
    run = rackwave(tmp_path, sandbox.base_url, {
        "SOURCES__RACKWAVE__CLIENT_ID": DEMO_CLIENT_ID,
        "SOURCES__RACKWAVE__CLIENT_SECRET": DEMO_CLIENT_SECRET})

    assert run.returncode == 0, run.stderr
    retries = [m.groups() for m in RETRY.finditer(run.stderr)]
    leads = [r for r in retries if r[1].endswith("/v1/leads")]
    assert [(r[0], r[2], r[3], r[4], r[5]) for r in leads] == [
        ("GET", "2", "HTTP 502", "1", "4"), ("GET", "2", "HTTP 502", "2", "4")]
    assert all(0 < float(r[6]) <= 0.1 for r in leads)  # backoff 0.05 s, then 0.1 s, jittered
    contacts = [r for r in retries if r[1].endswith("/v1/contacts")]
    assert len(contacts) == 1 and contacts[0][4:6] == ("1", "4")
    assert "RemoteDisconnected" in contacts[0][3] or "ProtocolError" in contacts[0][3]
    assert "?" not in run.stderr  # no query string: lookups search by email
    assert DEMO_CLIENT_SECRET not in run.stderr + run.stdout
    assert "Bearer" not in run.stderr


def test_a_failing_token_endpoint_is_retried_in_view(tmp_path, sandbox):
    sandbox.admin.add_faults([{"kind": "503", "path": "/v1/auth/token", "count": 2}])
    run = rackwave(tmp_path, sandbox.base_url, {
        "SOURCES__RACKWAVE__CLIENT_ID": DEMO_CLIENT_ID,
        "SOURCES__RACKWAVE__CLIENT_SECRET": DEMO_CLIENT_SECRET})

    assert run.returncode == 0, run.stderr
    retries = [m.groups() for m in RETRY.finditer(run.stderr)]
    assert [(r[0], r[1], r[3], r[4], r[5]) for r in retries] == [
        ("POST", f"{sandbox.base_url}/auth/token", "HTTP 503", "1", "4"),
        ("POST", f"{sandbox.base_url}/auth/token", "HTTP 503", "2", "4")]
    assert DEMO_CLIENT_SECRET not in run.stderr + run.stdout


def test_an_unreachable_api_says_so_at_every_attempt(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    base_url = f"http://127.0.0.1:{port}/v1"
    run = rackwave(tmp_path, base_url, {
        "SOURCES__RACKWAVE__CLIENT_ID": "rw_live_visible_id",
        "SOURCES__RACKWAVE__CLIENT_SECRET": "sk_live_hidden_value"})

    assert run.returncode == 75, run.stderr
    retries = [m.groups() for m in RETRY.finditer(run.stderr)]
    assert [(r[0], r[1], r[4], r[5]) for r in retries] == [
        ("POST", f"{base_url}/auth/token", str(n), "4") for n in (1, 2, 3)]
    assert all(r[3] == "ConnectionError: [Errno 111] Connection refused" for r in retries)
    assert "Could not reach the Rackwave token endpoint" in run.stderr
    assert "sk_live_hidden_value" not in run.stderr + run.stdout
