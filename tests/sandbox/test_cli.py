"""``python -m rackwave_sandbox`` as a separate process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_and_exits_cleanly(sig: signal.Signals) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rackwave_sandbox", "--port", str(port), "--leads", "300", "--contacts", "50",
         "--seed", "5", "--latency-ms", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline() for _ in range(5)]  # read it all: communicate() skips buffered lines
        assert banner[0].strip() == f"Rackwave sandbox listening on http://127.0.0.1:{port}/v1"
        assert any(DEMO_CLIENT_ID in line for line in banner) and any(DEMO_CLIENT_SECRET in line for line in banner)
        base = f"http://127.0.0.1:{port}/v1"
        token = requests.post(f"{base}/auth/token", json={"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET,
                                                          "grant_type": "client_credentials"}, timeout=5).json()["access_token"]
        body = requests.get(f"{base}/leads", params={"per_page": 100}, headers={"Authorization": f"Bearer {token}"},
                            timeout=5).json()
        assert body["meta"] == {"total": 300, "per_page": 100, "current_page": 1, "last_page": 3}
        time.sleep(0.1)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_rejects_bad_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rackwave_sandbox", "--port", "0", "--error-rate", "3"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, timeout=20,
    )
    assert result.returncode == 2 and "error_rate" in result.stderr
