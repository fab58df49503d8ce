"""Page-number paging over Rackwave's documented list envelope.

dlt's ``PageNumberPaginator`` walks pages one after another through ``RESTClient``; here each page
is fetched by number and its envelope checked, so an incremental run can stop early on its cursor
and a full scan can fetch many pages at once (page 1 gives ``meta.last_page``), which is what
takes a first load from latency-bound to rate-limit-bound.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Sequence

from . import settings as S
from .client import RackwaveClient
from .records import Page, PageReader


def fetch_page(
    client: RackwaveClient,
    reader: PageReader,
    path: str,
    number: int,
    per_page: int,
    filters: Optional[Mapping[str, str]] = None,
) -> Page:
    """Fetches, decodes and validates page ``number``."""
    params: Dict[str, Any] = {"page": number, "per_page": per_page, **(filters or {})}
    body = client.get(path, params, decode=reader.decode)
    return reader.page(client.base_url + path, number, body)


def iter_pages(
    client: RackwaveClient,
    reader: PageReader,
    path: str,
    per_page: int,
    filters: Optional[Mapping[str, str]] = None,
) -> Iterator[Page]:
    """Yields pages from 1 until ``meta.last_page`` or an empty page; the caller may stop early."""
    number = 1
    while True:
        page = fetch_page(client, reader, path, number, per_page, filters)
        yield page
        if not page.records.num_rows or number >= page.last_page:
            return
        number += 1


def fetch_pages(
    client: RackwaveClient,
    reader: PageReader,
    path: str,
    numbers: Sequence[int],
    per_page: int,
    filters: Optional[Mapping[str, str]] = None,
) -> List[Page]:
    """Fetches consecutive pages one after another, then decodes them together.

    A body that turns out not to be JSON (e.g. cut short) is fetched again through
    :func:`fetch_page`, with the client's retries.
    """
    bodies = [
        client.get(path, {"page": n, "per_page": per_page, **(filters or {})}, decode=bytes)
        for n in numbers
    ]
    pages = reader.pages(client.base_url + path, numbers, bodies)
    return [
        page if page is not None else fetch_page(client, reader, path, n, per_page, filters)
        for n, page in zip(numbers, pages)
    ]


def iter_pages_concurrent(
    client: RackwaveClient,
    reader: PageReader,
    path: str,
    per_page: int,
    filters: Optional[Mapping[str, str]] = None,
    concurrency: int = 8,
    pages_per_read: int = S.PAGES_PER_READ,
) -> Iterator[Page]:
    """Yields every page in order, fetching up to ``concurrency`` of them at a time.

    Each worker takes up to ``pages_per_read`` consecutive pages (see :func:`fetch_pages`). Pages are
    yielded in page order, so callers see the same sequence as :func:`iter_pages`, and memory
    holds at most ``concurrency + 2`` such runs of pages. If records are created meanwhile, a
    later page reports a larger ``last_page`` and the scan follows it; if records are deleted,
    it stops at the first empty page. Closing the generator (an early stop) cancels what was not
    sent yet.
    """
    if concurrency <= 1:
        yield from iter_pages(client, reader, path, per_page, filters)
        return
    first = fetch_page(client, reader, path, 1, per_page, filters)
    yield first
    if not first.records.num_rows or first.last_page <= 1:
        return
    target = first.last_page
    window = concurrency + 2
    pending: Deque["Future[List[Page]]"] = deque()
    next_submit = 2
    with ThreadPoolExecutor(concurrency, thread_name_prefix=f"rackwave-{reader.resource}") as pool:
        try:
            while pending or next_submit <= target:
                while next_submit <= target and len(pending) < window:
                    # fewer pages per read when there are too few to keep every worker busy
                    size = max(1, min(pages_per_read, (target - next_submit + 1) // concurrency))
                    numbers = range(next_submit, min(next_submit + size, target + 1))
                    pending.append(pool.submit(
                        fetch_pages, client, reader, path, numbers, per_page, filters
                    ))
                    next_submit = numbers[-1] + 1
                for page in pending.popleft().result():
                    yield page
                    if not page.records.num_rows:
                        return
                    target = max(target, page.last_page)
        finally:
            for future in pending:
                future.cancel()
