"""Every run checks itself: does the warehouse hold what the API counts?

At the end of its read, each resource compares the rows its table will hold once this run is
loaded (flagged deletions aside) plus the records set aside for quarantine, with the API's own
count: ``meta.total`` of the run's last read of page 1, which every run reads anyway (no extra
request). The difference, and what explains it, makes the verdict recorded in ``rackwave_runs``:

* ``exact``: no difference (after the count offset this account was learned to have, below);
* ``churn``: a difference no larger than the changes the run saw while it read (``meta.total``
  moving between pages, records found above the first page 1 when it was read again);
* ``short``: the warehouse holds fewer rows than the API counts;
* ``over``: it holds more.

What follows from it:

* An **incremental** run found short did not read everything (a record it should have seen): it
  repairs itself at once, with a full scan of that resource in the same run
  (``resources.read_records``). Over is expected between full scans: records deleted since the
  last one stay until the next one finds them gone (the documented exception).
* A **full scan** reads everything, so a difference it cannot explain is either the API's count
  being steadily off (some servers count before they list) or a read that missed something. A
  full scan whose totals never moved, whose page 1 did not change and that reached the end of the
  list by the server's own page geometry has proven its coverage: the difference is the count's,
  learned as ``count_offset`` (in the state; ``rackwave check`` shows it) and allowed for from then
  on, so it does not cost a full scan every run. Otherwise the run raises :class:`CountMismatch`
  (exit 75 from the command) and loads nothing: never exit 0 over an unexplained shortfall.
* Settings that load a subset reconcile against that subset's count: ``lead_status`` and
  ``lead_search`` are filters the API counts itself; ``start_date`` is not, so a full scan takes
  the count of the records older than it from where the list crosses it (``CountFacts.boundary``)
  and keeps it as the offset for the incremental runs that follow.

How many rows the table will hold is known without a warehouse query on a full scan (every id it
kept, the records a lookup found, the rows no lookup could settle). An incremental run that kept
records asks the warehouse, in one query (``LoadedTable.census``), how many rows it holds and
which ids it holds in the window the run read (its other ids are new); one that kept nothing
changes nothing, and takes the rows the last run left (committed with its load): a scheduled
run on a quiet account costs no request and no query.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, MutableMapping, Optional, Tuple

import numpy as np

from rackwave_source.read.cursor import ScanPlan
from rackwave_source.timestamps import from_micros, to_iso
from rackwave_source.warehouse.deletions import DeletionCounts
from rackwave_source.exceptions import CountMismatch
from rackwave_source.read.scan import Scan
from rackwave_source.warehouse.loaded import LoadedTable

EXACT, CHURN, SHORT, OVER = "exact", "churn", "short", "over"
#: state: how many more records the API counts than it lists (negative: fewer), as learned
STATE_COUNT_OFFSET = "count_offset"
logger = logging.getLogger("rackwave_source")


@dataclass(frozen=True)
class Tally:
    """One run's reconciliation of one resource (the ``rackwave_runs`` columns)."""

    api_total: int  # meta.total of the run's last read of page 1
    count_offset: int  # records the API counts and does not list (learned, or below start_date)
    rows_held: int  # rows of the table once this run is loaded, flagged deletions aside
    quarantine_held: int  # records set aside for quarantine that the API still lists
    churn: int  # changes the run saw while it read: what may explain a difference
    verdict: str
    explained: int = 0  # of an over, rows no lookup could settle (kept, as documented)

    @property
    def difference(self) -> int:
        """Rows held (and quarantined) minus the records the API counts in this view."""
        return self.rows_held + self.quarantine_held - (self.api_total - self.count_offset)


def held_after_full_scan(scan: Scan, deletions: DeletionCounts) -> int:
    """Every distinct id the scan kept, plus the unseen rows it keeps (found by a lookup, or
    undecided); rows confirmed deleted are removed or flagged."""
    distinct = int(np.unique(np.frombuffer(scan.seen, dtype=np.int64)).size)
    return distinct + deletions.still_there + deletions.undecided


