"""One run's read of one resource: a main pass, then the re-reads that make it exact.

* **Main pass.** An incremental run reads page after page from the top until it passes its
  cursor bound. A full scan reads page 1, then every other page on many workers (``paging.py``).
* **Top.** After a full scan, page 1 is read again (and on, if more than a page was created):
  records created while the scan paged are loaded now rather than at the next run, and an
  unchanged page 1 is half of the proof that the scan was quiet (``coverage.py``).
* **Holes.** Where the coverage finds a ``created_at`` range no page vouches for, it is read again
  (``rereads.py``), until none is left or the account keeps changing faster than a few walks can
  follow (:class:`ScanIncomplete`: nothing is loaded, the next run tries again).

On a quiet account that costs one request more than the pages themselves (two when the last page
is exactly full); under churn, a walk of a page or two per hole.

Progress (``progress.py``) is reported from here, once per page, by the thread that hands pages
to dlt: the phases above, and the deletion lookups a full scan is followed by.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

import pyarrow as pa

from rackwave_source import settings as S
from rackwave_source.read.coverage import (
    Coverage,
    Observation,
    chained_joins,
    pairs_proven_by_counts,
)
from rackwave_source.read.cursor import ScanPlan
from rackwave_source.api.decode import Page
from rackwave_source.api.endpoint import ListEndpoint
from rackwave_source.exceptions import ScanIncomplete
from rackwave_source.read.paging import concurrent_pass, sequential_pass
from rackwave_source.read.progress import (
    PHASE_DELETIONS,
    PHASE_HOLES,
    PHASE_TOP,
    Progress,
    observer,
)
from rackwave_source.read.rereads import probe_top, walk_gap

#: ``Date`` has whole seconds: a record created in the second the server answered in is not ahead
_CLOCK_SLACK_US = 1_000_000

#: An id's 64-bit hash (stable within one process, which is all a run needs): a scan of a
#: million records remembers what it saw in eight bytes a record.
id_hash = hash


@dataclass
class ScanCounts:
    """What the read cost and found (the run record reports them)."""

    pages: int = 0  # pages of the main pass
    rereads: int = 0  # pages read again: the top after a full scan, and holes
    rows: int = 0  # records kept
    repeats: int = 0  # records a page showed again because pages shifted
    recovered: int = 0  # records found by re-reading holes
    holes: int = 0  # holes found after the main pass (each was read again)
    quarantined: int = 0
    created_during: int = 0  # records found above the scan's first page 1 when read again

    def absorb(self, other: "ScanCounts") -> None:
        """Adds what an earlier read of the same run cost and found (a repaired incremental)."""
        for name, value in other.__dict__.items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class CountFacts:
    """What a scan's pages said about the size of the list (``warehouse/verdicts.py`` weighs it)."""

    page1_total: Optional[int] = None  # meta.total of the last page 1 read
    page1_at: float = -1.0
    totals: List[Tuple[float, int]] = field(default_factory=list)  # (answered at, meta.total)
    end_confirmed: bool = False  # a page short by the server's size, and its meta's last
    #: (page, list position, meta.total) of the first record older than ``since`` (start_date)
    boundary: Optional[Tuple[int, int, int]] = None
    steady: bool = False  # a full scan whose totals never moved and whose page 1 did not change

    @property
    def total_moves(self) -> int:
        """How far ``meta.total`` moved while the run read, step by step in answer order: a
        lower bound of the creations and deletions it overlapped."""
        ordered = [total for _, total in sorted(self.totals)]
        return sum(abs(b - a) for a, b in zip(ordered, ordered[1:]))


@dataclass
class Kept:
    """One page's contribution: the records it adds, and those set aside for quarantine."""

    records: pa.Table
    rejected: List[Dict[str, Any]] = field(default_factory=list)


