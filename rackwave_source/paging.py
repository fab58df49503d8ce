"""Page-number paging over Rackwave's documented list envelope.

dlt's ``PageNumberPaginator`` walks pages one after another through ``RESTClient``; here each page
is fetched by number and its envelope checked, so an incremental run can stop early on its cursor
and a full scan can fetch many pages at once (page 1 gives ``meta.last_page``), which is what
takes a first load from latency-bound to rate-limit-bound.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional

from .client import RackwaveClient
from .exceptions import UnexpectedResponseError


@dataclass(frozen=True)
class Page:
    """One validated page of a list endpoint."""

    number: int
    records: List[Dict[str, Any]]
    total: int
    last_page: int


def _meta_int(meta: Mapping[str, Any], key: str) -> Optional[int]:
    value = meta.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_page(resource: str, url: str, number: int, body: Any) -> Page:
    """Checks the documented envelope ``{"data": [...], "meta": {...}}``.

    Raises:
        UnexpectedResponseError: naming the resource, the page and what is wrong with it.
    """

    def fail(problem: str) -> UnexpectedResponseError:
        return UnexpectedResponseError(
            f"Rackwave `{resource}` page {number} from {url} is not the documented list "
            f"envelope: {problem}. Check base_url points at the Rackwave API v1."
        )

    if not isinstance(body, dict):
        raise fail(f"expected a JSON object, got {type(body).__name__}")
    data = body.get("data")
    meta = body.get("meta")
    if not isinstance(data, list):
        raise fail("`data` is missing or not a list")
    if not isinstance(meta, dict):
        raise fail("`meta` is missing or not an object")
    total = _meta_int(meta, "total")
    last_page = _meta_int(meta, "last_page")
    if total is None or last_page is None:
        raise fail("`meta.total` and `meta.last_page` must be integers")
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise fail(f"record {index} is a {type(record).__name__}, not an object")
    return Page(number=number, records=data, total=total, last_page=last_page)


def fetch_page(
    client: RackwaveClient,
    resource: str,
    path: str,
    number: int,
    per_page: int,
    filters: Optional[Mapping[str, str]] = None,
) -> Page:
    """Fetches and validates page ``number``."""
    params: Dict[str, Any] = {"page": number, "per_page": per_page, **(filters or {})}
    body = client.get(path, params)
    return parse_page(resource, client.base_url + path, number, body)


def iter_pages(
    client: RackwaveClient,
    resource: str,
    path: str,
    per_page: int,
    filters: Optional[Mapping[str, str]] = None,
) -> Iterator[Page]:
    """Yields pages from 1 until ``meta.last_page`` or an empty page; the caller may stop early."""
    number = 1
    while True:
        page = fetch_page(client, resource, path, number, per_page, filters)
        yield page
        if not page.records or number >= page.last_page:
            return
        number += 1


def iter_pages_concurrent(
    client: RackwaveClient,
    resource: str,
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
        yield from iter_pages(client, resource, path, per_page, filters)
        return
    first = fetch_page(client, resource, path, 1, per_page, filters)
    yield first
    if not first.records or first.last_page <= 1:
        return
    target = first.last_page
    window = 2 * concurrency
    pending: Dict[int, "Future[Page]"] = {}
    next_submit = next_yield = 2
    with ThreadPoolExecutor(concurrency, thread_name_prefix=f"rackwave-{resource}") as pool:
        try:
            while next_yield <= target:
                while next_submit <= target and len(pending) < window:
                    pending[next_submit] = pool.submit(
                        fetch_page, client, resource, path, next_submit, per_page, filters
                    )
                    next_submit += 1
                page = pending.pop(next_yield).result()
                next_yield += 1
                yield page
                if not page.records:
                    return
                target = max(target, page.last_page)
        finally:
            for future in pending.values():
                future.cancel()
