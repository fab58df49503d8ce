"""Page records → Arrow tables, the fast path through dlt.

dlt turns dicts into rows one value at a time (normalize) and loads DuckDB with INSERT
statements; handed Arrow tables it writes parquet and the destination bulk-loads it. On 110,000
records that took the load from 35 s to a few seconds (see benchmarks/README.md). The table
shape stays the one declared in ``schema.py``: nested ``address`` becomes ``address__*`` columns,
``tags`` a list column that dlt loads as JSON, timestamps UTC.

Fields the API adds later become extra columns with Arrow's inferred type (nested objects
flattened one level, like dlt does for dicts); an extra field that is null on a whole page is
simply absent from that page's table.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from dlt.common.json import json

from . import settings as S
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
        else:
            columns[key] = values
    return columns


def to_arrow(
    resource: str, page: int, records: Sequence[Dict[str, Any]], columns: TColumns,
    schema: pa.Schema,
) -> pa.Table:
    """Builds one page's table; a value of the wrong type names the resource, page and field.

    Raises:
        UnexpectedResponseError: a documented field holds a value of another type.
    """
    documented = {name.split(_SEPARATOR, 1)[0] for name in columns}
    arrays: List[pa.Array] = []
    fields: List[pa.Field] = []
    for field in schema:
        values = _values(records, field.name)
        try:
            if pa.types.is_timestamp(field.type):
                array = pc.cast(pa.array(values, pa.string()), field.type)
            else:
                array = pa.array(values, field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise UnexpectedResponseError(
                f"Rackwave `{resource}` page {page}: field `{field.name}` holds a value that is "
                f"not {columns[field.name]['data_type']} ({_first_line(exc)})."
            ) from None
        arrays.append(array)
        fields.append(field)
    for name, values in _extra_columns(records, documented).items():
        if all(v is None for v in values):
            continue
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # mixed types in an undocumented field: keep every value, as JSON text
            array = pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
        arrays.append(array)
        fields.append(pa.field(name, array.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


class ArrowBatch:
    """Gathers page tables into items of about ``rows`` rows before they go to dlt.

    dlt validates a table schema for every Arrow item it extracts (about 6 ms each here), so one
    item per 100-record page spent more time in dlt than in the download; thousands of rows per
    item make that negligible while memory stays bounded.
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
