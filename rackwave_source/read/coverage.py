"""What a scan has seen, as key ranges: which records are repeats, and where some may be missing.

The API lists records newest first (``created_at`` descending) by page number, so a page is a
window of positions in a list that changes while we page: a record created at the top shifts
every later record down one position, a deletion shifts every record below it up one. A page
still tells exactly one thing for sure: at the moment it was served, every record whose
``created_at`` lies strictly between its last and its first record was on it (a page 1 also holds
everything above; a short page everything below). That is a *certified range*. Records that exist
for the whole scan can only be missed where certified ranges leave a hole: this module finds the
holes, and re-reads (``rereads.py``) close them.

Ranges join in three ways:

* **They overlap** in ``created_at`` (or touch at one timestamp and share a record there: pages end
  inside a group of records created in the same second, whose order is assumed stable).
* **Counts prove it.** For pages ``p`` and ``p+1`` where ``p`` was answered before ``p+1`` was asked
  for, the records that slid from ``p+1``'s window into ``p``'s in between are at most the
  deletions above them minus the creations (creations happen at the top), and that is at most the
  drop of ``meta.total`` between the two answers. No drop, nothing missed, however much the
  account churned in between. Pages fetched concurrently or out of order have no such bound
  (creations balanced by deletions below them hide a loss from the total): they must overlap or
  be re-read.
* **A quiet scan proves it for every pair** (:meth:`Coverage.quiet`): page 1 unchanged at the end
  of the scan, the same total on every page and no page overlapping its neighbour mean nothing was
  created or deleted while the scan paged (a shift that hides a record needs an earlier shift the
  other way, which shows as an overlap).

Repeats (records a shifted page showed again) are recognised the same way: a record is a repeat
when an earlier page's listed range held its ``created_at`` strictly inside, or held it at an edge
together with its id. Memory is one range per page, not one entry per record.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Set, Tuple

from rackwave_source.api.decode import Page

NEG_INF = -(1 << 62)
POS_INF = 1 << 62


@dataclass(frozen=True)
class Observation:
    """One page as one moment's certified range of ``created_at`` (microseconds, UTC)."""

    number: int
    per_page: int
    lo: int  # NEG_INF: the page lists the end of the list
    hi: int  # POS_INF: the page lists the top of the list
    lo_ids: FrozenSet[Optional[str]]  # ids listed at ``lo`` (the page's last timestamp)
    hi_ids: FrozenSet[Optional[str]]  # ids listed at ``hi`` (the page's first timestamp)
    total: int
    size: int  # records with a ``created_at`` (what anchors the range)
    sent_at: float
    received_at: float
    ends: bool = False  # nothing follows the page (``Page.ends_list``)

    @property
    def blind(self) -> bool:
        """A page with no record to anchor a range (empty, or every record set aside for
        quarantine) that does not end the list: it certifies nothing by itself, but pages proven
        joined across it are (:func:`chained_joins`)."""
        return not self.size and not self.ends

    @classmethod
    def of(cls, page: Page, per_page: int) -> "Observation":
        per_page = page.per_page or per_page
        ts, ids = page.created_us, page.ids
        ends = page.ends_list
        if not ts:  # empty, or every record quarantined: nothing to anchor a range
            hi = POS_INF if page.number == 1 else NEG_INF
            return cls(page.number, per_page, NEG_INF, hi, frozenset(), frozenset(), page.total, 0,
                       page.sent_at, page.received_at, ends)
        first, last = int(ts[0]), int(ts[-1])  # type: ignore[arg-type]
        return cls(
            number=page.number, per_page=per_page,
            lo=NEG_INF if ends else last,
            hi=POS_INF if page.number == 1 else first,
            lo_ids=frozenset(i for t, i in zip(ts, ids) if t == last),
            hi_ids=frozenset(i for t, i in zip(ts, ids) if t == first),
            total=page.total, size=len(ts), sent_at=page.sent_at,
            received_at=page.received_at, ends=ends,
        )


@dataclass(frozen=True)
class Gap:
    """Records with ``lo <= created_at <= hi`` may be missing; ``above`` is the observation whose
    certified range ends at ``hi`` (where a re-read starts looking)."""

    lo: int
    hi: int
    above: Optional[Observation]


def pairs_proven_by_counts(observations: Iterable[Observation]) -> List[Tuple[Observation, Observation]]:
    """Pages ``p`` and ``p + 1`` (of one page size) where ``p`` was answered before ``p + 1`` was
    asked for and the total did not drop in between: nothing can have slid past both."""
    by_number: Dict[Tuple[int, int], List[Observation]] = {}
    for obs in observations:
        by_number.setdefault((obs.per_page, obs.number), []).append(obs)
    proven = []
    for (size, number), uppers in by_number.items():
        for upper in uppers:
            for lower in by_number.get((size, number + 1), ()):
                if upper.received_at <= lower.sent_at and lower.total >= upper.total:
                    proven.append((upper, lower))
    return proven


