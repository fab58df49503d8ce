"""Cursor logic: what a run reads, which rows it keeps, and what it remembers for the next run.

Why not ``dlt.sources.incremental``: its filter also drops old rows during a deliberate full scan
(the only way to see updates and deletes with a created_at cursor), and a full scan must replace
the table rather than merge into it. The rules here are few and explicit:

* The state (kept by dlt in the destination with the data, so it never runs ahead of what was
  loaded) holds the newest ``created_at`` loaded and the time of the last full scan.
* An incremental run reads newest-first pages and keeps rows with
  ``created_at >= cursor - lookback``; it stops after the first page that reaches past that bound.
  Rows sharing the cursor's second are read again and merged on ``id``: never lost, never doubled.
* A full scan (first run, every ``full_scan_every``, or forced) keeps every row (down to
  ``start_date`` if set) and replaces the table, so updated rows are current and deleted rows go.
* Pages can shift while a run pages (records created or deleted meanwhile). Rows come newest
  first, so a row newer than one already kept was either kept already (a page shifted down) or
  created during the run (its created_at is past the new cursor, so the next run takes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterable, List, MutableMapping, Optional, Set

from . import settings as S
from .config import RackwaveSettings
from .exceptions import UnexpectedResponseError

STATE_CURSOR = "cursor"
STATE_LAST_FULL_SCAN = "last_full_scan_at"
STATE_LAST_RUN = "last_run"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def to_iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def from_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


@dataclass(frozen=True)
class ScanPlan:
    """What one run of one resource reads."""

    full_scan: bool
    since: Optional[datetime]
    reason: str


def plan_scan(state: MutableMapping[str, Any], config: RackwaveSettings, now: datetime) -> ScanPlan:
    """Decides between an incremental read and a full scan from the stored state."""
    cursor = state.get(STATE_CURSOR)
    last_full = state.get(STATE_LAST_FULL_SCAN)
    start = config.start_date
    if config.force_full_scan:
        return ScanPlan(True, start, "full scan requested")
    if cursor is None:
        return ScanPlan(True, start, "first run")
    every = config.full_scan_every
    if every is not None and (last_full is None or now - from_iso(last_full) >= every):
        return ScanPlan(True, start, f"last full scan older than {every}")
    since = from_iso(cursor) - config.lookback
    if start is not None and start > since:
        since = start
    return ScanPlan(False, since, f"incremental from {to_iso(since)}")


@dataclass
class RowFilter:
    """Keeps each record of one run once, in the API's newest-first order.

    Tracks the oldest ``created_at`` kept and the ids kept at that exact timestamp, so memory stays
    bounded by the records sharing one timestamp, not by the size of the account.
    """

    resource: str
    since: Optional[datetime]
    oldest: Optional[datetime] = None
    ids_at_oldest: Set[str] = field(default_factory=set)
    newest: Optional[datetime] = None
    kept: int = 0
    skipped_shifted: int = 0
    reached_bound: bool = False

    def accept(self, page_number: int, records: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Returns the page's records to load; sets ``reached_bound`` once past ``since``."""
        out: List[Dict[str, Any]] = []
        previous: Optional[datetime] = None
        for index, record in enumerate(records):
            record_id = record.get(S.PRIMARY_KEY)
            raw = record.get(S.CURSOR_FIELD)
            if not isinstance(record_id, str) or not record_id:
                raise UnexpectedResponseError(
                    f"Rackwave `{self.resource}` page {page_number}, record {index}: it has no "
                    f"`{S.PRIMARY_KEY}`, so it cannot be merged. The API broke its contract."
                )
            created = _parse_created(self.resource, page_number, record_id, raw)
            if previous is not None and created > previous:
                raise UnexpectedResponseError(
                    f"Rackwave `{self.resource}` page {page_number} is not ordered by "
                    f"`{S.CURSOR_FIELD}` descending as documented (record {record_id}); "
                    "incremental loading depends on that order."
                )
            previous = created
            if self.since is not None and created < self.since:
                self.reached_bound = True
                break
            if self.oldest is not None:
                if created > self.oldest or (created == self.oldest and record_id in self.ids_at_oldest):
                    self.skipped_shifted += 1
                    continue
            if self.oldest is None or created < self.oldest:
                self.oldest = created
                self.ids_at_oldest = set()
            self.ids_at_oldest.add(record_id)
            if self.newest is None or created > self.newest:
                self.newest = created
            out.append(record)
        self.kept += len(out)
        return out


def _parse_created(resource: str, page: int, record_id: str, raw: Any) -> datetime:
    if isinstance(raw, str):
        try:
            return from_iso(raw)
        except ValueError:
            pass
    raise UnexpectedResponseError(
        f"Rackwave `{resource}` page {page}, record {record_id}: `{S.CURSOR_FIELD}` is "
        f"{raw!r}, not an ISO 8601 timestamp; the incremental cursor cannot use it."
    )


def remember(
    state: MutableMapping[str, Any],
    plan: ScanPlan,
    rows: RowFilter,
    started_at: datetime,
    pages: int,
    http: Dict[str, int],
    flagged_deleted: int = 0,
) -> None:
    """Advances the state after every page was read (a failed run never gets here)."""
    cursor = state.get(STATE_CURSOR)
    if rows.newest is not None and (cursor is None or rows.newest > from_iso(cursor)):
        state[STATE_CURSOR] = to_iso(rows.newest)
    if plan.full_scan:
        state[STATE_LAST_FULL_SCAN] = to_iso(started_at)
    state[STATE_LAST_RUN] = {
        "started_at": to_iso(started_at),
        "mode": "full_scan" if plan.full_scan else "incremental",
        "reason": plan.reason,
        "pages": pages,
        "rows": rows.kept,
        "rows_skipped_as_shifted": rows.skipped_shifted,
        "flagged_deleted": flagged_deleted,
        "requests": http.get("requests", 0),
        "rate_limited": http.get("rate_limited", 0),
    }
