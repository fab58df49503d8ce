"""Instants as the source keeps them: aware UTC datetimes, ISO 8601 text in state and rows,
and whole microseconds where pages are compared.
"""

from __future__ import annotations
from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def to_iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def from_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def micros(value: datetime) -> int:
    """A datetime as integer microseconds since the epoch (UTC), as pages carry created_at."""
    return int(round(value.timestamp() * 1_000_000))


def from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, tz=timezone.utc)
