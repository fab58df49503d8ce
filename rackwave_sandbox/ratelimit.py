"""A thread-safe token bucket for the configurable ``/v1`` rate limit."""

from __future__ import annotations

import math
import threading
import time


class TokenBucket:
    """Classic token bucket; ``rate=None`` means unlimited.

    The bucket starts full so that a burst of ``burst`` requests passes
    immediately, then refills at ``rate`` tokens per second.
    """

    def __init__(self, rate: float | None, burst: int | None) -> None:
        self._lock = threading.Lock()
        self.configure(rate, burst)

    def configure(self, rate: float | None, burst: int | None) -> None:
        """Change rate and capacity (refills the bucket)."""
        with self._lock:
            self.rate = rate
            self.burst = (
                None if rate is None else (int(burst) if burst is not None else max(1, math.ceil(rate)))
            )
            self._tokens = float(self.burst or 0)
            self._stamp = time.monotonic()

    def acquire(self) -> int | None:
        """Take one token.

        Returns:
            ``None`` if the request may pass, otherwise the whole number of
            seconds (ceil, at least 1) until a token becomes available, for
            the ``Retry-After`` header.
        """
        if self.rate is None:
            return None
        with self._lock:
            rate, burst = self.rate, self.burst
            if rate is None or burst is None:
                return None
            now = time.monotonic()
            self._tokens = min(float(burst), self._tokens + (now - self._stamp) * rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return None
            return max(1, math.ceil((1.0 - self._tokens) / rate))
