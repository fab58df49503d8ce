"""Page bodies -> validated pages: the documented envelope checked, records as Arrow tables.

A page body is parsed straight into Arrow by pyarrow's JSON reader (C++, with the declared
fields' types given, undocumented ones inferred), which costs a quarter of parsing into Python
objects and converting those. A body the reader refuses but that is valid JSON (e.g. pretty
printed, or a field of an unexpected type) takes the slow path through Python objects, whose
errors name the resource, the page and the field. Several pages fetched one after another are
decoded in one JSON read (:meth:`PageReader.pages`): per-call overhead made decoding the largest
CPU cost of a 100-record page.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import (
    Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeGuard, Union,
)

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from dlt.common.json import json

from rackwave_source import settings as S
from rackwave_source.rows.arrow_shape import ARROW_TYPES, POOL, SEPARATOR, arrow_schema, to_arrow
from rackwave_source.rows.drift import ColumnTypes, arrow_type
from rackwave_source.exceptions import UnexpectedResponseError
from rackwave_source.rows.privacy import Privacy
from rackwave_source.rows.quarantine import set_aside_keyless, sort_out
from rackwave_source.schema import TColumns

_META = pa.struct([(k, pa.int64()) for k in ("total", "per_page", "current_page", "last_page")])


@dataclass
class Page:
    """One validated page: its records as a table of the declared shape, and its meta.

    ``rejected`` holds the records set aside with ``bad_records = "quarantine"``, one row each
    for the quarantine table. ``sent_at``/``received_at`` (``time.monotonic()``) are set by the
    endpoint that fetched it: whether one page was answered before another was asked for decides
    what a scan can conclude from their totals (see ``coverage.py``).
    """

    number: int
    records: pa.Table
    total: int
    last_page: int
    rejected: List[Dict[str, Any]] = dataclass_field(default_factory=list)
    #: ``meta.per_page``: the page size the server used for this page (0: it did not say)
    served_per_page: int = 0
    #: the server's clock when it answered (its ``Date`` header; this machine's clock when it
    #: sent none), integer microseconds UTC, set by the endpoint; 0 unknown
    server_us: int = 0
    sent_at: float = 0.0
    received_at: float = 0.0
    #: the page size of this page's geometry: the server's own when it said, else the size asked
    #: for (set by the endpoint)
    per_page: int = 0
    #: ``created_at`` as integer microseconds (UTC) and ``id``, one per record, as Python lists.
    #: Computed where the page is decoded (a fetching thread), so the single thread that consumes
    #: pages does no Arrow compute per page: each such call releases the GIL and then waits its
    #: turn behind the fetching threads to take it back.
    created_us: List[Optional[int]] = dataclass_field(init=False, repr=False)
    ids: List[Optional[str]] = dataclass_field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.created_us = pc.cast(
            self.records.column(S.CURSOR_FIELD), pa.int64(), memory_pool=POOL).to_pylist()
        self.ids = self.records.column(S.PRIMARY_KEY).to_pylist()

    @property
    def size(self) -> int:
        """Records the API listed on this page (quarantined ones included): what says whether the
        page was full."""
        rows: int = self.records.num_rows
        return rows + len(self.rejected)

    @property
    def ends_list(self) -> bool:
        """Whether nothing follows this page: it is shorter than the server's own page size
        (``per_page``, taken from the answer, never from the size asked) and its meta says no
        page follows (``current_page >= last_page``). A full page never ends a pass, whatever
        ``last_page`` says (a count that trails the data would hide the oldest records); a short
        page that meta says is followed by more does not either (a server that leaves records
        out of a page)."""
        return self.size < self.per_page and self.number >= self.last_page

    @property
    def timed(self) -> bool:
        """Whether any record of the page has a ``created_at`` to anchor it (a page of records
        all set aside for quarantine has none, though it is not empty)."""
        return bool(self.created_us)


def _read_schema(columns: TColumns) -> pa.Schema:
    """The envelope's schema for pyarrow's JSON reader: declared fields typed, timestamps as text
    (cast afterwards, which accepts the ``Z`` suffix), nested objects as structs."""
    fields: Dict[str, Any] = {}
    for name, column in columns.items():
        kind = str(column["data_type"])
        arrow_type = pa.string() if kind == "timestamp" else ARROW_TYPES[kind]
        if SEPARATOR in name:
            parent, child = name.split(SEPARATOR, 1)
            fields.setdefault(parent, {})[child] = arrow_type
        else:
            fields[name] = arrow_type
    record = pa.struct(
        [(k, pa.struct(list(v.items())) if isinstance(v, dict) else v) for k, v in fields.items()]
    )
    return pa.schema([("data", pa.list_(record)), ("meta", _META)])


def _is_int(value: Any) -> TypeGuard[int]:
    """A JSON integer (``true`` and ``false`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


class _Misfit(Exception):
    """A value the Arrow path cannot place; the Python path sorts the page out."""


class PageReader:
    """Decodes and validates the pages of one resource."""

    def __init__(
        self,
        resource: str,
        columns: TColumns,
        quarantine: bool = False,
        known_types: Optional[Mapping[str, str]] = None,
        privacy: Optional[Privacy] = None,
    ) -> None:
        """``known_types``: the data type of each column the destination already has (from the
        dlt schema), so that a field that changed type since an earlier run is a variant.
        ``privacy``: hashed and excluded columns, applied to every table made here."""
        self.resource = resource
        self.privacy = privacy or Privacy()
        self.quarantine = quarantine
        self.columns = columns
        self.schema = arrow_schema(columns)
        self.types = ColumnTypes(
            {**(known_types or {}),
             **{name: str(column["data_type"]) for name, column in columns.items()}})
        self._documented = {name.split(SEPARATOR, 1)[0] for name in columns}
        self._parse = pa_json.ParseOptions(
            explicit_schema=_read_schema(columns), unexpected_field_behavior="infer"
        )

    def decode(self, content: bytes) -> Union[pa.Table, Any]:
        """Arrow when the reader takes the body, else Python objects.

        Raises:
            ValueError: the body is not JSON at all (e.g. truncated): the client retries it.
        """
        try:
            table = self._read_json(content)
            if table.num_rows == 1:
                return table
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        return json.loadb(content)

    def _read_json(self, content: bytes) -> pa.Table:
        """One read of newline-separated JSON objects, in a single block (one thread)."""
        return pa_json.read_json(
            pa.py_buffer(content),
            read_options=pa_json.ReadOptions(use_threads=False,
                                              block_size=max(len(content) + 1, 1 << 16)),
            parse_options=self._parse,
            memory_pool=POOL,
        )

    def pages(self, url: str, numbers: Sequence[int], bodies: Sequence[bytes]) -> List[Optional[Page]]:
        """Several pages' raw bodies at once: one JSON read and one shaping for all of them.

        Anything unusual (a body with line breaks, one that is not JSON, a problem in the data,
        quarantine on) falls back to :meth:`page` for each, which names the page of a problem.
        A body that is not JSON at all comes back as None: the caller fetches that page again.
        """
        if not self.quarantine and len(bodies) > 1:
            try:
                return list(self._pages_at_once(url, numbers, bodies))
            except (pa.ArrowInvalid, pa.ArrowTypeError, UnexpectedResponseError, ValueError,
                    _Misfit):
                pass
        out: List[Optional[Page]] = []
        for number, content in zip(numbers, bodies):
            try:
                body = self.decode(content)
            except ValueError:
                out.append(None)
                continue
            out.append(self.page(url, number, body))
        return out

    def _pages_at_once(
        self, url: str, numbers: Sequence[int], bodies: Sequence[bytes]
    ) -> Iterator[Page]:
        if any(b"\n" in content for content in bodies):
            raise ValueError("one JSON document per line only")
        table = self._read_json(b"\n".join(bodies))
        if table.num_rows != len(bodies):
            raise ValueError("not one JSON object per page")
        data = table.column("data").combine_chunks()
        if data.null_count:
            raise ValueError("`data` missing")
        metas = [self._meta(url, n, m) for n, m in zip(numbers, table.column("meta").to_pylist())]
        lengths = pc.list_value_length(data).to_pylist()
        records = self._shape(data.flatten())
        start = 0
        for number, length, (total, last_page, served) in zip(numbers, lengths, metas):
            yield Page(number, records.slice(start, length), total, last_page,
                       served_per_page=served)
            start += length

    def page(self, url: str, number: int, body: Union[pa.Table, Any]) -> Page:
        """Checks the documented envelope ``{"data": [...], "meta": {...}}`` and shapes records.

        Raises:
            UnexpectedResponseError: naming the resource, the page and what is wrong.
        """
        if isinstance(body, pa.Table):
            data = body.column("data").chunk(0)
            meta = body.column("meta")[0].as_py()
            if data.null_count:
                raise self._envelope_error(url, number, "`data` is missing or not a list")
            total, last_page, served = self._meta(url, number, meta)
            try:
                return self._without_keyless(Page(
                    number, self._shape(data.flatten()), total, last_page, served_per_page=served))
            except _Misfit:  # sorted out value by value below
                body = {"data": data.flatten().to_pylist(), "meta": meta}
        if not isinstance(body, dict):
            raise self._envelope_error(
                url, number, f"expected a JSON object, got {type(body).__name__}")
        data, meta = body.get("data"), body.get("meta")
        if not isinstance(data, list):
            raise self._envelope_error(url, number, "`data` is missing or not a list")
        total, last_page, served = self._meta(url, number, meta)
        if self.quarantine:
            return self._sorted_out(number, data, total, last_page, served)
        for index, record in enumerate(data):
            if not isinstance(record, dict):
                raise self._envelope_error(
                    url, number, f"record {index} is a {type(record).__name__}, not an object")
        return Page(number, self.privacy.table(to_arrow(
            self.resource, number, data, self.columns, self.schema, self.types)),
                    total, last_page, served_per_page=served)

    def _without_keyless(self, page: Page) -> Page:
        """With quarantine on, records without id or created_at are set aside (else the run
        stops on them, naming the record)."""
        if not self.quarantine:
            return page
        table, rejected = set_aside_keyless(self.resource, page.number, page.records)
        if not rejected:
            return page
        return Page(page.number, table, page.total, page.last_page, rejected,
                    served_per_page=page.served_per_page)

    def _sorted_out(self, number: int, data: List[Any], total: int, last_page: int,
                    served: int) -> Page:
        table, rejected = sort_out(self.resource, number, data, self.columns, self.schema,
                                   self.types, self.privacy)
        return Page(number, table, total, last_page, rejected, served_per_page=served)

    def _meta(self, url: str, number: int, meta: Any) -> Tuple[int, int, int]:
        """``(total, last_page, per_page)``; ``per_page`` 0 when the server left it out (the
        documented envelope has it; without it, the size asked for stands in)."""
        if not isinstance(meta, Mapping):
            raise self._envelope_error(url, number, "`meta` is missing or not an object")
        total, last_page = meta.get("total"), meta.get("last_page")
        if not (_is_int(total) and _is_int(last_page)):
            raise self._envelope_error(
                url, number, "`meta.total` and `meta.last_page` must be integers")
        served = meta.get("per_page")
        if served is not None and not (_is_int(served) and served >= 1):
            raise self._envelope_error(
                url, number, f"`meta.per_page` must be a positive integer, not {served!r}")
        return int(total), int(last_page), int(served or 0)

    def _envelope_error(self, url: str, number: int, problem: str) -> UnexpectedResponseError:
        return UnexpectedResponseError(
            f"Rackwave `{self.resource}` page {number} from {url} is not the documented list "
            f"envelope: {problem}. Check base_url points at the Rackwave API v1."
        )

    def _shape(self, records: pa.StructArray) -> pa.Table:
        """The declared columns (typed by the JSON reader), then undocumented ones.

        Raises:
            _Misfit: a declared timestamp column holds text that is not a timestamp; the caller
                takes the value-by-value path, which puts it in a variant column (or names it).
        """
        by_name: Dict[str, pa.Array] = {}
        for field, array in zip(records.type, records.flatten()):
            if pa.types.is_struct(field.type):
                for sub, sub_array in zip(field.type, array.flatten()):
                    by_name[f"{field.name}{SEPARATOR}{sub.name}"] = sub_array
            else:
                by_name[field.name] = array
        arrays: List[pa.Array] = []
        fields: List[pa.Field] = []
        for field in self.schema:
            array = by_name.pop(field.name)
            if pa.types.is_timestamp(field.type):
                try:
                    array = pc.cast(array, field.type, memory_pool=POOL)
                except pa.ArrowInvalid:
                    raise _Misfit(field.name) from None
            arrays.append(array)
            fields.append(field)
        for name, array in by_name.items():  # undocumented fields, in the API's order
            if array.null_count == len(array):
                continue
            column = self.types.column_for(name, arrow_type(array.type))
            arrays.append(array)
            fields.append(pa.field(column, array.type))
        return self.privacy.table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)))


def check_page(resource: str, page: Page) -> Page:
    """The contract a scan relies on: every record has an ``id`` and a ``created_at``, and the
    page is ordered by ``created_at`` descending as documented.

    Raises:
        UnexpectedResponseError: naming the resource, the page and the record.
    """
    for column, values in ((S.PRIMARY_KEY, page.ids), (S.CURSOR_FIELD, page.created_us)):
        if None in values or "" in values:  # an empty id is no id: several would merge into one
            first = next(i for i, value in enumerate(values) if value is None or value == "")
            raise UnexpectedResponseError(
                f"Rackwave `{resource}` page {page.number}, record {first}: it has "
                f"no `{column}`, so it cannot be loaded incrementally and merged. The API broke "
                "its contract."
            )
    ts = page.created_us
    for index in range(1, len(ts)):
        # no None is left in ``ts`` (checked above), which the list's type cannot say
        if ts[index] > ts[index - 1]:  # type: ignore[operator]
            raise UnexpectedResponseError(
                f"Rackwave `{resource}` page {page.number} is not ordered by `{S.CURSOR_FIELD}` "
                f"descending as documented (record {page.ids[index]}); incremental loading "
                "depends on that order."
            )
    return page
