"""The cursor: what a run reads, and how far the next run may skip.

Why not ``dlt.sources.incremental``: its filter also drops old rows during a deliberate full scan
(the only way to see updates and deletes with a ``created_at`` cursor), and a full scan must
settle the rows it did not see (``deletions.py``). The rules here are few and explicit:

* The state (kept by dlt in the destination with the data, so it never runs ahead of what was
  loaded) holds the newest ``created_at`` loaded and the time of the last full scan.
* An incremental run reads newest-first pages and keeps rows with
  ``created_at >= cursor - lookback``; it stops after the first page that reaches past that bound.
  Rows sharing the cursor's second are read again and merged on ``id``: never lost, never doubled.
* A full scan (first run, every ``full_scan_every``, asked for, or still owed since one asked
  for did not finish) keeps every
  row (down to ``start_date`` if set), so updated rows are current, and removes or flags the
  rows confirmed deleted.
* The ids loaded exactly at the cursor are kept with it (``cursor_ids``): an incremental run
  skips those, and only those, when it reads them again, so a run with nothing new loads nothing.
  A record created later in the same microsecond has another id and loads.
* The cursor never moves past a record the run has not seen: it advances at most to the newest
  record of the top of the list as last read from page 1 (records created after that are newer,
  so the next run reads them), and never past the server's clock when it answered the run's
  first page (its ``Date`` header): a record dated in the future (a client with a wrong clock, a
  migration) sorts first, and a cursor moved to it would skip every record created after this
  run until the clock caught up. Records loaded above the cursor (``ahead_ids``) are skipped when
  read again, like those at it, so a run with nothing new still loads nothing. See
  ``Scan.cursor_us``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, MutableMapping, Optional

from rackwave_source.options import ValidatedOptions
from rackwave_source.timestamps import from_iso, micros, to_iso

STATE_CURSOR = "cursor"
STATE_LAST_FULL_SCAN = "last_full_scan_at"
#: the ids loaded with ``created_at`` exactly at the cursor (or absent: not known)
STATE_CURSOR_IDS = "cursor_ids"
#: ``{id: created_at}`` of the records loaded with a ``created_at`` after the cursor: dated after
#: the server's clock, or created while the run read (absent: none, or too many to list)
STATE_AHEAD_IDS = "ahead_ids"


@dataclass(frozen=True)
class ScanPlan:
    """What one run of one resource reads."""

    full_scan: bool
    since: Optional[datetime]
    reason: str

    @property
    def since_us(self) -> Optional[int]:
        return None if self.since is None else micros(self.since)


def plan_scan(
    state: MutableMapping[str, Any],
    config: ValidatedOptions,
    now: datetime,
    owed: Optional[str] = None,
) -> ScanPlan:
    """Decides between an incremental read and a full scan from the stored state.

    ``owed``: when a full scan asked for earlier has not finished (``read/scan_requests.py``).
    (A destination that lost its dataset, e.g. a deleted DuckDB file, needs no rule here: dlt
    then wipes the local state, and the run is a first run.)
    """
    cursor = state.get(STATE_CURSOR)
    last_full = state.get(STATE_LAST_FULL_SCAN)
    start = config.start_date
    if config.force_full_scan:
        return ScanPlan(True, start, "full scan requested")
    if cursor is None:
        return ScanPlan(True, start, "first run")
    if owed is not None:
        return ScanPlan(True, start, f"the full scan asked for at {owed} has not finished yet")
    every = config.full_scan_every
    if every is not None and (last_full is None or now - from_iso(last_full) >= every):
        return ScanPlan(True, start, f"last full scan older than {every}")
    since = from_iso(cursor) - config.lookback
    if start is not None and start > since:
        since = start
    return ScanPlan(False, since, f"incremental from {to_iso(since)}")


