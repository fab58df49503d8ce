"""Re-reads: the top of the list after a full scan, and the holes ``coverage.py`` found.

A hole is a ``created_at`` range that no page vouches for. It is re-read *where it is now*: its
upper edge was the last record of a page whose position and total are known, so its position now
is that position moved by the change of the total since. The re-read walks down from a page that
starts above the hole until a page ends below it, each page asked for once the one before was
answered, so the walk's own pages join by their totals. Pages move while we walk too: the caller
re-checks the coverage and walks again where a hole remains, a few times at most.
"""

from __future__ import annotations

from typing import Iterator

from . import settings as S
from .coverage import POS_INF, Gap
from .decode import Page
from .endpoint import ListEndpoint
from .paging import page_of


def probe_top(endpoint: ListEndpoint, first: Page) -> Iterator[Page]:
    """Page 1 again, and on until a page reaches the top of the list as it was when the scan
    began (``first``, the scan's own page 1): what was created during the scan, up to now.

    ``created_at`` has whole seconds, and records created during the scan often share the second
    of the newest one before it: a page reaches the old top when it holds one of ``first``'s
    records, or a record older than all of them.
    """
    top = first.created_us[0] if first.size else None
    old = set(first.ids)
    number = 1
    while True:
        page = endpoint.page(number)
        yield page
        if page.size < endpoint.per_page or top is None:
            return
        if page.created_us[-1] < top or not old.isdisjoint(page.ids):  # type: ignore[operator]
            return
        number += 1


def _start(gap: Gap, per_page: int, latest_total: int) -> int:
    """The page that should hold the hole's upper edge now."""
    above = gap.above
    if above is None or gap.hi >= POS_INF:
        return 1
    position = above.number * per_page - 1 + (latest_total - above.total) - S.REREAD_SLACK
    return page_of(position, per_page)


def _starts_above(page: Page, gap: Gap) -> bool:
    """Whether the page begins at or above the hole's upper edge (sharing a record there)."""
    if page.number == 1 or not page.size:
        return page.number == 1
    first = page.created_us[0]
    if first > gap.hi:  # type: ignore[operator]
        return True
    edge = gap.above.lo_ids if gap.above is not None else frozenset()
    return first == gap.hi and any(
        t == gap.hi and i in edge for t, i in zip(page.created_us, page.ids))


def walk_gap(endpoint: ListEndpoint, gap: Gap, latest_total: int) -> Iterator[Page]:
    """Pages from above the hole down past it (or to the end of the list)."""
    per_page = endpoint.per_page
    number = _start(gap, per_page, latest_total)
    walked = 0
    started = False
    while walked < S.MAX_REREAD_PAGES:
        page = endpoint.page(number)
        walked += 1
        yield page
        if not started and not _starts_above(page, gap):
            number = max(1, number - 1)  # started inside or below the hole: one page up
            continue
        started = True
        if page.size < per_page or page.created_us[-1] < gap.lo:  # type: ignore[operator]
            return
        number += 1