class Scan:
    """Reads one resource for one run; iterate :meth:`pages`, then read the outcome."""

    def __init__(self, endpoint: ListEndpoint, plan: ScanPlan, concurrency: int,
                 progress: Optional[Progress] = None) -> None:
        self.endpoint = endpoint
        self.plan = plan
        self.concurrency = concurrency
        self.coverage = Coverage(endpoint.per_page)
        self.counts = ScanCounts()
        #: ids kept by a full scan, as 64-bit hashes (which warehouse rows the API still has)
        self.seen: "array[int]" = array("q")
        #: a full scan during which nothing was created or deleted (proven, see coverage.py)
        self.quiet = False
        self.newest_us: Optional[int] = None
        #: ids kept with ``created_at == newest_us`` (None: more than ``MAX_CURSOR_IDS``)
        self.newest_ids: Optional[Set[str]] = set()
        self.top_us: Optional[int] = None
        #: the server's clock when it answered the run's first page (``Page.server_us``): the
        #: cursor never passes it, so a record dated in the future hides nothing created after it
        self.clock_us: Optional[int] = None
        #: ids kept with a ``created_at`` at or after ``clock_us``, with it (None: too many)
        self.ahead: Optional[Dict[str, int]] = {}
        #: records listed with a date after the server's clock on the page that listed them
        self.future_ids: Set[str] = set()
        self.future_newest: Optional[int] = None
        self._since_us = plan.since_us
        #: ids an incremental run already loaded, by ``created_at``: at the cursor, and above it
        #: (``cursor.py``)
        self._loaded: Dict[int, FrozenSet[str]] = {}
        self._main: List[Observation] = []
        self._first: Optional[Page] = None
        self._quarantined: Set[str] = set()
        self._main_repeats = 0
        self._main_listed = 0
        self._latest_at = 0.0  # the total of the page answered last
        self._latest_total = 0
        self._progress = observer(progress)
        #: what the run's reconciliation needs (``warehouse/verdicts.py``), see :meth:`_observe`
        self.facts = CountFacts()
        #: an incremental run's ids kept (which of them the warehouse lacks: its new rows)
        self.kept_ids: List[str] = []
        #: ids already yielded by this run's incremental read, which a repairing full scan
        #: counts as seen but does not yield twice (staged rows must be unique)
        self._yielded: FrozenSet[str] = frozenset()

    def after(self, earlier: "Scan") -> None:
        """This full scan repairs the incremental read ``earlier`` in the same run: the records
        it kept count as seen and are not yielded again."""
        self._yielded = frozenset(earlier.kept_ids)
        self.seen.extend(map(id_hash, earlier.kept_ids))

    def skip_loaded(self, loaded: Mapping[int, Iterable[str]]) -> None:
        """Records with these ``created_at`` (microseconds) and ids were loaded by an earlier run:
        not kept again."""
        self._loaded = {us: frozenset(ids) for us, ids in loaded.items()}

    @property
    def cursor_us(self) -> Optional[int]:
        """The newest ``created_at`` the cursor may advance to: the newest record kept, but never
        past the top of page 1 as last read (newer records were not looked for), nor past the
        server's clock at the run's start (a record dated in the future would otherwise hide
        every record created after this run, until the clock caught up)."""
        bounds = [b for b in (self.newest_us, self.top_us, self.clock_us) if b is not None]
        return None if self.newest_us is None else min(bounds)

    def pages(self) -> Iterator[Kept]:
        """Every page's new records, the main pass first, then the re-reads."""
        resource = self.endpoint.resource
        self._progress.started(resource, self.plan)
        yield from self._main_pass()
        if self.plan.full_scan:
            self._progress.phase(resource, PHASE_TOP)
            yield from self._top()
        yield from self._holes()
        if self.plan.full_scan:  # the caller goes on to the rows the scan did not see
            self._progress.phase(resource, PHASE_DELETIONS)

    def finished(self) -> None:
        """Tells the progress observer the resource is done: called by the caller once it has
        also settled the rows the scan did not see (``deletions.py``), not when a run fails."""
        self._progress.finished(self.endpoint.resource)

    # -- the passes ------------------------------------------------------------------------------
    def _main_pass(self) -> Iterator[Kept]:
        since = self._since_us
        if not self.plan.full_scan or self.concurrency <= 1:
            for page in sequential_pass(self.endpoint):
                yield self._take(page, main=True)
                if since is not None and page.timed and page.created_us[-1] < since:  # type: ignore[operator]
                    return  # reached past the cursor bound: the rest is older
            return
        first = self.endpoint.page(1)
        yield self._take(first, main=True)
        for page in concurrent_pass(self.endpoint, first, self.concurrency, since):
            yield self._take(page, main=True)

    def _top(self) -> Iterator[Kept]:
        first = self._first
        assert first is not None
        if len(self._main) == 1:  # the whole list on one page, read at one instant
            self.quiet = self.facts.steady = True
            return
        walk: List[Page] = []
        for page in probe_top(self.endpoint, first):
            walk.append(page)
            yield self._take(page, reread=True, top=True)
        if self._walk_joined(walk):
            self.top_us = walk[0].created_us[0] if walk[0].timed else self.top_us
        self.quiet = self._proven_quiet(walk[0])
        self.facts.steady = self._steady(walk[0])
        if self.quiet:
            for joined in chained_joins(self._main_neighbours()):
                self.coverage.join(joined)

    def _holes(self) -> Iterator[Kept]:
        for _ in range(S.MAX_REREAD_ROUNDS):
            holes = self.coverage.gaps(self._since_us)
            if not holes:
                return
            if not self.counts.holes:
                self._progress.phase(self.endpoint.resource, PHASE_HOLES)
            self.counts.holes = self.counts.holes or len(holes)
            for hole in holes:  # each walk starts from the latest total: walks move pages too
                for page in walk_gap(self.endpoint, hole, self._latest_total):
                    yield self._take(page, reread=True, recovering=True)
        holes = self.coverage.gaps(self._since_us)
        if holes:
            raise ScanIncomplete(self.endpoint.resource, len(holes), S.MAX_REREAD_ROUNDS)

    # -- one page --------------------------------------------------------------------------------
    def _take(self, page: Page, main: bool = False, reread: bool = False,
              recovering: bool = False, top: bool = False) -> Kept:
        """One page: what it proves (``coverage.py``), what it adds (new records at or after
        ``since``, not loaded before), and what the run remembers of it."""
        fresh = self.coverage.add(page)
        self._count(page, fresh, main, reread, top)
        self._observe(page, main)
        keep = self._keep(page, fresh)
        records = page.records
        kept = sum(keep)
        if kept < len(keep):
            records = records.filter(pa.array(keep, pa.bool_()))
        if kept:
            ids = self._remember(page, keep, kept)
            if self._yielded:
                records, kept = self._unyielded(records, ids)
        if top:
            self.counts.created_during += kept
        self.counts.rows += kept
        self._progress.page(self.endpoint.resource, kept, page.total, page.last_page)
        if recovering:
            self.counts.recovered += kept
        return Kept(records, self._new_rejects(page.rejected))

    def _count(self, page: Page, fresh: Sequence[bool], main: bool, reread: bool,
               top: bool) -> None:
        """The page's place in the run: the main pass's pages, page 1 as first read, repeats."""
        if page.received_at >= self._latest_at:
            self._latest_at, self._latest_total = page.received_at, page.total
        repeats = len(fresh) - sum(fresh)
        if not top:  # page 1 read again repeats what it still holds by design
            self.counts.repeats += repeats
        if reread:
            self.counts.rereads += 1
        if not main:
            return
        self.counts.pages += 1
        self._main.append(self.coverage.observations[-1])
        self._main_repeats += repeats
        self._main_listed += page.size
        if self._first is None:
            self._first = page
            self.top_us = page.created_us[0] if page.timed else None
            self.clock_us = page.server_us or None

    def _keep(self, page: Page, fresh: List[bool]) -> List[bool]:
        """Per record: new to this run, at or after ``since``, and not loaded by an earlier run
        at the cursor or above it."""
        since, ts = self._since_us, page.created_us
        keep = fresh
        if since is not None and ts and ts[-1] < since:  # type: ignore[operator]
            keep = [f and t >= since for f, t in zip(fresh, ts)]  # type: ignore[operator]
        loaded = self._loaded
        if loaded and any(t in loaded for t in ts):
            keep = [k and not (t in loaded and i in loaded[t])
                    for k, t, i in zip(keep, ts, page.ids)]
        return keep

    def _remember(self, page: Page, keep: Sequence[bool], kept: int) -> Sequence[Optional[str]]:
        """What the run keeps of the records it keeps: the newest (the next cursor), those at or
        after the server's clock, and their ids (a full scan's seen set, an incremental run's
        list). Returns the ids kept."""
        ts = page.created_us
        newest = ts[0] if keep[0] else max(t for t, k in zip(ts, keep) if k)  # type: ignore[type-var]
        if self.newest_us is None or newest > self.newest_us:  # type: ignore[operator]
            self.newest_us, self.newest_ids = newest, set()
        if newest == self.newest_us:
            self._note_newest(ts, keep, page.ids)
        self._note_ahead(page, keep)
        ids = page.ids if kept == len(keep) else [i for i, k in zip(page.ids, keep) if k]
        if self.plan.full_scan:
            self.seen.extend(map(id_hash, ids))
        else:
            self.kept_ids.extend(ids)  # type: ignore[arg-type]
        return ids

    def _unyielded(self, records: pa.Table, ids: Sequence[Optional[str]]) -> Tuple[pa.Table, int]:
        """The kept records this run did not yield yet (see :meth:`after`)."""
        fresh = [i not in self._yielded for i in ids]
        if all(fresh):
            return records, len(fresh)
        return records.filter(pa.array(fresh, pa.bool_())), sum(fresh)

    def _observe(self, page: Page, main: bool) -> None:
        """Notes what the page tells the reconciliation: the count of its last page 1 read, the
        end of the list confirmed by the server's own geometry, and where ``since`` falls."""
        facts = self.facts
        if page.number == 1 and page.received_at >= facts.page1_at:
            facts.page1_at, facts.page1_total = page.received_at, page.total
        facts.totals.append((page.received_at, page.total))
        self._note_future(page)
        if not main:
            return
        facts.end_confirmed = facts.end_confirmed or page.ends_list
        since, ts = self._since_us, page.created_us
        if since is None or not ts or ts[-1] >= since:  # type: ignore[operator]
            return
        if facts.boundary is None or page.number < facts.boundary[0]:
            index = next(i for i, t in enumerate(ts) if t < since)  # type: ignore[operator]
            position = (page.number - 1) * page.per_page + index
            facts.boundary = (page.number, position, page.total)

    def _note_newest(self, ts: Sequence[Any], keep: Sequence[bool],
                     ids: Sequence[Optional[str]]) -> None:
        """Remembers the ids kept at the newest ``created_at`` (the next cursor's)."""
        if self.newest_ids is None:
            return
        self.newest_ids.update(i for t, k, i in zip(ts, keep, ids)
                               if k and i is not None and t == self.newest_us)
        if len(self.newest_ids) > S.MAX_CURSOR_IDS:
            self.newest_ids = None

    @property
    def future(self) -> int:
        """Records listed with a ``created_at`` after the server's clock when it listed them."""
        return len(self.future_ids)

    def _note_future(self, page: Page) -> None:
        ts, limit = page.created_us, page.server_us + _CLOCK_SLACK_US
        if not page.server_us or not ts or ts[0] <= limit:  # type: ignore[operator]
            return
        self.future_ids.update(i for t, i in zip(ts, page.ids) if t > limit)  # type: ignore[misc, operator]
        self.future_newest = max(self.future_newest or 0, ts[0])  # type: ignore[type-var]

    def _note_ahead(self, page: Page, keep: Sequence[bool]) -> None:
        """Remembers the ids kept at or after the run's clock (loaded above the cursor: the next
        run skips them)."""
        ts = page.created_us
        clock = self.clock_us
        if clock is None or self.ahead is None or ts[0] < clock:  # type: ignore[operator]
            return
        self.ahead.update((i, t) for t, k, i in zip(ts, keep, page.ids)  # type: ignore[misc]
                          if k and t >= clock)  # type: ignore[operator]
        if len(self.ahead) > S.MAX_CURSOR_IDS:
            self.ahead = None

    def _new_rejects(self, rejected: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Quarantine rows not yet set aside by this run (a page read again repeats them)."""
        out = []
        for row in rejected:
            key = row["record"]
            if key not in self._quarantined:
                self._quarantined.add(key)
                out.append(row)
        self.counts.quarantined += len(out)
        return out

    # -- what the pages prove --------------------------------------------------------------------
    def _main_neighbours(self) -> List[Tuple[Observation, Observation]]:
        by_number = {obs.number: obs for obs in self._main}
        return [(obs, by_number[obs.number + 1]) for obs in self._main
                if obs.number + 1 in by_number]

    def _walk_joined(self, walk: List[Page]) -> bool:
        """Whether the re-read of the top has no hole of its own (its pages joined in order)."""
        observations = self.coverage.observations[-len(walk):]
        proven = {(u.number, l.number) for u, l in pairs_proven_by_counts(observations)}
        return all((n, n + 1) in proven for n in range(1, len(walk)))

    def _proven_quiet(self, again: Page) -> bool:
        """Nothing was created or deleted while the scan paged (coverage.py explains why these
        facts prove it): page 1 is unchanged, every page had the same total, no page overlapped
        its neighbour, and the pages listed at least as many records as the total says (a page
        cut short by the API would otherwise pass for the end of the list)."""
        first = self._first
        return first is not None and self._main_listed >= first.total and self._steady(again)

    def _steady(self, again: Page) -> bool:
        """Page 1 unchanged, the same total on every page, no page overlapping its neighbour:
        whatever the total says, it said the same thing throughout."""
        first = self._first
        if first is None or again.ids != first.ids or again.total != first.total:
            return False
        if any(obs.total != first.total for obs in self._main):
            return False
        if self._main_repeats:
            return False
        return all(not (lower.size and upper.size and lower.hi > upper.lo)
                   for upper, lower in self._main_neighbours())
