"""The ``rackwave`` command's progress display: per resource, pages and rows out of what the API
announces, the rate, and an ETA where one can honestly be given.

One object, :class:`RunProgress`, is both the source's progress observer
(``rackwave_source.read.progress.Progress``: pages, phases) and a dlt collector (passed as
``dlt.pipeline(progress=...)``: dlt's normalize and load steps), so the source finds it on the
running pipeline and a user's own code can pass it the same way. Two ways to show it:

* on a terminal, a live block of lines redrawn in place a few times a second (stderr);
* anywhere else (cron, CI, Airflow logs), one plain line per running resource every
  ``RACKWAVE_PROGRESS_INTERVAL`` seconds (5 by default) and one when it is done: no carriage
  returns, no cursor movement, nothing a log viewer shows as garbage.

What can be promised: a full scan reads ``meta.last_page`` pages, so it gets a percentage and an
ETA (from the page rate of the last few seconds). An incremental run reads until its pages pass
the cursor, and no count says how far that is: it shows pages and rows so far and says what it
reads back to, and no ETA. Re-reads and deletion lookups after the main pass are named as such.

Cost: the scan's thread only adds to counters (no lock; a display that reads a count a page late
is harmless); drawing happens on this module's own thread, a few times a second.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, TextIO, Tuple

from dlt.common.runtime.collector import NullCollector
from dlt.common.runtime.collector_base import Collector

from rackwave_source.read.cursor import ScanPlan
from rackwave_source.timestamps import to_iso
from rackwave_source.exceptions import ConfigurationError
from rackwave_source.read.progress import PHASE_DELETIONS, PHASE_HOLES, PHASE_TOP

#: seconds between plain lines when not on a terminal (``RACKWAVE_PROGRESS_INTERVAL`` overrides)
DEFAULT_INTERVAL_S = 5.0
INTERVAL_VARIABLE = "RACKWAVE_PROGRESS_INTERVAL"
#: seconds between redraws of the live display on a terminal
REDRAW_S = 0.2
#: the rate is measured over this many seconds (a 429 pause shows within a few seconds)
RATE_WINDOW_S = 10.0
#: no rate (and so no ETA) before this many seconds of measurement
MIN_RATE_SPAN_S = 0.5
BAR_WIDTH = 20
PLAIN_PREFIX = "progress: "
PHASE_TEXT = {
    PHASE_TOP: "re-reading page 1 (records created during the scan)",
    PHASE_HOLES: "re-reading ranges no page vouched for",
    PHASE_DELETIONS: "checking loaded rows the scan did not see (lookups)",
}
STEP_UNITS = {"Normalize": "Files", "Load": "Jobs"}  # dlt's counter of each step
ERASE_LINE, UP_LINES = "\x1b[2K", "\x1b[{}F"


# -- the arithmetic (unit-tested with a fake clock) ----------------------------------------------
class RateMeter:
    """Rows and pages per second over the last ``window_s`` seconds of samples."""

    def __init__(self, window_s: float = RATE_WINDOW_S, min_span_s: float = MIN_RATE_SPAN_S):
        self.window_s = window_s
        self.min_span_s = min_span_s
        self._samples: Deque[Tuple[float, int, int]] = deque()

    def sample(self, now: float, pages: int, rows: int) -> None:
        """Records the counts at ``now``; samples older than the window (but the newest of them,
        the window's start) are dropped."""
        self._samples.append((now, pages, rows))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def rates(self) -> Optional[Tuple[float, float]]:
        """``(pages/s, rows/s)``, or None while less than ``min_span_s`` was measured."""
        if len(self._samples) < 2:
            return None
        (t0, p0, r0), (t1, p1, r1) = self._samples[0], self._samples[-1]
        span = t1 - t0
        if span < self.min_span_s:
            return None
        return (p1 - p0) / span, (r1 - r0) / span


def eta_s(pages: int, last_page: int, pages_per_s: Optional[float]) -> Optional[float]:
    """Seconds left to read pages up to ``last_page`` at ``pages_per_s``; None when no rate is
    known yet or nothing moves (a long 429 pause: better no ETA than an invented one)."""
    if pages_per_s is None or pages_per_s <= 0:
        return None
    return max(0, last_page - pages) / pages_per_s


def fraction(pages: int, last_page: int, done: bool) -> float:
    """Share of the main pass read: 100 % only once the resource is done (a full last page is
    followed by one more page, so ``last_page`` pages read is not the end yet)."""
    if done:
        return 1.0
    if last_page <= 0:
        return 0.0
    return min(pages / last_page, 0.99)


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


# -- one resource --------------------------------------------------------------------------------
@dataclass
class ResourceProgress:
    """What one resource reported so far (written by the scan's thread, read by the display)."""

    name: str
    plan: ScanPlan
    started_at: float
    pages: int = 0  # pages of the main pass
    rows: int = 0  # records new to this run
    total: int = 0  # meta.total of the latest page
    last_page: int = 0  # meta.last_page of the main pass's latest page
    rereads: int = 0  # pages after the main pass
    phase: Optional[str] = None
    finished_at: Optional[float] = None
    meter: RateMeter = field(default_factory=RateMeter)

    @property
    def announced(self) -> bool:
        """Whether the amount to read is known up front: a full scan without ``start_date``."""
        return self.plan.full_scan and self.plan.since is None

    def describe(self, now: float, bar: bool) -> str:
        """One line: mode, progress, rate, and the ETA or what is being done."""
        done = self.finished_at is not None
        elapsed = (self.finished_at if self.finished_at is not None else now) - self.started_at
        rates = None if done or self.phase is not None else self.meter.rates()
        parts = [f"{self.name:<9} {'full scan' if self.plan.full_scan else 'incremental'}"]
        parts += self._amount(done, bar)
        if rates is not None:
            parts.append(f"{rates[1]:,.0f} rows/s")
        parts.append(self._doing(done, elapsed, rates))
        return "  ".join(parts)

    def _amount(self, done: bool, bar: bool) -> List[str]:
        if not self.announced:
            upper = f" (of at most {self.last_page:,})" if self.plan.full_scan else ""
            return [plural(self.pages, "page") + upper, plural(self.rows, "row")]
        share = fraction(self.pages, self.last_page, done)
        filled = int(share * BAR_WIDTH)
        shown = [f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}]"] if bar else []
        pages = min(self.pages, self.last_page)  # not the empty page after a full last one
        return shown + [f"{share:4.0%}", f"{pages:,}/{self.last_page:,} pages",
                        f"{self.rows:,}/{self.total:,} rows"]

    def _doing(self, done: bool, elapsed: float, rates: Optional[Tuple[float, float]]) -> str:
        reread = f", {plural(self.rereads, 'page')} re-read" if self.rereads else ""
        if done:
            end = "" if self.announced else f"; {self._bound('read back to ')}, up to date"
            return f"done in {duration(elapsed)}{reread}{end}"
        if self.phase is not None:
            return f"{PHASE_TEXT.get(self.phase, self.phase)}{reread}, {duration(elapsed)}"
        if not self.announced:
            return f"{self._bound('reading back to ')} (how far is unknown until reached), " \
                   f"{duration(elapsed)}"
        left = eta_s(self.pages, self.last_page, rates[0] if rates else None)
        return f"ETA {duration(left)}" if left is not None else "ETA --"

    def _bound(self, lead: str) -> str:
        since = self.plan.since
        what = "the cursor" if not self.plan.full_scan else "start_date"
        return f"{lead}{what}" + (f" {to_iso(since)}" if since is not None else "")


