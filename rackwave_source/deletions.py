"""The ``flag`` mode of ``deleted_records``: keep records gone from the API, marked as deleted.

A full scan replaces the table with what the API returned. In ``flag`` mode it also re-emits the
rows the destination already holds whose id the scan did not see, with ``_rackwave_deleted_at``
set to when a full scan first missed them, so analysts keep history and can filter
``WHERE _rackwave_deleted_at IS NULL`` for the live view. The rows come from the destination
itself (through ``pipeline.dataset()``), so this works on every destination dlt can read back.

It costs memory for the ids seen by the scan (about 100 bytes per record), which is why it is a
setting and not the default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, Iterator, List, Set

import dlt
import pyarrow as pa
import pyarrow.compute as pc

from dlt.common.json import json
from dlt.common.schema.typing import TColumnSchema

from . import settings as S

DELETED_AT = "_rackwave_deleted_at"
DELETED_AT_COLUMN: Dict[str, TColumnSchema] = {
    DELETED_AT: {"data_type": "timestamp", "nullable": True}
}
_CHUNK = 10_000


def missing_rows(resource: str, seen: Set[str], flagged_at: datetime) -> Iterator[List[Dict[str, Any]]]:
    """Yields, in chunks, the destination's rows of ``resource`` whose id is not in ``seen``."""
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
    seen_ids = pa.array(sorted(seen), type=pa.string())
    relation = pipeline.dataset(schema=S.SOURCE_NAME)[resource]
    for chunk in relation.iter_arrow(chunk_size=_CHUNK):
        gone = chunk.filter(pc.invert(pc.is_in(chunk.column(S.PRIMARY_KEY), value_set=seen_ids)))
        if gone.num_rows:
            yield [_as_deleted(row, json_columns, flagged_at) for row in gone.to_pylist()]


def _as_deleted(row: Dict[str, Any], json_columns: Set[str], flagged_at: datetime) -> Dict[str, Any]:
    record = {k: v for k, v in row.items() if not k.startswith("_dlt_")}
    for name in json_columns:
        value = record.get(name)
        if isinstance(value, (str, bytes)):
            record[name] = json.loads(value)
    if record.get(DELETED_AT) is None:
        record[DELETED_AT] = flagged_at
    return record
