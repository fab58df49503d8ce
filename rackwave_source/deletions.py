"""The ``flag`` mode of ``deleted_records``: keep records gone from the API, marked as deleted.

A full scan replaces the table with what the API returned. In ``flag`` mode it also re-emits the
rows the destination already holds whose id the scan did not see, with ``_rackwave_deleted_at``
set to when a full scan first missed them, so analysts keep history and can filter
``WHERE _rackwave_deleted_at IS NULL`` for the live view. The rows come from the destination
itself (through ``pipeline.dataset()``, or ``lake.py`` for lake files), so this works on every
destination dlt can read back.

It re-reads the whole table from the destination at every full scan, which is why it is a setting
and not the default. The ids the scan kept are known as 64-bit hashes (see ``gaps.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, Iterator, Set

import dlt
import pyarrow as pa
import pyarrow.compute as pc

from dlt.common.json import json
from dlt.common.schema.typing import TColumnSchema

from . import settings as S
from .gaps import contains, id_hashes
from .lake import is_lake, lake_table

DELETED_AT = "_rackwave_deleted_at"
DELETED_AT_COLUMN: Dict[str, TColumnSchema] = {
    DELETED_AT: {"data_type": "timestamp", "nullable": True}
}
_CHUNK = 10_000


def missing_rows(resource: str, seen: Any, flagged_at: datetime) -> Iterator[pa.Table]:
    """Yields, in chunks, the destination's rows of ``resource`` whose id the scan did not keep.

    ``seen``: the sorted id hashes of the scan (``GapWatch.kept_sorted()``).
    """
    pipeline = dlt.current.pipeline()
    schema = pipeline.schemas.get(S.SOURCE_NAME) if S.SOURCE_NAME in pipeline.schemas else None
    if schema is None or resource not in schema.tables:
        return
    table_schema = schema.tables[resource]
    if not table_schema.get("x-normalizer", {}).get("seen-data"):
        return  # declared but never loaded: nothing to carry over
    json_columns = {
        name for name, column in table_schema.get("columns", {}).items()
        if column.get("data_type") == "json"
    }
    for chunk in _loaded_rows(pipeline, resource):
        gone = chunk.filter(pa.array(~contains(seen, id_hashes(chunk))))
        if gone.num_rows:
            yield _as_deleted(gone, json_columns, flagged_at)


def _loaded_rows(pipeline: Any, resource: str) -> Iterator[pa.Table]:
    """The table as loaded, in chunks (lake tables without SQL, see ``lake.py``)."""
    if is_lake(pipeline):
        data = lake_table(pipeline, resource)
        for batch in data.to_batches(batch_size=_CHUNK) if data is not None else ():
            if batch.num_rows:
                yield pa.Table.from_batches([batch])
        return
    relation = pipeline.dataset(schema=S.SOURCE_NAME)[resource]
    yield from relation.iter_arrow(chunk_size=_CHUNK)


def _as_deleted(table: pa.Table, json_columns: Set[str], flagged_at: datetime) -> pa.Table:
    """The rows as they were loaded, minus dlt's own columns, with the deletion time set."""
    table = table.drop_columns([n for n in table.column_names if n.startswith("_dlt_")])
    for name in json_columns & set(table.column_names):
        column = table.column(name)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            # JSON read back as text (DuckDB, Postgres): make it the list it was loaded as
            values = [None if v is None else json.loads(v) for v in column.to_pylist()]
            table = table.set_column(
                table.schema.get_field_index(name), name, pa.array(values, pa.list_(pa.string()))
            )
    when = pa.scalar(flagged_at, pa.timestamp("us", tz="UTC"))
    if DELETED_AT in table.column_names:
        index = table.schema.get_field_index(DELETED_AT)
        current = table.column(DELETED_AT).cast(pa.timestamp("us", tz="UTC"))
        table = table.set_column(index, DELETED_AT, pc.fill_null(current, when))
    else:
        table = table.append_column(DELETED_AT, pa.array([flagged_at] * table.num_rows, when.type))
    return table
