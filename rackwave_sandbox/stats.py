"""Per-endpoint request counters exposed through ``GET /_admin/stats``."""

from __future__ import annotations

import threading
from typing import Any


class Stats:
    """Thread-safe counters keyed by ``"METHOD /path"`` (query string removed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._requests: dict[str, int] = {}
            self._statuses: dict[str, dict[str, int]] = {}
            self._pages: dict[str, list[int]] = {}
            self._total = 0

    def request(self, endpoint: str, page: int | None = None) -> None:
        """Count one incoming ``/v1`` request (before any fault or check)."""
        with self._lock:
            self._total += 1
            self._requests[endpoint] = self._requests.get(endpoint, 0) + 1
            if page is not None:
                self._pages.setdefault(endpoint, []).append(page)

    def status(self, endpoint: str, status: str) -> None:
        """Count the outcome (an HTTP status, or ``"dropped"``)."""
        with self._lock:
            per = self._statuses.setdefault(endpoint, {})
            per[status] = per.get(status, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of all counters."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "statuses": {k: dict(v) for k, v in self._statuses.items()},
                "pages": {k: list(v) for k, v in self._pages.items()},
                "total": self._total,
            }