Ids = FrozenSet[Optional[str]]
#: A range some pages vouch for: ``(lo, hi, lo_ids, hi_ids)``, closed at both ends, where at
#: ``hi`` it holds the records from those of ``hi_ids`` on (in list order), at ``lo`` those up to
#: those of ``lo_ids``. A tie group (records sharing one ``created_at``) longer than a page is only
#: vouched for as far as such ids link it: a timestamp is never taken whole from one end of it.
Range = Tuple[int, int, Ids, Ids]


def join_range(upper: Observation, lower: Observation) -> Optional[Range]:
    """What two pages proven joined vouch for between them: from ``upper``'s last record down to
    ``lower``'s first (to the end of the list when ``lower`` ends it with nothing timed). None when
    ``lower`` is blind (its upper edge is unknown: see :func:`chained_joins`)."""
    if upper.size:
        hi, hi_ids = upper.lo, upper.lo_ids
    else:
        hi, hi_ids = upper.hi, frozenset()  # page 1 with nothing timed: the top
    if lower.size:
        return lower.hi, hi, lower.hi_ids, hi_ids
    if lower.ends:
        return NEG_INF, hi, frozenset(), hi_ids
    return None


def chained_joins(pairs: Sequence[Tuple[Observation, Observation]]) -> List[Range]:
    """The ranges that joined neighbours vouch for, each from an anchored page down to the next
    anchored one, across blind pages between them: pages ``p``, ``p+1`` (blind) and ``p+2``
    proven joined pair by pair hold every record between ``p``'s last and ``p+2``'s first (those on
    ``p+1`` have no ``created_at`` to miss). A chain that starts on a blind page anchors nothing,
    but page 1, whose upper edge is the top of the list."""
    below: Dict[int, List[Observation]] = {}
    for upper, lower in pairs:
        below.setdefault(id(upper), []).append(lower)
    out: List[Range] = []
    for upper, lower in pairs:
        if upper.blind and upper.number != 1:
            continue
        frontier, steps = [lower], 0
        while frontier and steps < _MAX_CHAIN:
            steps += 1
            page = frontier.pop()
            if page.blind:
                frontier.extend(below.get(id(page), ()))
                continue
            joined = join_range(upper, page)
            if joined is not None:
                out.append(joined)
    return out


#: Blind pages a chain crosses at most (a run of pages whose records were all quarantined).
_MAX_CHAIN = 64


def _edge_indexes(ts: List[Optional[int]]) -> List[int]:
    """Indexes of the records at a page's first and at its last timestamp."""
    n = len(ts)
    head = 1
    while head < n and ts[head] == ts[0]:
        head += 1
    tail = n - 1
    while tail > head and ts[tail - 1] == ts[-1]:
        tail -= 1
    return list(range(head)) + list(range(max(head, tail), n))


