"""One run of one resource as the state remembers it: its plan, its counters, one typed record.

dlt keeps the state in the destination with the data it belongs to, so what is written here at
the end of a read is committed only with that load: a run that fails never advances the cursor.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any, Dict, List, MutableMapping, Optional

from rackwave_source import settings as S
from rackwave_source.read.cursor import (
    STATE_AHEAD_IDS,
    STATE_CURSOR_IDS,
    STATE_CURSOR,
    STATE_LAST_FULL_SCAN,
    ScanPlan,
    plan_scan,
)
from rackwave_source.timestamps import micros, from_iso, from_micros, to_iso, utc_now
from rackwave_source.warehouse.deletions import DeletionCounts
from rackwave_source.options import ValidatedOptions
from rackwave_source.read.scan_requests import RequestedScans
from rackwave_source.read.scan import Scan
from rackwave_source.warehouse.verdicts import Tally
from rackwave_source.dlt_internals import active_pipeline
from rackwave_source.warehouse.runs_table import RunRecord

STATE_LAST_RUN = "last_run"
logger = logging.getLogger("rackwave_source")


class ScanRun:
    """The run of one resource: decides what to read, then records what happened."""

    def __init__(self, state: MutableMapping[str, Any], options: ValidatedOptions,
                 resource: str) -> None:
        self.state = state
        self.resource = resource
        self.started_at = utc_now()
        self.lookback = options.lookback
        #: nothing of this resource was ever loaded by a finished run (no cursor in the state)
        self.first_run = state.get(STATE_CURSOR) is None
        #: the cursor this run starts from: records created after it are new (warehouse/runs_table.py)
        self.previous_cursor: Optional[str] = state.get(STATE_CURSOR)
        #: the rows the last run left in the table (``verdicts.py``), None when not recorded
        held = (state.get(STATE_LAST_RUN) or {}).get("rows_held")
        self.previous_held: Optional[int] = held if isinstance(held, int) else None
        #: ids an earlier run loaded above that cursor (``read/cursor.py``): not new when read again
        self.previous_ahead: List[str] = list(state.get(STATE_AHEAD_IDS) or {})
        pipeline = active_pipeline()
        self.requests = RequestedScans.of(pipeline) if pipeline is not None else None
        self.plan: ScanPlan = plan_scan(state, options, self.started_at,
                                        owed=self._owed(options.force_full_scan))
        if self.plan.full_scan and self.plan.reason not in ("first run", "full scan requested"):
            logger.warning("%s: this run is a full scan: %s", resource, self.plan.reason)

    def repair(self, plan: ScanPlan) -> None:
        """The run goes on as a full scan (``reading.py``: an incremental read came out short)."""
        self.plan = plan

    def loaded_at_cursor(self) -> Optional[Dict[int, List[str]]]:
        """For an incremental run, the ids already loaded at the cursor and above it, by
        ``created_at`` (``read/cursor.py``); a full scan keeps everything it reads (it must see every
        id)."""
        cursor = self.state.get(STATE_CURSOR)
        if self.plan.full_scan or self.lookback or cursor is None:
            return None  # a lookback asks for the window, the cursor's records too, again
        loaded: Dict[int, List[str]] = {}
        if self.state.get(STATE_CURSOR_IDS):
            loaded[micros(from_iso(cursor))] = list(self.state[STATE_CURSOR_IDS])
        for record_id, created in (self.state.get(STATE_AHEAD_IDS) or {}).items():
            loaded.setdefault(micros(from_iso(created)), []).append(record_id)
        return loaded or None

    def _advance_cursor(self, read: Scan, previous: Optional[str]) -> None:
        """Moves the cursor to the newest record read (never back), with the ids loaded at it;
        at the same cursor, the ids loaded now join those loaded before."""
        if read.cursor_us is None:
            return
        newest = from_micros(read.cursor_us)
        ids = _ids_at_cursor(read)
        if previous is None or newest > from_iso(previous):
            self.state[STATE_CURSOR] = to_iso(newest)
            self._set_cursor_ids(ids)
        elif newest == from_iso(previous) and ids is not None:
            # listing fewer than were loaded is safe: an id not listed is merged again
            self._set_cursor_ids(sorted(set(self.state.get(STATE_CURSOR_IDS) or ()) | set(ids)))
        self._set_ahead(read, micros(from_iso(self.state[STATE_CURSOR])))

    def _set_ahead(self, read: Scan, cursor_us: int) -> None:
        """Remembers the records loaded above the cursor (``read/cursor.py``), with those remembered
        before that are still above it; forgets them all when there are too many to list (they
        are merged again: never lost, never doubled)."""
        if read.ahead is None:
            self.state.pop(STATE_AHEAD_IDS, None)
            return
        ahead = {i: c for i, c in (self.state.get(STATE_AHEAD_IDS) or {}).items()
                 if micros(from_iso(c)) > cursor_us}
        ahead.update((i, to_iso(from_micros(t))) for i, t in read.ahead.items() if t > cursor_us)
        if ahead and len(ahead) <= S.MAX_CURSOR_IDS:
            self.state[STATE_AHEAD_IDS] = dict(sorted(ahead.items()))
        else:
            self.state.pop(STATE_AHEAD_IDS, None)

    def _set_cursor_ids(self, ids: Optional[List[str]]) -> None:
        if ids is None or len(ids) > S.MAX_CURSOR_IDS:
            self.state.pop(STATE_CURSOR_IDS, None)
        else:
            self.state[STATE_CURSOR_IDS] = ids

    def _owed(self, asked_now: bool) -> Optional[str]:
        """When a full scan asked for earlier is still owed (see ``read/scan_requests.py``)."""
        if self.requests is None:
            return None
        if asked_now:
            self.requests.record(self.resource, to_iso(self.started_at))
            return None
        asked = self.requests.pending(self.resource)
        last_full = self.state.get(STATE_LAST_FULL_SCAN)
        if asked is not None and last_full is not None and from_iso(last_full) >= from_iso(asked):
            self.requests.settle(self.resource)  # a full scan started since, and finished
            return None
        return asked

    def finish(self, read: Scan, deletions: DeletionCounts, http: Dict[str, int],
               flagged: int, rows_new: int, load_id: Optional[str], tally: Tally) -> RunRecord:
        """Advances the state after every page was read (a failed run never gets here)."""
        previous = self.state.get(STATE_CURSOR)
        scan = read.counts
        self._advance_cursor(read, previous)
        if read.future:
            logger.warning(
                "%s: %d record(s) are dated after the API's clock (the latest %s): they are "
                "loaded, and the cursor stays at the API's clock so that records created after "
                "them still load", self.resource, read.future,
                to_iso(from_micros(read.future_newest or 0)))
        if self.plan.full_scan:
            self.state[STATE_LAST_FULL_SCAN] = to_iso(self.started_at)
        record = RunRecord(
            started_at=to_iso(self.started_at), finished_at=to_iso(utc_now()),
            mode="full_scan" if self.plan.full_scan else "incremental", reason=self.plan.reason,
            previous_cursor=previous, cursor=self.state.get(STATE_CURSOR),
            pages=scan.pages, rereads=scan.rereads,
            requests=http.get("requests", 0), rate_limited=http.get("rate_limited", 0),
            rows=scan.rows + deletions.still_there, rows_repeated=scan.repeats,
            rows_recovered=scan.recovered, holes=scan.holes, quiet=read.quiet,
            deletion_candidates=deletions.candidates,
            deletions_confirmed=deletions.confirmed, still_there=deletions.still_there,
            undecided=deletions.undecided, lookups=deletions.lookups, flagged_deleted=flagged,
            quarantined=scan.quarantined, retries=http.get("retries", 0),
            token_renewals=http.get("token_renewals", 0), rows_new=rows_new,
            api_total=tally.api_total, load_id=load_id, rows_future=read.future,
            rows_held=tally.rows_held, quarantine_held=tally.quarantine_held,
            count_offset=tally.count_offset, churn=tally.churn, verdict=tally.verdict,
        )
        self.state[STATE_LAST_RUN] = asdict(record)
        return record


def _ids_at_cursor(read: Scan) -> Optional[List[str]]:
    """The ids loaded at the scan's cursor, when the cursor is the newest record kept, or the
    server's clock (records at and after it are remembered), and they are not too many to list;
    None when the cursor stopped short of them at the top of page 1."""
    if read.cursor_us == read.newest_us and read.newest_ids is not None:
        return sorted(read.newest_ids)
    if read.cursor_us == read.clock_us and read.ahead is not None:
        return sorted(i for i, t in read.ahead.items() if t == read.cursor_us)
    return None
