"""One request budget shared by every worker of a client.

Rackwave documents 429 + Retry-After but no quota. The throttle therefore:

* pauses *every* worker until Retry-After has passed (not just the one that was refused);
* learns a request rate from the 429s: the requests that succeeded since the previous 429 (or the
  start), divided by the time since then plus the pause, is what the server let through (for a
  token bucket: its burst plus its refill over that time), so the rate is set there, never above
  ``max_requests_per_second`` when the account's quota is known;
* grows the learned rate back slowly (``growth_per_second``, 1 %/s) while no 429 comes, so a
  raised limit or a low first estimate is found again, without a pause every few seconds: each
  429 costs every worker a whole Retry-After, so being slightly under the limit pays more than
  probing it. (An API whose burst is much smaller than a second of its rate yields a low first
  estimate; setting ``max_requests_per_second`` avoids the slow climb.)

With no 429 and no configured quota it does nothing at all: concurrency alone bounds the load.

Time is read through ``clock`` and waited out through ``sleep`` (``time.monotonic`` and
``time.sleep`` unless given), so tests can drive it with a fake clock.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional


class Throttle:
    """Thread-safe pacing of requests: a shared pause and an adaptive token-bucket rate."""

    def __init__(
        self,
        max_requests_per_second: Optional[float] = None,
        growth_per_second: float = 0.01,
        min_rate: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_rate = max_requests_per_second
        self.rate: Optional[float] = max_requests_per_second
        self.growth = growth_per_second
        self.min_rate = min_rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._next_slot = 0.0
        self._last_change = clock()
        self._window_start: Optional[float] = None  # set by the first request
        self._window_ok = 0
        self._last_signal = float("-inf")
        self.rate_limited = 0

    def acquire(self) -> float:
        """Blocks until this worker may send its next request; returns the send time."""
        with self._lock:
            now = self._clock()
            self._grow(now)
            start = max(now, self._paused_until, self._next_slot)
            if self._window_start is None:
                self._window_start = start
            if self.rate:
                self._next_slot = start + 1.0 / self.rate
        delay = start - self._clock()
        if delay > 0:
            self._sleep(delay)
        return start

    def _grow(self, now: float) -> None:
        if self.rate and self.growth and (self.max_rate is None or self.rate < self.max_rate):
            elapsed = now - self._last_change
            if elapsed > 0:
                self.rate *= (1.0 + self.growth) ** elapsed
                if self.max_rate is not None:
                    self.rate = min(self.rate, self.max_rate)
        self._last_change = now

    def succeeded(self) -> None:
        with self._lock:
            self._window_ok += 1

    def rate_limited_for(self, retry_after: float, sent_at: float) -> None:
        """A 429: pause everyone, and re-estimate what the server lets through.

        Requests already in flight when an earlier 429 arrived are refused too; they extend the
        pause but are no new evidence, so they do not lower the rate again.
        """
        with self._lock:
            now = self._clock()
            self.rate_limited += 1
            self._paused_until = max(self._paused_until, now + retry_after)
            self._next_slot = max(self._next_slot, self._paused_until)
            if sent_at < self._last_signal:
                return
            self._last_signal = now
            span = (now - (self._window_start or now)) + retry_after
            if self._window_ok > 0 and span > 0:
                estimate = max(self.min_rate, self._window_ok / span)
                self.rate = estimate
                if self.max_rate is not None:
                    self.rate = min(self.rate, self.max_rate)
            # A 429 right after another one, with nothing let through in between, says "wait",
            # not "slower": the pause honours it, and the rate learned from traffic stays.
            self._last_change = self._paused_until
            self._window_start = self._paused_until
            self._window_ok = 0
