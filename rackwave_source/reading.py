"""One run's read of one resource, from its pages to its verdict, and the repair a short read
gets in the same run.

``resources.read_records`` wraps this in what dlt needs (hints, batches, the run's row); here is
the order of the work: scan the pages (``scan.py``), after a full scan settle the rows it did not
see (``deletions.py``), weigh what the table will hold against the API's count
(``verdicts.py``), and when an incremental read comes out short, read the resource again as a
full scan before anything is loaded.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Optional

import pyarrow as pa

from rackwave_source.read.cursor import ScanPlan
from rackwave_source.warehouse.deletions import DeletionCounts, Reconciliation, reconcile
from rackwave_source.api.endpoint import ListEndpoint
from rackwave_source.warehouse.versions import Versions
from rackwave_source.options import ValidatedOptions
from rackwave_source.read.progress import Progress
from rackwave_source.warehouse.quarantine_table import QuarantineLedger
from rackwave_source.warehouse.runs_table import NewRows
from rackwave_source.read.scan import Scan
from rackwave_source.scan_run import ScanRun
from rackwave_source.settings import ResourceSpec
from rackwave_source.warehouse.verdicts import (
    SHORT,
    Tally,
    held_after_full_scan,
    held_after_incremental,
    judge,
)

logger = logging.getLogger("rackwave_source")
#: turns a page's records into the items dlt receives (``resources._Batches.add``)
Sink = Callable[[pa.Table], Iterator[Any]]


class Reading:
    """What one run read of one resource, and what it makes of it."""

    def __init__(self, spec: ResourceSpec, endpoint: ListEndpoint, run: ScanRun,
                 options: ValidatedOptions, versions: Versions, how: Reconciliation,
                 progress: Optional[Progress] = None) -> None:
        self.spec = spec
        self.endpoint = endpoint
        self.run = run
        self.options = options
        self.versions = versions
        self.how = how
        self.progress = progress
        self.fresh = NewRows(run.previous_cursor, run.previous_ahead)
        self.quarantine = QuarantineLedger(spec.name, run.state, run.plan.full_scan)
        self.deletions = DeletionCounts()
        self.scan: Optional[Scan] = None
        self.tally: Optional[Tally] = None
        #: an incremental run's new rows, as the warehouse tells (else counted by created_at)
        self.rows_new: Optional[int] = None

    def read(self, sink: Sink) -> Iterator[Any]:
        """The run's read, repaired by a full scan when an incremental read comes out short."""
        yield from self._pass(self.run.plan, sink)
        tally, incremental = self.tally, self.scan
        assert tally is not None and incremental is not None
        if tally.verdict != SHORT or self.run.plan.full_scan:
            return
        reason = (f"repair: the incremental read left the table {-tally.difference} rows short "
                  f"of the API's count ({tally.api_total})")
        logger.warning("%s: %s; reading it whole now (a full scan)", self.spec.name, reason)
        plan = ScanPlan(True, self.options.start_date, reason)
        self.run.repair(plan)
        self.quarantine.now_full_scan()
        yield from self.versions.now_full_scan()
        self.rows_new = None
        yield from self._pass(plan, sink, earlier=incremental)
        assert self.scan is not None
        self.scan.counts.absorb(incremental.counts)

    def _pass(self, plan: ScanPlan, sink: Sink, earlier: Optional[Scan] = None) -> Iterator[Any]:
        scan = Scan(self.endpoint, plan, self.options.concurrency, self.progress)
        loaded = self.run.loaded_at_cursor() if earlier is None else None
        if loaded is not None:
            scan.skip_loaded(loaded)  # loaded by an earlier run: nothing new loads nothing
        if earlier is not None:
            scan.after(earlier)
        for kept in scan.pages():
            if kept.rejected:
                yield self.quarantine.item(kept.rejected, self.run.started_at)
            self.fresh.add(kept.records)
            yield from sink(kept.records)
            yield from self.versions.add(kept.records)  # <resource>_history (warehouse/versions.py)
        deletions = DeletionCounts()
        if plan.full_scan:
            for table in reconcile(self.endpoint, scan, self.spec.lookup_fields, self.how,
                                   deletions):
                yield from sink(table)
                yield from self.versions.add_reconciled(table)
            yield from self.versions.add_undecided(scan, deletions)
        scan.finished()  # deletion lookups included; not reached when the run fails
        self.scan, self.deletions = scan, deletions
        if plan.full_scan:
            held = held_after_full_scan(scan, deletions)
        else:
            held, self.rows_new = held_after_incremental(scan, self.run.previous_held)
        self.tally = judge(scan, held, self.quarantine.held, self.run.state,
                           deletions.undecided)
