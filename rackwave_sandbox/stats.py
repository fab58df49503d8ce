"""Per-endpoint request counters and churn counts exposed through ``GET /_admin/stats``."""

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
            self._churn: dict[str, dict[str, int]] = {}
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

    def churn(self, kind: str, created: int, deleted: int) -> None:
        """Count records that churn created and deleted in ``kind`` for one list request.

        Tests compare these with what they saw over HTTP, so a kind appears
        as soon as churn ran on it, even if a fractional rate drew nothing.
        """
        with self._lock:
            per = self._churn.get(kind)
            if per is None:
                per = self._churn[kind] = {"created": 0, "deleted": 0}
            per["created"] += created
            per["deleted"] += deleted

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of all counters."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "statuses": {k: dict(v) for k, v in self._statuses.items()},
                "pages": {k: list(v) for k, v in self._pages.items()},
                "churn": {k: dict(v) for k, v in self._churn.items()},
                "total": self._total,
            }