# -- the display -----------------------------------------------------------------------------------
class RunProgress(Collector):
    """Shows a run's progress on ``stream`` (see the module docstring); a dlt collector and a
    ``rackwave_source.read.progress.Progress``."""

    def __init__(self, stream: Optional[TextIO] = None, live: Optional[bool] = None,
                 interval_s: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream: TextIO = stream or sys.stderr
        self.live = is_terminal(self.stream) if live is None else live
        self.interval_s = interval_s if interval_s is not None else configured_interval()
        self.clock = clock
        self.step = ""
        self._resources: Dict[str, ResourceProgress] = {}
        self._step: Optional[Tuple[str, int, Optional[int]]] = None  # (label, done, total)
        self._lock = threading.Lock()  # drawing only: events never take it
        self._stop_event = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._drawn = 0  # lines of the live block on screen
        self._frame: List[str] = []  # what they show
        self._printed_at = 0.0
        self._reported_done: set[str] = set()

    def __deepcopy__(self, memo: Dict[int, Any]) -> "RunProgress":
        return self  # dlt copies its collector with a pipeline; a display stays one

    # -- rackwave_source.read.progress.Progress (called by the scan's thread) --------------------------
    def started(self, resource: str, plan: ScanPlan) -> None:
        state = ResourceProgress(resource, plan, self.clock())
        state.meter.sample(state.started_at, 0, 0)
        self._resources[resource] = state

    def page(self, resource: str, rows: int, total: int, last_page: int) -> None:
        state = self._resources.get(resource)
        if state is None:
            return
        state.rows += rows
        state.total = total
        if state.phase is None:
            state.pages += 1
            state.last_page = max(last_page, 1) if total else 1
        else:
            state.rereads += 1

    def phase(self, resource: str, name: str) -> None:
        state = self._resources.get(resource)
        if state is not None:
            state.phase = name

    def finished(self, resource: str) -> None:
        state = self._resources.get(resource)
        if state is not None:
            state.finished_at = self.clock()

    # -- dlt's collector (extract, normalize and load steps) ------------------------------------
    def update(self, name: str, inc: int = 1, total: Optional[int] = None,
               inc_total: Optional[int] = None, message: Optional[str] = None,
               label: Optional[str] = None) -> None:
        kind = self.step.split(" ", 1)[0]
        if STEP_UNITS.get(kind) != name or label:
            return  # extract: the scan's own events say more
        _, done, known = self._step or (kind, 0, None)
        if total is not None:
            known = total
        if inc_total:
            known = (known or 0) + inc_total
        self._step = (kind.lower(), done + inc, known)

    def _start(self, step: str) -> None:
        self._step = None
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run, name="rackwave-progress", daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.draw(final=True)
        self._step = None

    def _run(self) -> None:
        tick = REDRAW_S if self.live else min(REDRAW_S, self.interval_s)
        while not self._stop_event.wait(tick):
            self.draw()

    # -- drawing (the display's thread; the final frame from dlt's) -------------------------------
    def draw(self, final: bool = False) -> None:
        """Samples the rates and draws: the live block, or the plain lines that are due."""
        now = self.clock()
        states = list(self._resources.values())
        for state in states:
            if state.finished_at is None:
                state.meter.sample(now, state.pages, state.rows)
        with self._lock:
            if self.live:
                self._redraw(self._lines(states, now, bar=True))
            else:
                self._plain(states, now, final)

    def _lines(self, states: List[ResourceProgress], now: float, bar: bool) -> List[str]:
        lines = [state.describe(now, bar) for state in states]
        if self._step is not None:
            kind, done, total = self._step
            lines.append(f"{kind:<9} {done:,}" + (f"/{total:,}" if total else "") +
                         f" {STEP_UNITS[kind.capitalize()].lower()}")
        return lines

    def _redraw(self, lines: List[str]) -> None:
        if lines == self._frame:
            return  # unchanged: nothing to send (a slow ssh link thanks us)
        self._frame = lines
        width = max(20, terminal_width(self.stream) - 1)  # never wrap: that breaks "up"
        out = [UP_LINES.format(self._drawn)] if self._drawn else []
        out += [f"{ERASE_LINE}{line[:width]}\n" for line in lines]
        self.stream.write("".join(out))
        self.stream.flush()
        self._drawn = len(lines)

    def _plain(self, states: List[ResourceProgress], now: float, final: bool) -> None:
        due = final or now - self._printed_at >= self.interval_s
        lines: List[str] = []
        for state in states:
            if state.finished_at is not None and state.name not in self._reported_done:
                self._reported_done.add(state.name)
                lines.append(state.describe(now, bar=False))
            elif state.finished_at is None and due:
                lines.append(state.describe(now, bar=False))
        if due and self._step is not None and not final:
            lines += self._lines([], now, bar=False)
        if due:
            self._printed_at = now
        if lines:
            self.stream.write("".join(f"{PLAIN_PREFIX}{line}\n" for line in lines))
            self.stream.flush()


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal that can redraw lines (not ``TERM=dumb``)."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM", "") != "dumb"


def terminal_width(stream: TextIO) -> int:
    """The width of the terminal ``stream`` writes to (stdout may be a pipe meanwhile)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    return columns or shutil.get_terminal_size().columns  # 0: a terminal that has no size set


def configured_interval() -> float:
    """``RACKWAVE_PROGRESS_INTERVAL`` in seconds, else :data:`DEFAULT_INTERVAL_S`."""
    raw = os.environ.get(INTERVAL_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigurationError(
            INTERVAL_VARIABLE, f"{raw!r} is not a number of seconds above 0",
            f"Set it to e.g. 5, or unset it for the default ({DEFAULT_INTERVAL_S:g} s).")
    return value


def command_progress(wanted: Optional[bool], stream: Optional[TextIO] = None) -> Collector:
    """The command's display: ``--progress`` (True) always, ``--no-progress`` (False) never, and
    by default (None) only on a terminal, as interactive CLIs do: a scheduler's log stays the
    summary alone unless ``--progress`` asks for periodic lines. Off, it is dlt's own default
    (its null collector), which shows nothing."""
    out = stream or sys.stderr
    if wanted is False or (wanted is None and not is_terminal(out)):
        return NullCollector()
    return RunProgress(out)
