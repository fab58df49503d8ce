"""`rackwave --progress` as a person sees it on a terminal and as a scheduler's log records it,
against a sandbox with latency (so a run lasts long enough to be watched), and a user's own
observer passed to the source."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Dict, List, Tuple

import dlt

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from rackwave_source import rackwave_source
from rackwave_source.read.cursor import ScanPlan
from support import command_environment

CREDENTIALS = {"SOURCES__RACKWAVE__CLIENT_ID": DEMO_CLIENT_ID,
               "SOURCES__RACKWAVE__CLIENT_SECRET": DEMO_CLIENT_SECRET,
               "SOURCES__RACKWAVE__PER_PAGE": "20", "SOURCES__RACKWAVE__CONCURRENCY": "2"}
COMMAND = [sys.executable, "-m", "pipelines.rackwave_pipeline"]
WARNING = re.compile(r"warn|deprecat|psutil", re.IGNORECASE)


def in_terminal(cwd: Path, *args: str, timeout: float = 120) -> Tuple[int, str]:
    """Runs the command with stdout and stderr on a pseudo-terminal; its exit code and output."""
    env = command_environment(cwd / "dlt", **CREDENTIALS, TERM="xterm")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))  # rows, columns
    process = subprocess.Popen([*COMMAND, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks: List[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        try:
            chunk = os.read(master, 65536) if ready else b""
        except OSError:  # the terminal closed: the process is gone
            break
        if ready and not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return process.wait(timeout=10), b"".join(chunks).decode()


def in_pipes(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Runs the command as cron or Airflow does: output to pipes."""
    environment = command_environment(cwd / "dlt", **CREDENTIALS, **env)
    return subprocess.run([*COMMAND, *args], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=300)


def frames(output: str, resource: str) -> List[str]:
    """The successive states of one resource's line in a live display."""
    return [line for line in re.split(r"\r?\n|\x1b\[\d+F|\x1b\[2K", output)
            if line.startswith(resource) and " page" in line]  # not the summary's row


def test_a_terminal_shows_totals_pages_a_rate_and_an_eta_and_ends_at_100_percent(
        tmp_path, sandbox_factory):
    server = sandbox_factory(leads=2000, contacts=200, latency_ms=25)
    code, output = in_terminal(tmp_path, "--base-url", server.base_url)  # on by default here
    assert code == 0, output
    leads = frames(output, "leads")
    running = [f for f in leads if "ETA" in f and "rows/s" in f]
    assert running, leads  # a rate and an ETA while reading
    assert re.search(r"ETA \d+s", " ".join(running)), running
    assert all("/100 pages" in f and "/2,000 rows" in f for f in running), running
    assert "100%" in leads[-1] and "100/100 pages" in leads[-1] and "2,000/2,000 rows" in leads[-1]
    assert "done" in leads[-1] and "100%" in frames(output, "contacts")[-1]
    assert re.search(r"load\s+\d+/\d+ jobs", output)  # dlt's steps follow the read
    assert "Rackwave -> duckdb" in output and not WARNING.search(output)


def test_no_progress_turns_the_display_off_on_a_terminal(tmp_path, sandbox):
    code, output = in_terminal(tmp_path, "--base-url", sandbox.base_url, "--no-progress")
    assert code == 0, output
    assert "\x1b[" not in output and "rows/s" not in output and "Rackwave -> duckdb" in output


def test_an_incremental_run_reads_back_to_the_cursor_without_promising_an_eta(
        tmp_path, sandbox_factory):
    server = sandbox_factory(leads=300, contacts=50, latency_ms=40)
    assert in_pipes(tmp_path, "--base-url", server.base_url).returncode == 0
    server.admin.insert("leads", count=300)  # 15 new pages of 20, read one after another
    code, output = in_terminal(tmp_path, "--base-url", server.base_url)
    assert code == 0, output
    leads = frames(output, "leads")
    assert all("incremental" in f and "ETA" not in f and "%" not in f for f in leads), leads
    assert any("reading back to the cursor 20" in f and "unknown until reached" in f
               for f in leads), leads
    # the 300 new ones: the record at the old cursor is known by id and not read in again
    assert "300 rows" in leads[-1] and ", up to date" in leads[-1], leads[-1]
    assert "read back to the cursor" in frames(output, "contacts")[-1]


def test_a_log_gets_plain_periodic_lines_without_carriage_returns_or_warnings(
        tmp_path, sandbox_factory, postgres_server):
    server = sandbox_factory(leads=1500, contacts=100, latency_ms=25)
    with postgres_server.database() as dsn:
        for destination in ("duckdb", "postgres"):
            (tmp_path / destination).mkdir()
            run = in_pipes(tmp_path / destination, "--progress", "--destination", destination,
                           "--base-url", server.base_url, RACKWAVE_PROGRESS_INTERVAL="0.3",
                           DESTINATION__POSTGRES__CREDENTIALS=dsn)
            assert run.returncode == 0, run.stderr
            lines = run.stderr.splitlines()
            reading = [line for line in lines if line.startswith("progress: leads")
                       and "ETA" in line]
            assert len(reading) >= 2, run.stderr  # every 0.3 s while leads are read
            assert any("100%" in line and "1,500/1,500 rows" in line and "done" in line
                       for line in lines), run.stderr
            assert "\r" not in run.stderr + run.stdout and "\x1b" not in run.stderr
            assert not WARNING.search(run.stderr + run.stdout), run.stderr
            assert run.stdout.startswith(f"Rackwave -> {destination}")  # the summary, untouched


class Recorder:
    """A user's own observer: remembers every event."""

    def __init__(self) -> None:
        self.events: List[Tuple[str, str, object]] = []
        self.rows: Dict[str, int] = {}

    def started(self, resource: str, plan: ScanPlan) -> None:
        self.events.append(("started", resource, plan.full_scan))

    def page(self, resource: str, rows: int, total: int, last_page: int) -> None:
        self.rows[resource] = self.rows.get(resource, 0) + rows
        self.events.append(("page", resource, (total, last_page)))

    def phase(self, resource: str, name: str) -> None:
        self.events.append(("phase", resource, name))

    def finished(self, resource: str) -> None:
        self.events.append(("finished", resource, None))


def test_a_users_own_code_passes_its_own_observer(tmp_path, sandbox):
    recorder = Recorder()
    pipeline = dlt.pipeline("mine", destination=dlt.destinations.duckdb(str(tmp_path / "m.duckdb")),
                            dataset_name="rackwave", pipelines_dir=str(tmp_path / "pipelines"))
    pipeline.run(rackwave_source(base_url=sandbox.base_url, client_id=DEMO_CLIENT_ID,
                                 client_secret=DEMO_CLIENT_SECRET, progress=recorder))
    assert recorder.rows == {"leads": 250, "contacts": 120}
    for resource in ("leads", "contacts"):
        mine = [(kind, what) for kind, name, what in recorder.events if name == resource]
        assert mine[0] == ("started", True) and mine[-1] == ("finished", None)
        assert ("page", (250 if resource == "leads" else 120, 3 if resource == "leads" else 2)) \
            in mine
        assert [what for kind, what in mine if kind == "phase"] == ["top", "deletions"]
