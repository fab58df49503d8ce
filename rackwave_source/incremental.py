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
from typing import Any, Dict, MutableMapping, Optional, Set

import pyarrow as pa
import pyarrow.compute as pc

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
    bounded by the records sharing one timestamp, not by the size of the account. Works on a
    page's Arrow table with vectorised compute; Python only touches the page boundaries.
    """

    resource: str
    since: Optional[datetime]
    oldest: Optional[datetime] = None
    ids_at_oldest: Set[str] = field(default_factory=set)
    newest: Optional[datetime] = None
    kept: int = 0
    skipped_shifted: int = 0
    reached_bound: bool = False

    def accept(self, page_number: int, records: pa.Table) -> pa.Table:
        """Returns the page's records to load; sets ``reached_bound`` once past ``since``."""
        if not records.num_rows:
            return records
        ids = records.column(S.PRIMARY_KEY)
        created = records.column(S.CURSOR_FIELD)
        self._check(page_number, ids, created)
        if self.since is not None:
            older = pc.less(created, pa.scalar(self.since, created.type))
            if pc.any(older).as_py():
                self.reached_bound = True
                records = records.slice(0, _first_true(older))
                if not records.num_rows:
                    return records
                ids, created = records.column(S.PRIMARY_KEY), records.column(S.CURSOR_FIELD)
        if self.oldest is not None:
            bound = pa.scalar(self.oldest, created.type)
            repeat = pc.or_(
                pc.greater(created, bound),
                pc.and_(pc.equal(created, bound),
                        pc.is_in(ids, value_set=pa.array(sorted(self.ids_at_oldest), pa.string()))),
            )
            repeats = pc.sum(repeat).as_py() or 0
            if repeats:
                self.skipped_shifted += repeats
                records = records.filter(pc.invert(repeat))
                if not records.num_rows:
                    return records
                ids, created = records.column(S.PRIMARY_KEY), records.column(S.CURSOR_FIELD)
        last = created[-1].as_py()
        at_last = set(ids.filter(pc.equal(created, created[-1])).to_pylist())
        if self.oldest is not None and last == self.oldest:
            self.ids_at_oldest |= at_last
        else:
            self.oldest, self.ids_at_oldest = last, at_last
        first = created[0].as_py()
        if self.newest is None or first > self.newest:
            self.newest = first
        self.kept += records.num_rows
        return records

    def _check(self, page_number: int, ids: pa.ChunkedArray, created: pa.ChunkedArray) -> None:
        for column, array in ((S.PRIMARY_KEY, ids), (S.CURSOR_FIELD, created)):
            if array.null_count:
                index = _first_true(pc.is_null(array))
                raise UnexpectedResponseError(
                    f"Rackwave `{self.resource}` page {page_number}, record {index}: it has no "
                    f"`{column}`, so it cannot be loaded incrementally and merged. The API broke "
                    "its contract."
                )
        if len(created) > 1:
            rising = pc.greater(created[1:], created[:-1])
            if pc.any(rising).as_py():
                index = _first_true(rising) + 1
                raise UnexpectedResponseError(
                    f"Rackwave `{self.resource}` page {page_number} is not ordered by "
                    f"`{S.CURSOR_FIELD}` descending as documented (record {ids[index].as_py()}); "
                    "incremental loading depends on that order."
                )


def _first_true(mask: Any) -> int:
    return int(pc.index(mask, True).as_py())


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
    previous_cursor = cursor
    if rows.newest is not None and (cursor is None or rows.newest > from_iso(cursor)):
        state[STATE_CURSOR] = to_iso(rows.newest)
    if plan.full_scan:
        state[STATE_LAST_FULL_SCAN] = to_iso(started_at)
    state[STATE_LAST_RUN] = {
        "started_at": to_iso(started_at),
        "mode": "full_scan" if plan.full_scan else "incremental",
        "reason": plan.reason,
        "previous_cursor": previous_cursor,
        "pages": pages,
        "rows": rows.kept,
        "rows_skipped_as_shifted": rows.skipped_shifted,
        "flagged_deleted": flagged_deleted,
        "requests": http.get("requests", 0),
        "rate_limited": http.get("rate_limited", 0),
    }
