"""Rows read back from the warehouse, made again in the shape the source yields them.

Each warehouse hands Arrow back in a shape of its own:

* DuckDB and Postgres: one Table, JSON columns as text;
* BigQuery: RecordBatches, one page of query results at a time (the first may be empty), JSON
  as text or as an extension type over text;
* Snowflake: timestamps in nanoseconds, integers as ``decimal128(19, 0)``, VARIANT as text,
  names as the warehouse stores them (upper case);
* Delta and parquet files: ids as ``string_view`` or ``large_string``.

Whatever the source reads back (the rows a full scan compares, the rows it loads again) goes
through :func:`conformed`, which reads every chunk the warehouse sends and casts each to the
declared columns: their names, their Arrow types, dlt's own columns left out. The rest of the
source then sees one shape on every warehouse, the one it loaded.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

import pyarrow as pa

from dlt.common.json import json

from rackwave_source.rows.arrow_shape import ARROW_TYPES

Chunk = Union[pa.Table, pa.RecordBatch]

#: dlt data types -> the Arrow type the source yields them as (``arrow_shape.ARROW_TYPES`` for
#: the API's fields, plus what dlt's own and the source's bookkeeping columns use)
DECLARED_TYPES = {
    **ARROW_TYPES,
    "bigint": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
}


class ReadBackError(Exception):
    """A column the warehouse handed back cannot be made the type it was loaded as."""


def conformed(chunks: Iterable[Chunk], columns: Mapping[str, Any]) -> Iterator[pa.Table]:
    """Every non-empty chunk of a query's result, cast to ``columns`` (dlt column schemas by
    name): all pages, whatever the first one held."""
    for chunk in chunks:
        if chunk is not None and chunk.num_rows:
            yield conform(chunk, columns)


def gathered(chunks: Iterable[Chunk], columns: Mapping[str, Any],
             wanted: Optional[Sequence[str]] = None) -> pa.Table:
    """All of a result in one table (see :func:`conformed`); with no rows, an empty table of the
    ``wanted`` declared columns (all of them by default)."""
    parts = list(conformed(chunks, columns))
    if not parts:
        names = [n for n in (wanted or columns) if n in columns and not n.startswith("_dlt_")]
        return pa.schema([_field(n, declared_type(columns[n]) or pa.string(), columns[n])
                          for n in names]).empty_table()
    return pa.concat_tables(parts, promote_options="permissive")


def conform(chunk: Chunk, columns: Mapping[str, Any]) -> pa.Table:
    """One chunk with the declared names and types; columns not declared are kept as they are
    (a field the schema has not seen yet), dlt's own columns are dropped."""
    table = pa.Table.from_batches([chunk]) if isinstance(chunk, pa.RecordBatch) else chunk
    by_folded = {name.casefold(): name for name in columns}
    fields: List[pa.Field] = []
    arrays: List[pa.ChunkedArray] = []
    for got, values in zip(table.column_names, table.columns):
        name = got if got in columns else by_folded.get(got.casefold(), got)
        if name.startswith("_dlt_"):
            continue
        column = columns.get(name)
        arrays.append(values if column is None else _cast(name, values, column))
        fields.append(_field(name, arrays[-1].type, column))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _field(name: str, kind: pa.DataType, column: Optional[Mapping[str, Any]]) -> pa.Field:
    """The field as the source declares it. Warehouses hand every column back nullable; a
    non-nullable column (the id, the cursor) yielded so would differ from the schema's hints,
    which dlt reports as a WARNING on every full scan that loads rows again."""
    nullable = True if column is None else column.get("nullable", True) is not False
    return pa.field(name, kind, nullable=nullable)


def declared_type(column: Mapping[str, Any]) -> Optional[pa.DataType]:
    return DECLARED_TYPES.get(str(column.get("data_type")))


def _cast(name: str, values: pa.ChunkedArray, column: Mapping[str, Any]) -> pa.ChunkedArray:
    if isinstance(values.type, pa.ExtensionType):  # e.g. BigQuery's JSON: text underneath
        values = pa.chunked_array([c.storage for c in values.chunks], values.type.storage_type)
    if column.get("data_type") == "json":
        return _json(name, values)
    wanted = declared_type(column)
    if wanted is None or values.type == wanted:
        return values
    try:
        return values.cast(wanted)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ReadBackError(
            f"The warehouse handed column `{name}` back as {values.type}, which does not cast to "
            f"{wanted}, the type it was loaded as ({exc}). The table was changed outside the "
            "pipeline: restore the column's type, or load again with --full-refresh."
        ) from exc


def _json(name: str, values: pa.ChunkedArray) -> pa.ChunkedArray:
    """JSON read back as the values it was loaded as: text (DuckDB, Postgres, BigQuery,
    Snowflake's VARIANT) decoded; lists and structs (lake files) kept."""
    kind = values.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or str(kind) == "string_view"):
        return values
    decoded = [None if v is None else json.loads(v) for v in values.to_pylist()]
    try:
        return pa.chunked_array([pa.array(decoded, ARROW_TYPES["json"])])
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not a list of strings: a field added later
        try:
            return pa.chunked_array([pa.array(decoded)])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ReadBackError(f"Column `{name}` holds JSON of mixed shapes ({exc}).") from exc
