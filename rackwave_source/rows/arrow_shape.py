"""The Arrow shape of a table: declared columns, variants for drift, and batches handed to dlt.

dlt turns dicts into rows one value at a time (normalize) and loads DuckDB with INSERT
statements; handed Arrow tables it writes parquet and the destination bulk-loads it. On 110,000
records that took a load from 35 s to a few seconds (see benchmarks/README.md).

The table shape is the one declared in ``schema.py``: nested ``address`` becomes ``address__*``
columns, ``tags`` a list column that dlt loads as JSON, timestamps UTC. Fields the API adds later
become extra columns with Arrow's inferred type (nested objects flattened one level, like dlt does
for dicts); an extra field that is null on a whole page is absent from that page's table.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import pyarrow as pa
import pyarrow.compute as pc

from dlt.common.json import json

from rackwave_source import settings as S
from rackwave_source.rows.drift import ColumnTypes, python_type, variant_column
from rackwave_source.exceptions import UnexpectedResponseError
from rackwave_source.schema import TColumns

#: Pages are decoded on many threads at once. Arrow's default allocator (mimalloc) keeps memory
#: per thread: with 16 fetching threads peak RSS grew, at the same speed, against the system
#: allocator (benchmarks/README.md).
POOL = pa.system_memory_pool()

SEPARATOR = "__"
ARROW_TYPES = {
    "text": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    # the only JSON columns are tags: arrays of strings
    "json": pa.list_(pa.string()),
}


def arrow_schema(columns: TColumns) -> pa.Schema:
    """The Arrow schema of the declared columns, nullability included (dlt compares them)."""
    return pa.schema(
        [
            pa.field(name, ARROW_TYPES[str(column["data_type"])],
                     nullable=column.get("nullable", True))
            for name, column in columns.items()
        ]
    )


def _values(records: Sequence[Dict[str, Any]], name: str) -> List[Any]:
    if SEPARATOR not in name:
        return [record.get(name) for record in records]
    parent, child = name.split(SEPARATOR, 1)
    out = []
    for record in records:
        nested = record.get(parent)
        out.append(nested.get(child) if isinstance(nested, dict) else None)
    return out


def _extra_columns(
    records: Sequence[Dict[str, Any]], documented: Set[str]
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
                columns[f"{key}{SEPARATOR}{sub}"] = [
                    v.get(sub) if isinstance(v, dict) else None for v in values
                ]
            values = [None if isinstance(v, dict) else v for v in values]
        if any(v is not None for v in values):
            columns[key] = values
    return columns


def _nested_extras(records: Sequence[Dict[str, Any]], columns: TColumns) -> Dict[str, List[Any]]:
    """What a flattened object (``address``) holds beyond its declared ``address__*`` columns,
    so nothing of it is dropped: a field the API added inside it becomes its own
    ``address__<field>`` column (as dlt flattens objects, and as pages read by pyarrow get it),
    and a value that is not an object is kept whole in a variant column (``address__v_text``)."""
    children: Dict[str, Set[str]] = {}
    for name in columns:
        if SEPARATOR in name:
            parent, child = name.split(SEPARATOR, 1)
            children.setdefault(parent, set()).add(child)
    out: Dict[str, List[Any]] = {}
    for parent, declared in children.items():
        for index, record in enumerate(records):
            for name, value in _beyond(parent, declared, record.get(parent)):
                out.setdefault(name, [None] * len(records))[index] = value
    return out


def _beyond(parent: str, declared: Set[str], nested: Any) -> List[Tuple[str, Any]]:
    """(column, value) of one record's object that its declared sub-columns do not take."""
    if nested is None:
        return []
    if not isinstance(nested, dict):
        return [(variant_column(parent, python_type(nested)), nested)]
    return [(f"{parent}{SEPARATOR}{key}", value) for key, value in nested.items()
            if key not in declared and value is not None]


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
    documented = {name.split(SEPARATOR, 1)[0] for name in columns}
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
    extras = {**_nested_extras(records, columns), **_extra_columns(records, documented)}
    for name, values in extras.items():
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




def empty_table(columns: TColumns, extra: Optional[TColumns] = None) -> pa.Table:
    """No rows, every declared column: what a run yields first, so that the table exists with its
    declared columns before its first record.

    An Arrow table, not ``dlt.mark.materialize_table_schema()``: the latter goes through dlt's JSON
    path, which adds ``_dlt_id NOT NULL`` to the table, and the Arrow rows of every later run
    (which have no ``_dlt_id``) then fail the load.
    """
    return arrow_schema({**columns, **(extra or {})}).empty_table()


def json_as_text(table: pa.Table) -> Tuple[pa.Table, TColumns]:
    """List and struct columns as JSON text, and the ``json`` hints for them.

    For destinations whose loader writes CSV (Postgres, dlt's choice for Arrow items there):
    CSV cannot carry Arrow lists, and Postgres' COPY parses the text into the ``jsonb`` column.
    The hint keeps a list field the API adds later ``jsonb`` here as it is ``json`` elsewhere.
    """
    converted: TColumns = {}
    for index, field in enumerate(table.schema):
        if pa.types.is_list(field.type) or pa.types.is_struct(field.type):
            values = [None if v is None else json.dumps(v) for v in table.column(index).to_pylist()]
            table = table.set_column(index, field.name, pa.array(values, pa.string()))
            converted[field.name] = {"data_type": "json"}
    return table, converted