def held_after_incremental(scan: Scan, previous_held: Optional[int]) -> Tuple[int, int]:
    """The rows the table holds now plus the ids this run kept that it does not hold yet, and
    how many those new ones are. A run that kept nothing changes nothing: the table holds what
    the last run left (``previous_held``, committed with its load), and no query is needed."""
    if not scan.kept_ids and previous_held is not None:
        return previous_held, 0
    loaded = LoadedTable.of(scan.endpoint.resource, checked=False)  # the census tells
    since = scan.plan.since_us
    if loaded is None or since is None:
        return len(set(scan.kept_ids)), len(set(scan.kept_ids))
    rows, window = loaded.census(to_iso(from_micros(since)))
    new = len(set(scan.kept_ids) - window)
    return rows + new, new


def judge(scan: Scan, held: int, quarantined: int, state: MutableMapping[str, Any],
          undecided: int = 0) -> Tally:
    """The run's verdict; a full scan also learns (or keeps) the count offset in ``state``."""
    facts = scan.facts
    plan = scan.plan
    counted = facts.page1_total or 0
    offset = _offset(plan, scan, state)
    churn = facts.total_moves + scan.counts.created_during
    tally = Tally(counted, offset, held, quarantined, churn, EXACT)
    diff = tally.difference
    if diff == 0:
        verdict = EXACT
    elif abs(diff) <= churn:
        verdict = CHURN
    elif not plan.full_scan:
        verdict = SHORT if diff < 0 else OVER
    elif 0 < diff <= churn + undecided:
        verdict = OVER  # rows no lookup could settle: kept, and said (``check``)
        tally = _with(tally, OVER, explained=undecided)
    elif facts.steady and (facts.end_confirmed or facts.boundary is not None):
        offset -= diff  # the list was read whole and still: the count is what is off
        _learned(scan.endpoint.resource, tally, offset)
        tally = _with(tally, EXACT, count_offset=offset)
        verdict = EXACT
    else:
        verdict = SHORT if diff < 0 else OVER
    if plan.full_scan:
        state[STATE_COUNT_OFFSET] = tally.count_offset
    return _with(tally, verdict)


def check(resource: str, tally: Tally, full_scan: bool) -> None:
    """Raises :class:`CountMismatch` for a full scan whose difference nothing explains; says
    what an incremental run's verdict means (a short one was repaired before this)."""
    if tally.verdict in (EXACT, CHURN):
        return
    if full_scan and not tally.explained:
        logger.warning("%s: the warehouse would hold %d rows, the API counts %d (offset %d): "
                       "nothing of this run is loaded", resource,
                       tally.rows_held + tally.quarantine_held, tally.api_total,
                       tally.count_offset)
        raise CountMismatch(resource, tally.rows_held + tally.quarantine_held, tally.api_total,
                            tally.count_offset)
    if tally.verdict == OVER:
        logger.info("%s: %d rows more than the API counts: records deleted since the last full "
                    "scan (or no lookup could settle), removed when a full scan confirms them",
                    resource, tally.difference)


def _offset(plan: ScanPlan, scan: Scan, state: MutableMapping[str, Any]) -> int:
    """Records the API counts that this view does not list: below ``start_date`` (measured by a
    full scan where the list crosses it), plus a steady count error learned before."""
    boundary = scan.facts.boundary
    if plan.full_scan and plan.since is not None and boundary is not None:
        _, position, total = boundary
        return total - position
    return int(state.get(STATE_COUNT_OFFSET) or 0)


def _learned(resource: str, tally: Tally, offset: int) -> None:
    if offset != tally.count_offset:
        logger.warning("%s: the API counts %d records and lists %d, on a full scan that read the "
                       "whole list while nothing changed: its count is off by %d, which later "
                       "runs allow for (rackwave check shows it)", resource, tally.api_total,
                       tally.api_total - offset, offset)


def _with(tally: Tally, verdict: str, **changes: Any) -> Tally:
    values = {**tally.__dict__, **changes, "verdict": verdict}
    return Tally(**values)
