"""Re-reads: the top of the list after a full scan, and the holes ``coverage.py`` found.

A hole is a ``created_at`` range that no page vouches for. It is re-read *where it is now*: its
upper edge was the last record of a page whose position and total are known, so its position now
is that position moved by the change of the total since (or lower). The re-read asks for a page
that starts just above that position, with a page size chosen so that the hole lies well inside
it (:func:`window`): one page, one instant, no total to trust. Should the hole have moved further
down, the walk reads on, each page asked for once the one before was answered. Pages move while we walk too: the caller
re-checks the coverage and walks again where a hole remains, a few times at most.
"""

from __future__ import annotations

from typing import Iterator, Tuple

from rackwave_source import settings as S
from rackwave_source.read.coverage import POS_INF, Gap
from rackwave_source.api.decode import Page
from rackwave_source.api.endpoint import ListEndpoint
from rackwave_source.read.paging import page_of


def probe_top(endpoint: ListEndpoint, first: Page) -> Iterator[Page]:
    """Page 1 again, and on until a page reaches the top of the list as it was when the scan
    began (``first``, the scan's own page 1): what was created during the scan, up to now.

    ``created_at`` has whole seconds, and records created during the scan often share the second
    of the newest one before it: a page reaches the old top when it holds one of ``first``'s
    records, or a record older than all of them.
    """
    top = first.created_us[0] if first.timed else None
    old = set(first.ids)
    number = 1
    while True:
        page = endpoint.page(number)
        yield page
        if page.ends_list or top is None:
            return
        if (page.timed and page.created_us[-1] < top) or not old.isdisjoint(page.ids):  # type: ignore[operator]
            return
        number += 1


def _estimate(gap: Gap, per_page: int, latest_total: int) -> int:
    """Where the hole's upper edge is now, at the highest (0-based position).

    It was the last record of page ``above``; it moved by the creations above it minus the
    deletions above it. The change of the total is creations minus *all* deletions, so the edge
    is at this estimate or below it, by the deletions below it.
    """
    above = gap.above
    if above is None or gap.hi >= POS_INF:
        return 0
    size = above.per_page or per_page
    return max(0, above.number * size - 1 + (latest_total - above.total))


def window(position: int, per_page: int) -> Tuple[int, int]:
    """``(page, page size)`` whose page starts a few records above ``position`` and reaches as far
    below it as a page size up to ``per_page`` allows.

    A hole sits where two pages of the first pass met; re-read with the same page size it would
    straddle two pages again, and only their totals could join them, which deletions below it
    spoil. A page size whose boundaries fall elsewhere puts the whole hole on one page, served at
    one instant: proof by overlap, whatever the churn.
    """
    target = max(0, position - S.REREAD_SLACK)
    best = (page_of(target, per_page), per_page, -1)
    for size in range(per_page, max(1, per_page // 2) - 1, -1):
        start = target // size * size
        room = start + size - position  # records the page holds at and below the edge
        if room > best[2]:
            best = (start // size + 1, size, room)
    return best[0], best[1]


def _starts_above(page: Page, gap: Gap) -> bool:
    """Whether the page begins at or above the hole's upper edge (sharing a record there)."""
    if page.number == 1 or not page.timed:
        return page.number == 1
    first = page.created_us[0]
    if first > gap.hi:  # type: ignore[operator]
        return True
    edge = gap.above.lo_ids if gap.above is not None else frozenset()
    return first == gap.hi and any(
        t == gap.hi and i in edge for t, i in zip(page.created_us, page.ids))


def walk_gap(endpoint: ListEndpoint, gap: Gap, latest_total: int) -> Iterator[Page]:
    """Pages from above the hole down past it (or to the end of the list)."""
    number, size = window(_estimate(gap, endpoint.per_page, latest_total), endpoint.per_page)
    walked = 0
    started = False
    while walked < S.MAX_REREAD_PAGES:
        page = endpoint.page(number, per_page=size)
        walked += 1
        yield page
        if not started and not _starts_above(page, gap):
            number = max(1, number - 1)  # started inside or below the hole: one page up
            continue
        started = True
        if page.ends_list or (page.timed and page.created_us[-1] < gap.lo):  # type: ignore[operator]
            return
        number += 1
