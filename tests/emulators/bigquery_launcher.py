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


class EmptyUploadShim:
    """Emulator shim ``empty_uploads_complete``: a load file with no rows (a resource empty at its
    first load, written as JSONL) is uploaded with a final ``Content-Range: bytes */0``. BigQuery
    completes such an upload and runs the load (no rows); bqemulator answers every
    ``bytes */N`` as a status probe (308) and the client fails with ResumeIncomplete. This ASGI
    wrapper spells that header ``bytes  */0`` (two spaces, as its parser allows), which its
    route does not take for a probe: the emulator then appends the empty last chunk, sees the
    declared total (0) reached, and runs the load."""

    def __init__(self, app: object) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope.get("type") == "http" and scope.get("method") == "PUT" and \
                b"upload_id=" in scope.get("query_string", b""):
            headers = [(k, b"bytes  */0" if k == b"content-range" and v.strip() == b"bytes */0"
                        else v) for k, v in scope["headers"]]
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)  # type: ignore[operator]


def main(port: int, folder: Path) -> None:
    from bqemulator.config import LogLevel, PersistenceMode, Settings
    from bqemulator.server import run_forever
    from bqemulator.storage.engine import DuckDBEngine

    def _no_spatial(self: DuckDBEngine) -> None:
        """GEOGRAPHY is not used by the tests; INSTALL spatial needs the network."""

    DuckDBEngine._load_spatial = _no_spatial  # type: ignore[method-assign]
    import bqemulator.server as server

    made = server.create_app
    server.create_app = lambda context: EmptyUploadShim(made(context))  # type: ignore
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
