"""Page bodies → Arrow tables, the fast path through dlt.

dlt turns dicts into rows one value at a time (normalize) and loads DuckDB with INSERT
statements; handed Arrow tables it writes parquet and the destination bulk-loads it. On 110,000
records that took a load from 35 s to a few seconds (see benchmarks/README.md).

A page body is parsed straight into Arrow by pyarrow's JSON reader (C++, with the declared
fields' types given, undocumented ones inferred), which costs a quarter of parsing into Python
objects and converting those. A body the reader refuses but that is valid JSON (e.g. pretty
printed, or a field of an unexpected type) takes the slow path through Python objects, whose
errors name the resource, the page and the field.

The table shape stays the one declared in ``schema.py``: nested ``address`` becomes
``address__*`` columns, ``tags`` a list column that dlt loads as JSON, timestamps UTC. Fields the
API adds later become extra columns with Arrow's inferred type (nested objects flattened one
level, like dlt does for dicts); an extra field that is null on a whole page is absent from that
page's table.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from dlt.common.json import json

from . import settings as S
from .drift import ColumnTypes, arrow_type, python_type
from .exceptions import UnexpectedResponseError
from .schema import TColumns

_SEPARATOR = "__"
_ARROW_TYPES = {
    "text": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    # the only JSON columns are tags: arrays of strings
    "json": pa.list_(pa.string()),
}


def arrow_schema(columns: TColumns) -> pa.Schema:
    """The Arrow schema of the declared columns, nullability included (dlt compares them)."""
    return pa.schema(
        [
            pa.field(name, _ARROW_TYPES[str(column["data_type"])],
                     nullable=column.get("nullable", True))
            for name, column in columns.items()
        ]
    )


def _values(records: Sequence[Dict[str, Any]], name: str) -> List[Any]:
    if _SEPARATOR not in name:
        return [record.get(name) for record in records]
    parent, child = name.split(_SEPARATOR, 1)
    out = []
    for record in records:
        nested = record.get(parent)
        out.append(nested.get(child) if isinstance(nested, dict) else None)
    return out


def _extra_columns(
    records: Sequence[Dict[str, Any]], documented: set
) -> Dict[str, List[Any]]:
    """Undocumented fields as columns; objects flattened one level, like dlt does for dicts."""
    keys: Dict[str, None] = {}
    for record in records:
        for key in record:
            if key not in documented:
                keys[key] = None
    columns: Dict[str, List[Any]] = {}
    for key in keys:
        values = [record.get(key) for record in records]
        if any(isinstance(v, dict) for v in values):
            subkeys: Dict[str, None] = {}
            for v in values:
                if isinstance(v, dict):
                    subkeys.update(dict.fromkeys(v))
            for sub in subkeys:
                columns[f"{key}{_SEPARATOR}{sub}"] = [
                    v.get(sub) if isinstance(v, dict) else None for v in values
                ]
            values = [None if isinstance(v, dict) else v for v in values]
        if any(v is not None for v in values):
            columns[key] = values
    return columns


def _fits(value: Any, arrow_type: pa.DataType) -> bool:
    """Whether one JSON value converts to a declared column's type."""
    if pa.types.is_timestamp(arrow_type):
        if not isinstance(value, str):
            return False
        try:
            pc.cast(pa.array([value], pa.string()), arrow_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return False
        return True
    if pa.types.is_list(arrow_type):
        return isinstance(value, list) and all(v is None or isinstance(v, str) for v in value)
    return isinstance(value, str)


def _declared_array(values: List[Any], arrow_type: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(arrow_type):
        return pc.cast(pa.array(values, pa.string()), arrow_type)
    if pa.types.is_list(arrow_type) and any(
        v is not None and not isinstance(v, list) for v in values
    ):
        raise pa.ArrowTypeError("expected an array")  # pyarrow would split a string into chars
    return pa.array(values, arrow_type)


def _any_array(values: List[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # objects of different shapes under one name: keep every value, as JSON text
        return pa.array([None if v is None else json.dumps(v) for v in values], pa.string())


def to_arrow(
    resource: str, page: int, records: Sequence[Dict[str, Any]], columns: TColumns,
    schema: pa.Schema, types: ColumnTypes,
) -> pa.Table:
    """Builds one page's table from Python objects, value by value.

    A value whose type differs from its column's goes to a variant column (see ``drift.py``),
    except in ``id`` and ``created_at``.

    Raises:
        UnexpectedResponseError: ``id`` or ``created_at`` holds a value of another type.
    """
    documented = {name.split(_SEPARATOR, 1)[0] for name in columns}
    count = len(records)
    arrays: Dict[str, pa.Array] = {}
    fields: List[pa.Field] = []
    variants: Dict[str, List[Any]] = {}

    def place(name: str, index: int, value: Any, data_type: str) -> None:
        column = types.column_for(name, data_type)
        variants.setdefault(column, [None] * count)[index] = value

    for field in schema:
        values = _values(records, field.name)
        try:
            array = _declared_array(values, field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            if field.name in (S.PRIMARY_KEY, S.CURSOR_FIELD):
                raise UnexpectedResponseError(
                    f"Rackwave `{resource}` page {page}: field `{field.name}` holds a value that "
                    f"is not {columns[field.name]['data_type']} ({_first_line(exc)})."
                ) from None
            declared = str(columns[field.name]["data_type"])
            for index, value in enumerate(values):
                if value is not None and not _fits(value, field.type):
                    values[index] = None
                    kind = python_type(value)
                    if kind == declared:  # e.g. a list, but not of strings: kept as JSON text
                        value, kind = json.dumps(value), "text"
                    place(field.name, index, value, kind)
            array = _declared_array(values, field.type)
        arrays[field.name] = array
        fields.append(field)
    for name, values in _extra_columns(records, documented).items():
        for index, value in enumerate(values):
            if value is not None:
                place(name, index, value, python_type(value))
    for name, values in variants.items():
        array = _any_array(values)
        arrays[name] = array
        fields.append(pa.field(name, array.type))
    return pa.Table.from_arrays([arrays[f.name] for f in fields], schema=pa.schema(fields))


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


class ArrowBatch:
    """Gathers page tables into items of about ``rows`` rows before they go to dlt.

    dlt validates a table schema and starts a parquet write for every Arrow item it extracts, so
    one item per 100-record page spent more time in dlt than in the download; 20,000 rows per item
    (a few MB) make that negligible while memory stays bounded (benchmarks/README.md).
    """

    def __init__(self, rows: int = S.ARROW_BATCH_ROWS) -> None:
        self.rows = rows
        self._tables: List[pa.Table] = []
        self._count = 0

    def add(self, table: pa.Table) -> Optional[pa.Table]:
        """Adds a page; returns a full batch when there is one."""
        self._tables.append(table)
        self._count += table.num_rows
        return self.flush() if self._count >= self.rows else None

    def flush(self) -> Optional[pa.Table]:
        """Returns what is gathered (or None) and starts a new batch."""
        if not self._tables:
            return None
        tables, self._tables, self._count = self._tables, [], 0
        if len(tables) == 1:
            return tables[0]
        # pages may differ in undocumented columns: missing ones become nulls
        return pa.concat_tables(tables, promote_options="default")


#: Pages are decoded on many threads at once. Arrow's default allocator (mimalloc) keeps memory
#: per thread: with 16 fetching threads, peak RSS grew by ~140 MB (412 MB against 267 MB with
#: the system allocator, at the same speed; benchmarks/README.md).
_POOL = pa.system_memory_pool()

_META = pa.struct([(k, pa.int64()) for k in ("total", "per_page", "current_page", "last_page")])


@dataclass(frozen=True)
class Page:
    """One validated page: its records as a table of the declared shape, and its meta.

    ``rejected`` holds the records set aside with ``bad_records = "quarantine"``, one row each
    for the quarantine table (see :func:`quarantine_row`).
    """

    number: int
    records: pa.Table
    total: int
    last_page: int
    rejected: List[Dict[str, Any]] = dataclass_field(default_factory=list)
    #: ``created_at`` as integer microseconds (UTC) and ``id``, one per record, as Python lists.
    #: Computed where the page is decoded (a fetching thread), so the single thread that consumes
    #: pages in order does no Arrow compute per page: each such call releases the GIL and then
    #: waits its turn behind the fetching threads to take it back.
    created_us: List[Optional[int]] = dataclass_field(init=False, repr=False)
    ids: List[Optional[str]] = dataclass_field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(  # frozen: set once, here
            self, "created_us", pc.cast(self.records.column(S.CURSOR_FIELD), pa.int64(), memory_pool=_POOL).to_pylist())
        object.__setattr__(self, "ids", self.records.column(S.PRIMARY_KEY).to_pylist())


QUARANTINE_TABLE = "rackwave_quarantine"


def quarantine_row(resource: str, page: int, index: int, record: Any, reason: str) -> Dict[str, Any]:
    """What the quarantine table keeps of a rejected record: where, why, and the record itself."""
    record_id = record.get(S.PRIMARY_KEY) if isinstance(record, dict) else None
    return {
        "resource": resource,
        "page": page,
        "record_index": index,
        "record_id": record_id if isinstance(record_id, str) else None,
        "reason": reason,
        "record": json.dumps(record),
    }


def _read_schema(columns: TColumns) -> pa.Schema:
    """The envelope's schema for pyarrow's JSON reader: declared fields typed, timestamps as text
    (cast afterwards, which accepts the ``Z`` suffix), nested objects as structs."""
    fields: Dict[str, Any] = {}
    for name, column in columns.items():
        kind = str(column["data_type"])
        arrow_type = pa.string() if kind == "timestamp" else _ARROW_TYPES[kind]
        if _SEPARATOR in name:
            parent, child = name.split(_SEPARATOR, 1)
            fields.setdefault(parent, {})[child] = arrow_type
        else:
            fields[name] = arrow_type
    record = pa.struct(
        [(k, pa.struct(list(v.items())) if isinstance(v, dict) else v) for k, v in fields.items()]
    )
    return pa.schema([("data", pa.list_(record)), ("meta", _META)])


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
    ) -> None:
        """``known_types``: the data type of each column the destination already has (from the
        dlt schema), so that a field that changed type since an earlier run is a variant."""
        self.resource = resource
        self.quarantine = quarantine
        self.columns = columns
        self.schema = arrow_schema(columns)
        self.types = ColumnTypes(
            {**(known_types or {}),
             **{name: str(column["data_type"]) for name, column in columns.items()}})
        self._documented = {name.split(_SEPARATOR, 1)[0] for name in columns}
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
            memory_pool=_POOL,
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
        for number, length, (total, last_page) in zip(numbers, lengths, metas):
            yield Page(number, records.slice(start, length), total, last_page)
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
            total, last_page = self._meta(url, number, meta)
            try:
                return self._without_keyless(
                    Page(number, self._shape(data.flatten()), total, last_page))
            except _Misfit:  # sorted out value by value below
                body = {"data": data.flatten().to_pylist(), "meta": meta}
        if not isinstance(body, dict):
            raise self._envelope_error(
                url, number, f"expected a JSON object, got {type(body).__name__}")
        data, meta = body.get("data"), body.get("meta")
        if not isinstance(data, list):
            raise self._envelope_error(url, number, "`data` is missing or not a list")
        total, last_page = self._meta(url, number, meta)
        if self.quarantine:
            return self._sorted_out(number, data, total, last_page)
        for index, record in enumerate(data):
            if not isinstance(record, dict):
                raise self._envelope_error(
                    url, number, f"record {index} is a {type(record).__name__}, not an object")
        return Page(number, to_arrow(self.resource, number, data, self.columns, self.schema,
                                     self.types),
                    total, last_page)

    def _without_keyless(self, page: Page) -> Page:
        """With quarantine on, records without id or created_at are set aside (else the row
        filter stops the run on them)."""
        if not self.quarantine:
            return page
        table = page.records
        missing = pc.or_(pc.is_null(table.column(S.PRIMARY_KEY)),
                         pc.is_null(table.column(S.CURSOR_FIELD)))
        if not pc.any(missing).as_py():
            return page
        flags = missing.to_pylist()
        rows = table.to_pylist()
        rejected = [
            quarantine_row(self.resource, page.number, i, row,
                           f"no `{S.PRIMARY_KEY}` or `{S.CURSOR_FIELD}`")
            for i, (row, bad) in enumerate(zip(rows, flags)) if bad
        ]
        return Page(page.number, table.filter(pc.invert(missing)), page.total, page.last_page,
                    rejected)

    def _sorted_out(self, number: int, data: List[Any], total: int, last_page: int) -> Page:
        """Keeps the records that fit the declared shape; the others go to quarantine."""
        good: List[Dict[str, Any]] = []
        rejected: List[Dict[str, Any]] = []
        for index, record in enumerate(data):
            reason = self._problem(number, record)
            if reason is None:
                good.append(record)
            else:
                rejected.append(quarantine_row(self.resource, number, index, record, reason))
        table = to_arrow(self.resource, number, good, self.columns, self.schema, self.types)
        return Page(number, table, total, last_page, rejected)

    def _problem(self, number: int, record: Any) -> Optional[str]:
        if not isinstance(record, dict):
            return f"a {type(record).__name__}, not an object"
        for key in (S.PRIMARY_KEY, S.CURSOR_FIELD):
            if not isinstance(record.get(key), str) or not record.get(key):
                return f"no `{key}`"
        try:
            to_arrow(self.resource, number, [record], self.columns, self.schema, self.types)
        except UnexpectedResponseError as exc:
            return str(exc)
        return None

    def _meta(self, url: str, number: int, meta: Any) -> Tuple[int, int]:
        if not isinstance(meta, Mapping):
            raise self._envelope_error(url, number, "`meta` is missing or not an object")
        total, last_page = meta.get("total"), meta.get("last_page")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (total, last_page)):
            raise self._envelope_error(
                url, number, "`meta.total` and `meta.last_page` must be integers")
        return int(total), int(last_page)  # type: ignore[arg-type]

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
                    by_name[f"{field.name}{_SEPARATOR}{sub.name}"] = sub_array
            else:
                by_name[field.name] = array
        arrays: List[pa.Array] = []
        fields: List[pa.Field] = []
        for field in self.schema:
            array = by_name.pop(field.name)
            if pa.types.is_timestamp(field.type):
                try:
                    array = pc.cast(array, field.type, memory_pool=_POOL)
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
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
