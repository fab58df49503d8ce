"""Page-number paging over Rackwave's documented list envelope.

dlt's ``PageNumberPaginator`` walks pages one after another through ``RESTClient``; here each page
is fetched by number and its envelope checked, so an incremental run can stop early on its cursor
and a full scan can fetch many pages at once (page 1 gives ``meta.last_page``), which is what
takes a first load from latency-bound to rate-limit-bound.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Dict, Iterator, Mapping, Optional

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


def iter_pages_concurrent(
    client: RackwaveClient,
    reader: PageReader,
    path: str,
    per_page: int,
    filters: Optional[Mapping[str, str]] = None,
    concurrency: int = 8,
) -> Iterator[Page]:
    """Yields every page in order, fetching up to ``concurrency`` of them at a time.

    Pages are yielded in page order, so callers see the same sequence as :func:`iter_pages` and
    memory holds at most ``2 * concurrency`` pages. If records are created meanwhile, a later page
    reports a larger ``last_page`` and the scan follows it; if records are deleted, it stops at
    the first empty page. Closing the generator (an early stop) cancels what was not sent yet.
    """
    if concurrency <= 1:
        yield from iter_pages(client, reader, path, per_page, filters)
        return
    first = fetch_page(client, reader, path, 1, per_page, filters)
    yield first
    if not first.records.num_rows or first.last_page <= 1:
        return
    target = first.last_page
    window = 2 * concurrency
    pending: Dict[int, "Future[Page]"] = {}
    next_submit = next_yield = 2
    with ThreadPoolExecutor(concurrency, thread_name_prefix=f"rackwave-{reader.resource}") as pool:
        try:
            while next_yield <= target:
                while next_submit <= target and len(pending) < window:
                    pending[next_submit] = pool.submit(
                        fetch_page, client, reader, path, next_submit, per_page, filters
                    )
                    next_submit += 1
                page = pending.pop(next_yield).result()
                next_yield += 1
                yield page
                if not page.records.num_rows:
                    return
                target = max(target, page.last_page)
        finally:
            for future in pending.values():
                future.cancel()
