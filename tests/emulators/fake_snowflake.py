"""A local Snowflake for the suite: fakesnow's server, started by the tests themselves.

fakesnow (https://github.com/tekumara/fakesnow) answers Snowflake's HTTP protocol, the one
``snowflake-connector-python`` speaks, and runs the SQL on DuckDB. dlt's snowflake destination
connects to it as to a Snowflake account (host, port and ``protocol=http`` in the connection
string), so the stories that run on DuckDB and Postgres also load Snowflake, with no account.

fakesnow pins its own duckdb and sqlglot (newer than the ones dlt 1.31 works with in .venv), so
it runs in an environment of its own, ``.venv-recipes/fakesnow``, built on first use (like the
orchestrator recipes' in tests/test_orchestrators.py) and built again when
``EMULATOR_REQUIREMENTS`` change. The server process runs ``snowflake_launcher.py`` (next
to this file), which patches where fakesnow falls short of what dlt sends, then serves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, List, Optional

from emulators.venv import tool_venv

LAUNCHER = Path(__file__).resolve().parent / "snowflake_launcher.py"
#: fakesnow's server, with the connector 3.x it imports internals of: fakesnow 0.12 imports
#: ``snowflake.connector.converter``, which connector 4.x and later no longer have
EMULATOR_REQUIREMENTS = ("fakesnow[server]==0.12.*", "snowflake-connector-python>=3,<4")
START_TIMEOUT = 60
#: what the emulator accepts as an account (it checks no password)
ACCOUNT, USER, PASSWORD, WAREHOUSE = "fakesnow", "fake", "snow", "emulator_wh"


def emulator_python() -> Path:
    """The Python of `.venv-recipes/fakesnow`, built if missing or made from other requirements
    (``venv.tool_venv``: a hashed stamp, a file lock)."""
    return tool_venv("fakesnow", EMULATOR_REQUIREMENTS) / "python"


@dataclass
class SnowflakeEmulator:
    """fakesnow's server on a free loopback port, in a process of its own.

    The launcher binds the port itself and prints ``READY <port>`` once the server accepts
    requests; it stops on SIGTERM or when its stdin closes (this process died). Its log (every
    statement fakesnow fails, with the SQL) goes to ``log``.
    """

    process: "subprocess.Popen[str]"
    port: int
    log: Path
    started_in: float = 0.0
    _log_file: Optional[IO[str]] = field(default=None, repr=False)

    @classmethod
    def start(cls, log: Path) -> "SnowflakeEmulator":
        python = emulator_python()
        began = time.monotonic()
        log_file = open(log, "w")
        process = subprocess.Popen(
            [str(python), str(LAUNCHER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=log_file, text=True,
            # stage files (PUT) land in the emulator's temp folder, not in the checkout
            cwd=log.parent, env={**_clean_environment(), "TMPDIR": str(log.parent)})
        port = _await_ready(process, log)
        emulator = cls(process, port, log, time.monotonic() - began, log_file)
        return emulator

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self._log_file):
            if stream is not None:
                stream.close()

    def credentials(self, database: str) -> str:
        """dlt's snowflake connection string for ``database`` on the emulator: the query string
        carries ``host``, ``port`` and ``protocol`` to the connector (dlt passes every query
        parameter through to ``snowflake.connector.connect``)."""
        return (f"snowflake://{USER}:{PASSWORD}@{ACCOUNT}/{database}?warehouse={WAREHOUSE}"
                f"&host=127.0.0.1&port={self.port}&protocol=http")

    def connect(self, database: str) -> object:
        """A connector session on ``database`` (qmark placeholders: ``?``, as the stories write)."""
        import snowflake.connector

        return snowflake.connector.connect(
            user=USER, password=PASSWORD, account=ACCOUNT, database=database,
            warehouse=WAREHOUSE, host="127.0.0.1", port=self.port, protocol="http",
            paramstyle="qmark", login_timeout=30,
            session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False})

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A new database name for one test: fakesnow creates it on the first login naming it,
        so tests sharing the server never see each other's tables. Not dropped (fakesnow 0.12
        has no DROP DATABASE): a story's database holds a few hundred rows, in the server's
        memory until the session ends."""
        yield f"RW_{uuid.uuid4().hex[:12].upper()}"


def _clean_environment() -> dict:
    """The server's environment: none of this process's Python settings (its venv is another)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "VIRTUAL_ENV", "DESTINATION__", "SOURCES__"))}


def _await_ready(process: "subprocess.Popen[str]", log: Path) -> int:
    """The port from the launcher's ``READY <port>`` line; its log if it exits or hangs first."""
    found: List[int] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("READY "):
                found.append(int(line.split()[1]))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(START_TIMEOUT)
    if not found:
        process.kill()
        process.wait()
        raise RuntimeError(f"the Snowflake emulator did not start within {START_TIMEOUT} s:\n"
                           f"{log.read_text()[-3000:]}")
    return found[0]


if __name__ == "__main__":  # `make setup-dev`: build the environment before any test's timeout
    print(emulator_python())
