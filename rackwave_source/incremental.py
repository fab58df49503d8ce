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
from datetime import datetime, timezone
from typing import Any, Dict, List, MutableMapping, Optional, Set, Tuple

import pyarrow as pa

from . import settings as S
from .config import RackwaveSettings
from .exceptions import UnexpectedResponseError
from .records import Page

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


def _micros(value: datetime) -> int:
    return int(round(value.timestamp() * 1_000_000))


@dataclass
class RowFilter:
    """Keeps each record of one run once, in the API's newest-first order.

    Tracks the oldest ``created_at`` kept and the ids kept at that exact timestamp, so memory stays
    bounded by the records sharing one timestamp, not by the size of the account. A page's
    timestamps are read once as integers (microseconds): on 100-row pages plain Python over them
    is ten times cheaper than a chain of Arrow compute calls, and the table is only sliced or
    filtered when a page actually crosses a bound.
    """

    resource: str
    since: Optional[datetime]
    oldest: Optional[int] = None  # microseconds since the epoch, UTC
    ids_at_oldest: Set[str] = field(default_factory=set)
    newest_us: Optional[int] = None
    kept: int = 0
    skipped_shifted: int = 0
    recovered: int = 0  # hidden by deletions during the pass, found again (gaps.py)
    reached_bound: bool = False

    @property
    def newest(self) -> Optional[datetime]:
        if self.newest_us is None:
            return None
        return datetime.fromtimestamp(self.newest_us / 1_000_000, tz=timezone.utc)

    def accept(self, page: Page) -> Tuple[pa.Table, List[str]]:
        """Returns the page's records to load and their ids; sets ``reached_bound`` once past
        ``since``."""
        records, ts, ids = page.records, page.created_us, page.ids
        if not records.num_rows:
            return records, []
        self._check_nulls(page)
        for index in range(1, len(ts)):
            if ts[index] > ts[index - 1]:  # type: ignore[operator]
                raise UnexpectedResponseError(
                    f"Rackwave `{self.resource}` page {page.number} is not ordered by "
                    f"`{S.CURSOR_FIELD}` descending as documented (record {ids[index]}); "
                    "incremental loading depends on that order."
                )
        if self.since is not None and ts[-1] < _micros(self.since):  # type: ignore[operator]
            bound = _micros(self.since)
            cut = next(i for i, value in enumerate(ts) if value < bound)  # type: ignore[operator]
            self.reached_bound = True
            records, ts, ids = records.slice(0, cut), ts[:cut], ids[:cut]
            if not ts:
                return records, []
        if self.oldest is not None and ts[0] >= self.oldest:  # type: ignore[operator]
            # the page overlaps what was kept: pages shifted while we paged
            keep = [
                value < self.oldest or (value == self.oldest and ids[i] not in self.ids_at_oldest)
                for i, value in enumerate(ts)
            ]
            dropped = keep.count(False)
            if dropped:
                self.skipped_shifted += dropped
                records = records.filter(pa.array(keep))
                ts = [value for value, k in zip(ts, keep) if k]
                ids = [value for value, k in zip(ids, keep) if k]
                if not ts:
                    return records, []
        last = ts[-1]
        tail = len(ts)
        while tail > 0 and ts[tail - 1] == last:
            tail -= 1
        at_last = set(ids[tail:])
        if self.oldest == last:
            self.ids_at_oldest |= at_last
        else:
            self.oldest, self.ids_at_oldest = last, at_last
        if self.newest_us is None or ts[0] > self.newest_us:  # type: ignore[operator]
            self.newest_us = ts[0]
        self.kept += records.num_rows
        return records, ids  # type: ignore[return-value]

    def _check_nulls(self, page: Page) -> None:
        for column, values in ((S.PRIMARY_KEY, page.ids), (S.CURSOR_FIELD, page.created_us)):
            if None in values:
                raise UnexpectedResponseError(
                    f"Rackwave `{self.resource}` page {page.number}, record "
                    f"{values.index(None)}: it has no `{column}`, so it cannot be loaded "
                    "incrementally and merged. The API broke its contract."
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
        "rows": rows.kept + rows.recovered,
        "rows_recovered_after_deletions": rows.recovered,
        "rows_skipped_as_shifted": rows.skipped_shifted,
        "flagged_deleted": flagged_deleted,
        "requests": http.get("requests", 0),
        "rate_limited": http.get("rate_limited", 0),
    }
