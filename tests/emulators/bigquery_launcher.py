"""Starts bqemulator (the BigQuery REST API on DuckDB) offline; run with the emulator's own Python.

``python bigquery_launcher.py PORT FOLDER``: serves the REST API on ``127.0.0.1:PORT`` (gRPC on a
free port: dlt does not use it), tables in memory, uploaded load files staged in ``FOLDER``, until
SIGTERM.

Not imported by the suite: it runs inside ``.venv-recipes/bigquery-emulator`` (bqemulator pins
duckdb and sqlglot versions that dlt 1.31's ``pipeline.dataset()`` cannot use, so it cannot share
``.venv``).

Emulator shim ``no_spatial``, for offline machines: bqemulator's engine runs ``INSTALL spatial`` at
start (GEOGRAPHY support), which downloads DuckDB's spatial extension and fails with no network, so
the emulator refuses to start. The Rackwave tables have no GEOGRAPHY column: the launcher replaces
that step with nothing. (Its other download, the ``avro`` extension, is off through
``enable_format_extensions=False``: avro loads are not used either.)
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path


def _end_with_parent(parent: int) -> None:
    """Exits when the pytest that started us is gone (killed before its fixture could stop us):
    an emulator must not outlive its test run."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="end-with-parent").start()


def main(port: int, folder: Path) -> None:
    from bqemulator.config import LogLevel, PersistenceMode, Settings
    from bqemulator.server import run_forever
    from bqemulator.storage.engine import DuckDBEngine

    def _no_spatial(self: DuckDBEngine) -> None:
        """GEOGRAPHY is not used by the tests; INSTALL spatial needs the network."""

    DuckDBEngine._load_spatial = _no_spatial  # type: ignore[method-assign]
    settings = Settings(
        rest_host="127.0.0.1", rest_port=port, grpc_host="127.0.0.1", grpc_port=0,
        persistence_mode=PersistenceMode.EPHEMERAL, enable_format_extensions=False,
        upload_staging_dir=folder / "uploads", log_level=LogLevel.WARNING,
        metrics_enabled=False, tracing_enabled=False,
    )
    _end_with_parent(os.getppid())
    run_forever(settings)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
