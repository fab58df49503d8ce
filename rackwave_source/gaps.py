"""Records hidden by deletions while a run pages, found and read again.

Pages are positions in a newest-first list. A record deleted *above* the page being read shifts
every later record up by one, so the first record of the next page slides onto the page already
read and is never seen: a silent loss that no retry would notice. The documented ``meta.total``
reveals it: between two consecutive pages, records created meanwhile raise the total and shift
records *down* (repeats, skipped by the row filter), deletions lower it; the shift up is never
larger than the drop of the total. So whenever a page reports a lower total than the page before
it, up to that many records may be hidden at that boundary, all with a ``created_at`` between
the last record before it and the first after it. After the pass those pages are read again
and whatever in that range the run has not kept yet is loaded.

Which ids were kept is recorded as one 64-bit hash each (8 bytes a record: 8 MB for a million),
not as strings, so memory stays flat.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Mapping, Optional, Sequence

import numpy as np
import pyarrow as pa

from . import settings as S
from .client import RackwaveClient
from .paging import fetch_page
from .records import Page, PageReader

_MASK = (1 << 64) - 1


def _hash(record_id: Optional[str]) -> int:
    """An id's 64-bit hash (stable within one process, which is all a run needs)."""
    return hash(record_id) & _MASK


def hash_ids(ids: Sequence[Optional[str]]) -> Any:
    """64-bit hashes of ids, as a numpy array."""
    return np.fromiter(map(_hash, ids), dtype=np.uint64, count=len(ids))


def id_hashes(table: pa.Table) -> Any:
    """64-bit hashes of a table's ids."""
    return hash_ids(table.column(S.PRIMARY_KEY).to_pylist())


def contains(sorted_hashes: Any, hashes: Any) -> Any:
    """Boolean mask: which of ``hashes`` are in ``sorted_hashes``."""
    if not len(sorted_hashes):
        return np.zeros(len(hashes), dtype=bool)
    positions = np.searchsorted(sorted_hashes, hashes)
    positions[positions >= len(sorted_hashes)] = 0
    return sorted_hashes[positions] == hashes


@dataclass
class Gap:
    """Up to ``lost`` records with ``lower <= created_at <= upper`` may be hidden before ``page``."""

    page: int
    lost: int
    upper: int
    lower: int


@dataclass
class GapWatch:
    """Follows the pages of one pass and the ids it kept."""

    kept: "array[int]" = field(default_factory=lambda: array("Q"))
    gaps: List[Gap] = field(default_factory=list)
    _previous: Optional[Page] = None

    def keep(self, ids: Sequence[Optional[str]]) -> None:
        """Records the ids of rows the run keeps."""
        self.kept.extend(map(_hash, ids))

    def kept_sorted(self) -> Any:
        """The ids kept so far, as a sorted array for :func:`contains`."""
        return np.sort(np.frombuffer(self.kept, dtype=np.uint64))

    def page(self, page: Page) -> None:
        """Compares a page's total with the page before it (in page order)."""
        before = self._previous
        self._previous = page
        if before is None or page.total >= before.total:
            return
        if not before.records.num_rows or not page.records.num_rows:
            return
        self.gaps.append(
            Gap(page=page.number, lost=before.total - page.total,
                upper=before.created_us[-1], lower=page.created_us[0])  # type: ignore[arg-type]
        )


def recover(
    client: RackwaveClient,
    reader: PageReader,
    path: str,
    per_page: int,
    filters: Optional[Mapping[str, str]],
    watch: GapWatch,
    since_us: Optional[int],
) -> Iterator[pa.Table]:
    """Re-reads the pages around each gap; yields the records in its range not kept yet."""
    if not watch.gaps:
        return
    kept = watch.kept_sorted()
    for gap in watch.gaps:
        back = math.ceil(gap.lost / per_page) + 1
        number = max(1, gap.page - back)
        last = gap.page + back + 1
        while number <= last:
            page = fetch_page(client, reader, path, number, per_page, filters)
            if not page.records.num_rows:
                break
            found = _unseen_in_range(page, gap, kept, since_us)
            if found is not None:
                watch.keep(found.column(S.PRIMARY_KEY).to_pylist())
                kept = watch.kept_sorted()
                yield found
            if page.created_us[-1] < gap.lower:  # type: ignore[operator]
                break  # passed the gap's range
            number += 1


def _unseen_in_range(
    page: Page, gap: Gap, kept: Any, since_us: Optional[int]
) -> Optional[pa.Table]:
    ts = page.created_us
    seen = contains(kept, hash_ids(page.ids)).tolist()
    mask = [
        gap.lower <= t <= gap.upper and not s and (since_us is None or t >= since_us)
        for t, s in zip(ts, seen)
    ]
    if not any(mask):
        return None
    return page.records.filter(pa.array(mask))
