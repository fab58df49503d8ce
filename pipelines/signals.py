"""SIGINT (Ctrl-C) and SIGTERM (a scheduler stopping a job, ``docker stop``, Kubernetes) stop a
run cleanly, with a message that says what was kept, and exit code 128 + the signal (130, 143).

Stopping anywhere is safe: dlt records a run's cursor only together with a finished load, and a
load package left halfway is finished by the next run (``finish_interrupted_load``). So the
first signal raises ``RunInterrupted`` in the main thread, which unwinds the run through its
normal cleanup (the source's page workers stop before their next request; the lock is released).
During normalize and load dlt puts its own handlers in place (``intercepted_signals``): it lets
the running load jobs finish, then raises its ``SignalReceivedException``, which is recognised
the same way. A second signal while the first unwinds leaves at once: nothing more is lost than by
the first, and a person pressing Ctrl-C twice means it.

Without this, SIGTERM during the extract killed the run silently ("killed by signal 15"), and
Ctrl-C printed "error: the extract step failed:" and nothing else, with exit code 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from types import FrameType
from typing import Any, Iterator, Optional

from dlt.common.runtime.signals import was_signal_received

from rackwave_source.warehouse.target import dlt_quiet

#: exit code of a run stopped by signal N: 128 + N, as a shell reports a process killed by it
SIGNAL_EXIT_BASE = 128
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped by a signal. A KeyboardInterrupt, so that no ``except Exception``
    swallows it, and dlt wraps it in its step error as it does Ctrl-C."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal_name(signum)}")


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(signum: int) -> int:
    return SIGNAL_EXIT_BASE + signum


def interruption(exc: BaseException) -> Optional[int]:
    """The signal that stopped the run, if ``exc`` (or what it wraps) is a stop by a signal:
    ours, dlt's ``SignalReceivedException`` (it carries the signal), or a bare Ctrl-C."""
    seen: Optional[BaseException] = exc
    visited = set()
    while seen is not None and id(seen) not in visited:
        if isinstance(seen, RunInterrupted):
            return seen.signum
        if isinstance(seen, KeyboardInterrupt):
            code: Any = getattr(seen, "signal_code", None)
            return code if code in HANDLED_SIGNALS else signal.SIGINT
        visited.add(id(seen))
        seen = getattr(seen, "exception", None) or seen.__cause__ or seen.__context__
    return None


def interrupted_message(signum: int, push: bool = False) -> str:
    if push:
        return (
            f"interrupted by {signal_name(signum)}: the push stopped. Every row sent so far is in "
            "its journal; the next push sends the rest, each row once, and logs them all."
        )
    return (
        f"interrupted by {signal_name(signum)}: the run stopped. Nothing past the last completed "
        "load was recorded (dlt keeps the cursor only with a finished load); a load left halfway "
        "is finished by the next run, which then reads the API as usual."
    )


_stopping = False


def _stop(signum: int, frame: Optional[FrameType]) -> None:
    global _stopping
    _stopping = True
    for handled in HANDLED_SIGNALS:
        signal.signal(handled, _stop_now)
    raise RunInterrupted(signum)


class _QuietStop(logging.Filter):
    """Once a signal arrived, dlt's own warnings and errors about it ("Exiting runner due to
    signal 15", "Package ... was not fully loaded", a push job's "Transient exception" with its
    traceback) are left out: the command says what the stop means, in one line of its own
    (``interrupted_message``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING or not (_stopping or was_signal_received())


def _stop_now(signum: int, frame: Optional[FrameType]) -> None:
    """A second signal: leave without waiting for the cleanup (as safe as a kill)."""
    os.write(sys.stderr.fileno(),
             f"{signal_name(signum)} again: stopping at once.\n".encode())
    os._exit(exit_code(signum))


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``RunInterrupted`` in the body (main thread only: elsewhere
    Python cannot install handlers, and the caller's own handling stays)."""
    global _stopping
    try:
        previous = {handled: signal.signal(handled, _stop) for handled in HANDLED_SIGNALS}
    except ValueError:  # not the main thread
        yield
        return
    _stopping = False
    try:
        with dlt_quiet(_QuietStop):
            yield
    finally:
        for handled, handler in previous.items():
            signal.signal(handled, handler)
