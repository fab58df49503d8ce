"""A small ``requests`` client of the sandbox's HTTP admin API (``/_admin``).

Works the same whether the sandbox runs in-process or as another process,
which is why tests and benchmarks use it instead of touching the store.
"""

from __future__ import annotations

from typing import Any

import requests


class AdminError(RuntimeError):
    """An admin call answered with a non-2xx status."""


class AdminClient:
    """Client of ``{root_url}/_admin``.

    Args:
        root_url: Server root, e.g. ``http://127.0.0.1:8765`` (no ``/v1``).
        timeout: Per-call timeout in seconds.
    """

    def __init__(self, root_url: str, timeout: float = 30.0, verify: bool | str = True) -> None:
        self.root_url = root_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        # The sandbox's own certificate when it serves HTTPS; passed per request because requests
        # lets REQUESTS_CA_BUNDLE override a session's setting.
        self._verify = verify

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._session.close()

    def _call(self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None) -> Any:
        resp = self._session.request(
            method, f"{self.root_url}/_admin/{path}", json=json, params=params, timeout=self.timeout,
            verify=self._verify,
        )
        if not resp.ok:
            raise AdminError(f"{method} /_admin/{path} -> {resp.status_code}: {resp.text}")
        return resp.json()

    # -- stats -------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Request counters: ``requests``, ``statuses``, ``pages``, ``total``, and ``churn``
        (``{kind: {"created": n, "deleted": m}}``, records changed by ``churn_*`` settings)."""
        result: dict[str, Any] = self._call("GET", "stats")
        return result

    def reset_stats(self) -> None:
        """Zero all counters."""
        self._call("POST", "stats/reset")

    def requests(self, endpoint: str) -> int:
        """Count for one endpoint key, e.g. ``"GET /v1/leads"``."""
        return int(self.stats()["requests"].get(endpoint, 0))

    # -- records -----------------------------------------------------------------
    def records(self, kind: str) -> list[dict[str, Any]]:
        """All records of ``kind`` in API order (newest first)."""
        result: list[dict[str, Any]] = self._call("GET", f"records/{kind}")["data"]
        return result

    def ids(self, kind: str) -> list[str]:
        """All ids of ``kind`` in API order."""
        result: list[str] = self._call("GET", f"records/{kind}", params={"fields": "id"})["ids"]
        return result

    def insert(
        self,
        kind: str,
        records: list[dict[str, Any]] | None = None,
        count: int | None = None,
        created_at: str | None = None,
        sort_at: str | None = None,
    ) -> list[dict[str, Any]]:
        """Insert given (partial) records, or ``count`` generated ones.

        Missing fields are generated; ``created_at`` defaults to now. ``sort_at`` (a timestamp):
        the records sort at that time whatever their ``created_at`` says, so a record can be
        served with a ``created_at`` that is not a timestamp (``records=[{"created_at": "soon"}]``).
        """
        body: dict[str, Any] = {}
        if records is not None:
            body["records"] = records
        else:
            body["count"] = 1 if count is None else count
        if created_at is not None:
            body["created_at"] = created_at
        if sort_at is not None:
            body["sort_at"] = sort_at
        result: list[dict[str, Any]] = self._call("POST", f"records/{kind}", json=body)["data"]
        return result

    def get(self, kind: str, id: str) -> dict[str, Any]:  # noqa: A002
        """One record by id."""
        result: dict[str, Any] = self._call("GET", f"records/{kind}/{id}")["data"]
        return result

    def update(self, kind: str, id: str, **fields: Any) -> dict[str, Any]:  # noqa: A002
        """Merge fields into a record (updated_at bumped to now unless given)."""
        result: dict[str, Any] = self._call("PATCH", f"records/{kind}/{id}", json=fields)["data"]
        return result

    def delete(self, kind: str, id: str) -> None:  # noqa: A002
        """Delete one record."""
        self._call("DELETE", f"records/{kind}/{id}")

    # -- behaviour ---------------------------------------------------------------
    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change runtime settings; returns the current ones."""
        result: dict[str, Any] = self._call("POST", "config", json=settings)
        return result

    def revoke_tokens(self) -> None:
        """Invalidate every issued token."""
        self._call("POST", "tokens/revoke")

    def add_faults(self, faults: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Queue deterministic faults; returns the pending queue."""
        result: list[dict[str, Any]] = self._call("POST", "faults", json={"faults": faults})["faults"]
        return result

    def faults(self) -> list[dict[str, Any]]:
        """Pending queued faults."""
        result: list[dict[str, Any]] = self._call("GET", "faults")["faults"]
        return result

    def clear_faults(self) -> None:
        """Remove queued faults."""
        self._call("DELETE", "faults")

    def add_trigger(self, path: str, after_requests: int, action: dict[str, Any]) -> dict[str, Any]:
        """Run ``action`` once after the n-th successful request to ``path``."""
        result: dict[str, Any] = self._call(
            "POST", "triggers", json={"path": path, "after_requests": after_requests, "action": action}
        )["trigger"]
        return result

    def triggers(self) -> list[dict[str, Any]]:
        """Registered triggers and their counters."""
        result: list[dict[str, Any]] = self._call("GET", "triggers")["triggers"]
        return result

    def clear_triggers(self) -> None:
        """Remove all triggers."""
        self._call("DELETE", "triggers")

    def reset(self, leads: int | None = None, contacts: int | None = None, seed: int | None = None) -> None:
        """Regenerate data; clear stats, tokens, faults and triggers."""
        self._call("POST", "reset", json={"leads": leads, "contacts": contacts, "seed": seed})
