"""A local BigQuery: bqemulator (the BigQuery REST API on DuckDB), started and stopped by the suite.

The emulator runs in ``.venv-recipes/bigquery-emulator`` (built on first use, about a minute),
through ``bigquery_launcher.py`` (which starts it offline), on a free loopback port. Clients reach
it through ``BIGQUERY_EMULATOR_HOST`` (google-cloud-bigquery reads it) or an explicit endpoint.

``RACKWAVE_TEST_BIGQUERY_EMULATOR=http://127.0.0.1:PORT`` points the tests at an emulator that is
already running instead (a faster loop while working on these tests), e.g. one started with
``.venv-recipes/bigquery-emulator/bin/python tests/emulators/bigquery_launcher.py 9050 /tmp/bq``.

``cd tests && ../.venv/bin/python -m emulators.bigquery`` builds the environment without starting
anything: ``make setup-dev`` does, so that the suite's first BigQuery test does not spend its
pytest timeout on pip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from emulators.venv import tool_venv

#: the emulator and what it needs (its ``all`` extra brings numpy, which it imports at start)
REQUIREMENTS = ("bqemulator[all]==1.4.0",)
LAUNCHER = Path(__file__).with_name("bigquery_launcher.py")
#: a cold start takes 2 to 3 s on 2 cores (importing sqlglot's rules, FastAPI, gRPC)
START_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class BigQueryEmulator:
    """A running emulator: ``url`` (``http://127.0.0.1:PORT``), and our process if we started it."""

    url: str
    process: Optional["subprocess.Popen[bytes]"] = None
    log: Optional[Path] = None
    started_in: float = 0.0
    _folder: Optional[Path] = field(default=None, repr=False)

    @classmethod
    def start(cls, attempts: int = 3) -> "BigQueryEmulator":
        """Builds the emulator's environment if needed, starts it, waits until it answers.

        A free port can be taken by someone else between choosing and binding it; the emulator
        then keeps running without its REST server, so a start that does not get ready is ended
        and tried again on another port."""
        python = tool_venv("bigquery-emulator", REQUIREMENTS) / "python"
        folder = Path(tempfile.mkdtemp(prefix="rackwave-bqemu-"))
        errors: List[str] = []
        for _ in range(attempts):
            port = _free_port()
            log = folder / f"emulator-{port}.log"
            began = time.monotonic()
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    [str(python), str(LAUNCHER), str(port), str(folder)], stdout=out,
                    stderr=subprocess.STDOUT, cwd=folder, start_new_session=True)
            emulator = cls(f"http://127.0.0.1:{port}", process, log, 0.0, folder)
            while time.monotonic() - began < START_TIMEOUT:
                if _ready(emulator.url):
                    emulator.started_in = time.monotonic() - began
                    return emulator
                if process.poll() is not None:
                    break
                time.sleep(0.1)
            emulator._end()
            errors.append(f"port {port}: " + log.read_text(errors="replace")[-2000:])
        raise RuntimeError("the BigQuery emulator did not start:\n" + "\n".join(errors))

    def _end(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Ends our emulator (if we started it) and removes its folder."""
        import shutil

        self._end()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    @classmethod
    def existing(cls, url: str) -> "BigQueryEmulator":
        """An emulator someone else started (``RACKWAVE_TEST_BIGQUERY_EMULATOR``)."""
        url = url.rstrip("/")
        if not _ready(url):
            raise RuntimeError(f"no BigQuery emulator answers at {url}/readyz")
        return cls(url)

    def client(self, project: str) -> Any:
        """A google-cloud-bigquery client of ``project`` on the emulator (no credentials: the
        emulator checks none)."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=self.url))


def from_environment() -> BigQueryEmulator:
    """``RACKWAVE_TEST_BIGQUERY_EMULATOR`` if set, else an emulator of our own."""
    existing = os.environ.get("RACKWAVE_TEST_BIGQUERY_EMULATOR")
    return BigQueryEmulator.existing(existing) if existing else BigQueryEmulator.start()


if __name__ == "__main__":
    print(tool_venv("bigquery-emulator", REQUIREMENTS))