@dataclass
class Coverage:
    """Every page a scan saw: repeats filtered out, holes found."""

    per_page: int
    observations: List[Observation] = field(default_factory=list)
    extra_joins: List[Range] = field(default_factory=list)
    # listed ranges, for repeats: merged open intervals, and the ids listed at each edge timestamp
    _starts: List[int] = field(default_factory=list)
    _ends: List[int] = field(default_factory=list)
    _edge_ids: Dict[int, Set[str]] = field(default_factory=dict)
    _edge_times: List[int] = field(default_factory=list)

    def add(self, page: Page) -> List[bool]:
        """Records the page; returns, per record, whether it is new to this scan."""
        fresh = self._fresh(page)
        self.observations.append(Observation.of(page, self.per_page))
        ts, ids = page.created_us, page.ids
        if ts:
            first, last = int(ts[0]), int(ts[-1])  # type: ignore[arg-type]
            for index in _edge_indexes(ts):
                t = int(ts[index])  # type: ignore[arg-type]
                if t not in self._edge_ids:
                    insort(self._edge_times, t)
                self._edge_ids.setdefault(t, set()).add(str(ids[index]))
            if last < first:
                self._add_open(last, first)
        return fresh

    def _fresh(self, page: Page) -> List[bool]:
        ts = page.created_us
        if not ts:
            return []
        first, last = int(ts[0]), int(ts[-1])  # type: ignore[arg-type]
        index = bisect_right(self._starts, first) - 1  # last open interval starting <= first
        inside = index >= 0 and self._ends[index] > last  # the page meets the merged intervals
        edges_within = bisect_right(self._edge_times, first) > bisect_left(self._edge_times, last)
        if not inside and not edges_within:
            return [True] * len(ts)  # the common case: nothing listed before in this range
        edges = self._edge_ids
        out = []
        for t, record_id in zip(ts, page.ids):
            seen = t in edges and record_id in edges[t]
            if not seen and inside:
                seen = self._inside(int(t))  # type: ignore[arg-type]
            out.append(not seen)
        return out

    def _inside(self, t: int) -> bool:
        index = bisect_left(self._starts, t) - 1  # last interval starting strictly below t
        return index >= 0 and self._ends[index] > t

    def _add_open(self, lo: int, hi: int) -> None:
        """Adds the open interval (lo, hi), merging the ones it overlaps (touching ones stay
        apart: their shared point is not inside either)."""
        left = bisect_left(self._ends, lo + 1)  # first interval ending after lo
        right = bisect_left(self._starts, hi)  # intervals starting before hi
        if left < right:
            lo = min(lo, self._starts[left])
            hi = max(hi, self._ends[right - 1])
        self._starts[left:right] = [lo]
        self._ends[left:right] = [hi]

    def join(self, joined: Range) -> None:
        """Declares a range complete (e.g. pages a quiet scan proved joined)."""
        self.extra_joins.append(joined)

    def gaps(self, since: Optional[int] = None) -> List[Gap]:
        """Ranges no page, no count and no declared join vouches for, from the top down to
        ``since`` (microseconds; None: the bottom of the list)."""
        ranges: List[Tuple[int, int, Ids, Ids, Optional[Observation]]] = []
        for obs in self.observations:
            if obs.size or (obs.number == 1 and obs.ends):
                ranges.append((obs.lo, obs.hi, obs.lo_ids, obs.hi_ids, obs))
        joins = chained_joins(pairs_proven_by_counts(self.observations)) + self.extra_joins
        ranges += [(lo, hi, lo_ids, hi_ids, None) for lo, hi, lo_ids, hi_ids in joins]
        # top down; at one ``hi``, the ranges that lie wholly at it first (a tie group's pages,
        # linked by the ids they share), then those reaching below it
        ranges.sort(key=lambda r: (-r[1], -r[0]))
        return _walk(ranges, NEG_INF if since is None else since)


def _walk(ranges: List[Tuple[int, int, Ids, Ids, Optional[Observation]]],
          floor: int) -> List[Gap]:
    """The gaps left between sorted ranges, from the top of the list down to ``floor``."""
    covered = POS_INF  # (covered, +inf) is complete so far, and at ``covered`` the records
    covered_ids: Ids = frozenset()  # down to those of ``covered_ids``
    above: Optional[Observation] = None
    found: List[Gap] = []
    index = 0
    while index < len(ranges) and covered > floor:
        lo, hi, lo_ids, hi_ids, origin = ranges[index]
        if lo == hi == covered:  # pieces of a tie group at the edge: linked by shared ids
            group = []
            while index < len(ranges) and ranges[index][0] == ranges[index][1] == covered:
                group.append(ranges[index])
                index += 1
            linked, above = _link(group, covered_ids, above)
            if linked is None:
                found.append(Gap(covered, covered, above))
                linked = covered_ids.union(*(r[2] for r in group))
            covered_ids = linked
            continue
        index += 1
        if lo >= covered:
            if lo == covered:
                covered_ids = covered_ids | lo_ids
            continue
        joined = hi >= POS_INF or hi > covered or (hi == covered and bool(hi_ids & covered_ids))
        if not joined:
            found.append(Gap(max(hi, floor), covered, above))
        covered_ids = lo_ids
        covered = lo
        if origin is not None:
            above = origin
    if covered > floor:
        found.append(Gap(floor, covered, above))
    return found


def _link(group: List[Tuple[int, int, Ids, Ids, Optional[Observation]]], ids: Ids,
          above: Optional[Observation]) -> Tuple[Optional[Ids], Optional[Observation]]:
    """Joins the pieces of a tie group, in any order, to the records at its timestamp already
    covered (``ids``): each piece that shares a record with them adds its own. Returns the ids
    covered then, or None when a piece stays apart (records between may be missing), and the
    last page joined (where a re-read starts)."""
    pending = list(group)
    progress = True
    while pending and progress:
        progress = False
        for piece in list(pending):
            if piece[3] & ids:
                ids = ids | piece[2]
                above = piece[4] or above
                pending.remove(piece)
                progress = True
    return (None if pending else ids), above
