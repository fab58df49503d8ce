"""Injected faults (random and queued) and data-changing triggers.

Random faults come from a seeded RNG so a failing test can be replayed;
queued faults are fully deterministic ("the 3rd request to /v1/leads gets a
502"), which is what connector retry tests need. Triggers mutate the store
between two pages of a client's pagination to test consistency handling.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import asdict, dataclass
from typing import Any

from rackwave_sandbox.config import KINDS
from rackwave_sandbox.store import RecordError, Store

TOKEN_PATH = "/v1/auth/token"
FAULT_KINDS: tuple[str, ...] = (
    "500", "502_html", "drop", "truncate", "truncate_json", "429", "body", "tamper",
    "drop_after", "500_after",
)
#: Fault kinds that need the real response (they mangle it, or, for a create, lose it after the
#: record was stored: "drop_after" closes the connection, "500_after" answers 500); all others
#: are answered before the request is processed.
POST_FAULTS = frozenset({"truncate", "truncate_json", "tamper", "drop_after", "500_after"})
_STATUS_KIND = re.compile(r"^[45]\d\d$")


def is_status_kind(kind: str) -> bool:
    """Any ``"4xx"``/``"5xx"`` string is a JSON error fault with that status."""
    return bool(_STATUS_KIND.match(kind))

BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


class FaultError(ValueError):
    """Invalid fault or trigger definition (answered 422 by the admin API)."""


def _default_match(path: str) -> bool:
    return path.startswith("/v1/") and path != TOKEN_PATH


@dataclass
class Fault:
    """One queued fault definition and its remaining budget."""

    kind: str
    count: int = 1
    path: str | None = None
    # Only requests with this HTTP method match (e.g. "POST": a create, not the lookups after it).
    method: str | None = None
    after: int = 0
    # Only requests for this page number match: a concurrent client asks for pages out of order,
    # so "the n-th request" is not "page n".
    page: int | None = None
    retry_after: int = 1
    message: str | None = None
    # "body": answer 200 with this JSON instead of the real page (an API that breaks its contract)
    body: Any = None
    # "tamper": the real page, with data[record] changed: {"record": i, "set": {...}, "drop": [...]}
    tamper: dict[str, Any] | None = None

    def matches(self, path: str, page: int | None = None, method: str | None = None) -> bool:
        """Explicit ``path`` is a prefix; otherwise any /v1 path but the token one."""
        if self.page is not None and page != self.page:
            return False
        if self.method is not None and method != self.method:
            return False
        return path.startswith(self.path) if self.path else _default_match(path)


@dataclass
class Trigger:
    """A one-shot store mutation after the n-th matching successful request."""

    path: str
    after_requests: int
    action: dict[str, Any]
    seen: int = 0
    fired: bool = False


def _as_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FaultError(f"{name} must be an integer >= {minimum}")
    return value


class FaultInjector:
    """Decides, per ``/v1`` request, whether and how to misbehave."""

    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(f"rackwave:faults:{seed}")
        self._queue: list[Fault] = []

    def reset(self, seed: int) -> None:
        """Clear queued faults and reseed the random-fault RNG."""
        with self._lock:
            self._rng = random.Random(f"rackwave:faults:{seed}")
            self._queue.clear()

    def add(self, faults: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Validate and enqueue fault definitions.

        Raises:
            FaultError: On an unknown kind or a bad number.
        """
        parsed: list[Fault] = []
        if not isinstance(faults, list):
            raise FaultError("faults must be a list")
        for item in faults:
            if not isinstance(item, dict):
                raise FaultError("each fault must be an object")
            kind = str(item.get("kind", ""))
            if kind not in FAULT_KINDS and not is_status_kind(kind):
                raise FaultError(
                    f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS} or any 4xx/5xx status"
                )
            message = item.get("message")
            if message is not None and not isinstance(message, str):
                raise FaultError("message must be a string")
            path = item.get("path")
            if path is not None and not isinstance(path, str):
                raise FaultError("path must be a string")
            tamper = item.get("tamper")
            if kind == "tamper" and not isinstance(tamper, dict):
                raise FaultError('a "tamper" fault needs {"tamper": {"record": i, "set": {...}}}')
            method = item.get("method")
            if method is not None and method not in ("GET", "POST"):
                raise FaultError('method must be "GET" or "POST"')
            page = item.get("page")
            if page is not None:
                page = _as_int(page, "page", 1)
            parsed.append(
                Fault(
                    kind=kind,
                    page=page,
                    count=_as_int(item.get("count", 1), "count", 1),
                    path=path or None,
                    method=method,
                    after=_as_int(item.get("after", 0), "after", 0),
                    retry_after=_as_int(item.get("retry_after", 1), "retry_after", 0),
                    message=message,
                    body=item.get("body"),
                    tamper=tamper,
                )
            )
        with self._lock:
            self._queue.extend(parsed)
            return [asdict(f) for f in self._queue]

    def clear(self) -> None:
        """Drop all queued faults."""
        with self._lock:
            self._queue.clear()

    def pending(self) -> list[dict[str, Any]]:
        """Queued faults with their remaining counts."""
        with self._lock:
            return [asdict(f) for f in self._queue]

    def pick(
        self, path: str, error_rate: float, drop_rate: float, page: int | None = None,
        method: str | None = None,
    ) -> Fault | None:
        """Return the fault to apply to this request, if any.

        Queued faults win over random ones. Every matching queued fault whose
        ``after`` is positive counts this request; the first matching fault
        whose ``after`` was already exhausted fires and spends one ``count``.
        """
        if not self._queue and error_rate <= 0 and drop_rate <= 0:
            return None  # hot path: nothing configured, no lock needed
        with self._lock:
            chosen: Fault | None = None
            for fault in self._queue:
                if not fault.matches(path, page, method):
                    continue
                if fault.after > 0:
                    fault.after -= 1
                elif chosen is None:
                    chosen = fault
            if chosen is not None:
                chosen.count -= 1
                if chosen.count <= 0:
                    self._queue.remove(chosen)
                return Fault(kind=chosen.kind, retry_after=chosen.retry_after,
                             message=chosen.message, body=chosen.body, tamper=chosen.tamper)
            if (error_rate > 0 or drop_rate > 0) and _default_match(path):
                draw = self._rng.random()
                if draw < drop_rate:
                    return Fault(kind="drop")
                if draw < drop_rate + error_rate:
                    return Fault(kind="500")
            return None


