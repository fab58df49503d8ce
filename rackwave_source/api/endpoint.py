"""One list endpoint of the API (``/leads``, ``/contacts``): the only place that asks for pages.

It owns what every request of one resource shares (the client, the path, the page size, the
filters and the page reader) and offers three ways to read: one page, a run of consecutive pages
asked for one after another (decoded together), and a lookup of one record through the API's
``search`` parameter. Every page comes back checked (:func:`decode.check_page`) and stamped with
when it was asked for and answered, which the scan's coverage arithmetic needs.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import pyarrow as pa

from rackwave_source import settings as S
from rackwave_source.api.client import RackwaveClient
from rackwave_source.timestamps import micros, utc_now
from rackwave_source.api.decode import Page, PageReader, check_page

logger = logging.getLogger("rackwave_source")


class ListEndpoint:
    """Pages of one resource, read with one page size and one set of filters."""

    def __init__(
        self,
        client: RackwaveClient,
        path: str,
        reader: PageReader,
        per_page: int,
        filters: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.client = client
        self.path = path
        self.reader = reader
        #: the page size asked for (``per_page``), until a server that serves fewer says so
        #: (``meta.per_page``): from then on its own size, so page numbers mean what it means
        self.per_page = per_page
        self.asked_per_page = per_page
        self.filters: Dict[str, str] = dict(filters or {})
        self.url = client.base_url + path

    @property
    def resource(self) -> str:
        return self.reader.resource

    def _params(self, number: int, extra: Optional[Mapping[str, str]] = None,
                per_page: Optional[int] = None) -> Dict[str, Any]:
        return {"page": number, "per_page": per_page or self.per_page, **self.filters,
                **(extra or {})}

    def page(self, number: int, extra: Optional[Mapping[str, str]] = None,
             per_page: Optional[int] = None) -> Page:
        """Fetches, decodes and checks page ``number`` (``extra``: more query parameters;
        ``per_page``: another page size than the endpoint's, for re-reads)."""
        sent = time.monotonic()
        body = self.client.get(self.path, self._params(number, extra, per_page),
                               decode=self.reader.decode)
        received, clock = time.monotonic(), self._server_clock()
        page = check_page(self.resource, self.reader.page(self.url, number, body))
        page.sent_at, page.received_at, page.server_us = sent, received, clock
        self._geometry(page, per_page or self.per_page)
        return page

    def _server_clock(self) -> int:
        """The server's time on the answer just received (``Date``), in microseconds; this
        machine's clock for a server that sends no ``Date`` (docs/api-assumptions.md lists the assumption)."""
        answered = self.client.answered_at()
        return micros(answered if answered is not None else utc_now())

    def _geometry(self, page: Page, asked: int) -> None:
        """The page's own page size: the server's (``meta.per_page``) when it said, else the size
        asked for. A server serving fewer than asked is taken at its word for the rest of the
        run: later pages are asked for at its size (logged once)."""
        served = page.served_per_page
        page.per_page = served or asked
        if served and served < asked and asked == self.per_page:
            if self.per_page == self.asked_per_page:
                logger.info("%s: the API serves %d records per page (per_page %d asked); pages are "
                            "read at its size", self.resource, served, asked)
            self.per_page = served

    def run(self, numbers: Sequence[int]) -> List[Page]:
        """Fetches consecutive pages one after another (each asked for only once the one before
        it was answered), then decodes them together.

        A body that turns out not to be JSON (e.g. cut short) is fetched again through
        :meth:`page`, with the client's retries.
        """
        bodies: List[bytes] = []
        times: List[Tuple[float, float, int]] = []
        for number in numbers:
            sent = time.monotonic()
            bodies.append(self.client.get(self.path, self._params(number), decode=bytes))
            times.append((sent, time.monotonic(), self._server_clock()))
        decoded = self.reader.pages(self.url, numbers, bodies)
        pages: List[Page] = []
        for number, page, (sent, received, clock) in zip(numbers, decoded, times):
            if page is None:
                pages.append(self.page(number))
                continue
            page.sent_at, page.received_at, page.server_us = sent, received, clock
            self._geometry(page, self.per_page)
            pages.append(check_page(self.resource, page))
        return pages

    def lookup(self, record_id: str, terms: Sequence[str]) -> Optional[pa.Table]:
        """Looks one record up by each search term; its current row if the API still has it.

        Returns None only when every term was searched to its last page without finding the id:
        the record is gone. Raises :class:`LookupInconclusive` when no term can tell (none given,
        or more matches than :data:`settings.LOOKUP_MAX_PAGES` pages).
        """
        if not terms:
            raise LookupInconclusive(record_id, "it has no field the API's search matches")
        for term in terms:
            number = 1
            while True:
                page = self.page(number, {S.SEARCH_PARAM: term})
                if record_id in page.ids:
                    row = page.records.slice(page.ids.index(record_id), 1)
                    return row if self._in_view(row) else None
                if page.ends_list or not page.size:
                    break
                number += 1
                if number > S.LOOKUP_MAX_PAGES:
                    raise LookupInconclusive(record_id, f"{term!r} matches too many records")
        return None


    def _in_view(self, row: pa.Table) -> bool:
        """Whether a record found by a lookup is in this endpoint's filtered view. The status
        filter is sent with the lookup; a configured ``search`` filter cannot be (the lookup's
        term takes its place), so it is checked here: the filter's text in any text field (a
        little wider than the API's name/email/company: in doubt a record is kept, as when
        hashed or excluded columns hide text the filter may have matched)."""
        needle = self.filters.get(S.SEARCH_PARAM)
        if not needle or self.reader.privacy.active:
            return True
        values = row.to_pylist()[0].values()
        return any(isinstance(v, str) and needle.lower() in v.lower() for v in values)


class LookupInconclusive(Exception):
    """A record could not be looked up, so whether it was deleted stays unknown."""

    def __init__(self, record_id: str, why: str) -> None:
        super().__init__(f"{record_id}: {why}")
        self.record_id = record_id
