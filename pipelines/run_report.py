"""How a run of the command ends: an exit code, a line for people on stderr, and with ``--json``
one JSON document on stdout for schedulers and alerting (the format is in docs/operations.md, "JSON
output").

Every way a run can end goes through ``failure_of`` (or is a success), so the exit code, the
human message and the JSON document always agree. With ``--json`` nothing else reaches stdout:
``reserved_stdout`` points the process's stdout (the file descriptor too, for whatever dlt or a
driver prints) at stderr while the run lasts.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

from dlt.pipeline.exceptions import PipelineStepFailed

from rackwave_source.exceptions import ConfigurationError, RackwaveError, RackwaveTransientError

from pipelines.destinations import is_unreachable, locked_duckdb_file, unreachable_warehouse
from pipelines.signals import RunInterrupted, exit_code, interrupted_message, interruption
from pipelines.summary import TableSummary

EXIT_LOADED, EXIT_FATAL, EXIT_CONFIG, EXIT_TEMPORARY = 0, 1, 2, 75
#: ``status`` of the JSON document per exit code (a stop by a signal is "interrupted")
STATUSES = {EXIT_LOADED: "loaded", EXIT_FATAL: "failed", EXIT_CONFIG: "bad_settings",
            EXIT_TEMPORARY: "temporary_failure"}
INTERRUPTED = "interrupted"
#: raised when the JSON document changes incompatibly (a field removed or renamed)
JSON_FORMAT_VERSION = 1
USAGE_ERROR = "UsageError"
SECONDS_DECIMALS = 3


@dataclass
class Failure:
    """A run that did not load: what to exit with, what to tell a person, what to report."""

    exit_code: int
    error_class: str
    message: str
    text: str  # the line on stderr
    expected: bool = True  # False: a bug of ours or dlt's, worth its traceback on stderr

    @property
    def status(self) -> str:
        return STATUSES.get(self.exit_code, INTERRUPTED)


def failure_of(exc: BaseException, destination: str, push: bool = False) -> Failure:
    """Our reading of whatever stopped the run, or the ``push`` (``exc`` as ``unwrap`` left
    it)."""
    signum = interruption(exc)
    if signum is not None:
        message = interrupted_message(signum, push)
        return Failure(exit_code(signum), RunInterrupted.__name__, message, message)
    if isinstance(exc, PipelineStepFailed):  # raised by dlt outside run_pipeline's translation
        exc = warehouse_failure(exc, destination) or exc
    if isinstance(exc, ConfigurationError):
        return _failure(EXIT_CONFIG, exc, f"error: {exc}")
    if isinstance(exc, RackwaveTransientError):
        return _failure(EXIT_TEMPORARY, exc, f"error (temporary, safe to run again): {exc}")
    if isinstance(exc, RackwaveError):
        return _failure(EXIT_FATAL, exc, f"error: {exc}")
    if isinstance(exc, PipelineStepFailed):
        return _failure(EXIT_FATAL, exc, f"error: the {exc.step} step failed: {exc.exception}")
    unexpected = _failure(EXIT_FATAL, exc, f"error: unexpected {type(exc).__name__}: {exc}")
    unexpected.expected = False
    return unexpected


def warehouse_failure(exc: PipelineStepFailed, destination: str) -> Optional[BaseException]:
    """A locked DuckDB file or an unreachable warehouse in a step dlt failed (e.g. while the
    command finished a previous run's load), as our transient errors."""
    locked = locked_duckdb_file(exc)
    if locked is not None:
        return locked
    if exc.step in ("sync", "load") and is_unreachable(exc.exception):
        return unreachable_warehouse(destination, exc.exception)
    return None


def _failure(code: int, exc: BaseException, text: str) -> Failure:
    return Failure(code, type(exc).__name__, str(exc), text)


def usage_failure(usage_text: str) -> Failure:
    """argparse refused the arguments (exit code 2); its own text is on stderr already."""
    lines = [line for line in usage_text.strip().splitlines() if line.strip()]
    message = lines[-1] if lines else "invalid arguments"
    return Failure(EXIT_CONFIG, USAGE_ERROR, message, usage_text)


def table_document(table: TableSummary) -> Dict[str, Any]:
    """One table's figures, as the human summary shows them (pipelines/summary.py)."""
    return {
        "table": table.table,
        "mode": table.mode,
        "pages": table.pages,
        "rows_read": table.rows_read,
        "new": table.new,
        "updated": table.updated,
        "removed": table.removed,
        "rows_before": table.rows_before,
        "rows_now": table.rows_after,
        "requests": table.requests,
        "rate_limited": table.rate_limited,
        "api_total": table.api_total,
        "rows_held": table.rows_held,
        "count_offset": table.count_offset,
        "verdict": table.verdict,
    }


def run_document(
    *,
    pipeline: Optional[str],
    destination: Optional[str],
    dataset: Optional[str],
    seconds: float,
    tables: List[TableSummary],
    failure: Optional[Failure],
) -> Dict[str, Any]:
    """The whole run: the same keys whether it loaded or not (``tables`` empty, ``error`` set
    when it did not)."""
    return {
        "format_version": JSON_FORMAT_VERSION,
        "status": failure.status if failure else STATUSES[EXIT_LOADED],
        "exit_code": failure.exit_code if failure else EXIT_LOADED,
        "pipeline": pipeline,
        "destination": destination,
        "dataset": dataset,
        "seconds": round(seconds, SECONDS_DECIMALS),
        "tables": [table_document(table) for table in tables],
        "error": None if failure is None else {
            "class": failure.error_class,
            "message": failure.message,
            "exit_code": failure.exit_code,
        },
    }


def print_document(document: Dict[str, Any]) -> None:
    """One JSON document, one line, on stdout."""
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def reserved_stdout(active: bool) -> Iterator[None]:
    """While active, whatever the run prints to stdout (Python's or the file descriptor's) goes
    to stderr, so that stdout carries the JSON document only."""
    if not active:
        yield
        return
    sys.stdout.flush()
    try:
        saved: Optional[int] = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no file descriptor 1 (an embedding host): Python's stdout only
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