def _validate_action(action: Any) -> dict[str, Any]:
    if not isinstance(action, dict) or len(action) != 1:
        raise FaultError("action must be an object with exactly one of insert/delete/update")
    (verb, spec), = action.items()
    if verb not in ("insert", "delete", "update") or not isinstance(spec, dict):
        raise FaultError(f"unknown trigger action {verb!r}")
    if spec.get("kind") not in KINDS:
        raise FaultError(f"action kind must be one of {KINDS}")
    if verb == "insert":
        _as_int(spec.get("count", 1), "count", 1)
    elif verb == "delete":
        if "ids" in spec:
            if not isinstance(spec["ids"], list):
                raise FaultError("ids must be a list")
        else:
            _as_int(spec.get("count", 1), "count", 1)
            if spec.get("position", "oldest") not in ("oldest", "newest", "middle"):
                raise FaultError("position must be oldest, newest or middle")
    else:
        if not isinstance(spec.get("ids"), list) or not isinstance(spec.get("fields", {}), dict):
            raise FaultError("update needs ids (list) and fields (object)")
    return action


def run_action(store: Store, action: dict[str, Any]) -> dict[str, Any]:
    """Apply one trigger action to the store and describe what changed."""
    (verb, spec), = action.items()
    kind = spec["kind"]
    with store.lock:
        coll = store.collection(kind)
        if verb == "insert":
            created = [
                store.new_record(kind, created_at=spec.get("created_at"))
                for _ in range(int(spec.get("count", 1)))
            ]
            return {"inserted": [r["id"] for r in created]}
        if verb == "delete":
            if "ids" in spec:
                ids = [str(i) for i in spec["ids"]]
            else:
                ordered = coll.ids()
                count = min(int(spec.get("count", 1)), len(ordered))
                position = spec.get("position", "oldest")
                if position == "newest":
                    ids = ordered[:count]
                elif position == "oldest":
                    ids = ordered[len(ordered) - count :]
                else:
                    start = max(0, len(ordered) // 2 - count // 2)
                    ids = ordered[start : start + count]
            deleted = []
            for rid in ids:
                try:
                    coll.delete(rid)
                    deleted.append(rid)
                except RecordError:
                    pass
            return {"deleted": deleted}
        updated = []
        for rid in spec["ids"]:
            try:
                coll.update(str(rid), dict(spec.get("fields", {})))
                updated.append(rid)
            except RecordError:
                pass
        return {"updated": updated}


class TriggerSet:
    """Registered triggers; counts matching successful requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._triggers: list[Trigger] = []

    def add(self, path: Any, after_requests: Any, action: Any) -> dict[str, Any]:
        """Validate and register a trigger.

        Raises:
            FaultError: On a malformed definition.
        """
        if not isinstance(path, str) or not path:
            raise FaultError("path must be a non-empty string")
        trigger = Trigger(path, _as_int(after_requests, "after_requests", 1), _validate_action(action))
        with self._lock:
            self._triggers.append(trigger)
        return asdict(trigger)

    def clear(self) -> None:
        """Remove all triggers."""
        with self._lock:
            self._triggers.clear()

    def listing(self) -> list[dict[str, Any]]:
        """All triggers with their counters."""
        with self._lock:
            return [asdict(t) for t in self._triggers]

    def armed(self) -> bool:
        """Cheap check used on the hot path."""
        return bool(self._triggers)

    def count_success(self, path: str) -> list[Trigger]:
        """Count one successful request to ``path``; return triggers that fire now."""
        fired: list[Trigger] = []
        with self._lock:
            for trigger in self._triggers:
                if trigger.fired or not path.startswith(trigger.path):
                    continue
                trigger.seen += 1
                if trigger.seen >= trigger.after_requests:
                    trigger.fired = True
                    fired.append(trigger)
        return fired
