"""``bad_records = "quarantine"``: records that break the API contract, set aside with the reason.

Every decision about quarantine lives here: which records go (no ``id`` or ``created_at``, not an
object, a key field of the wrong type), what is kept of them, and the item that carries them to
the ``rackwave_quarantine`` table, a variant of the resource's table. With ``bad_records =
"fail"`` (the default) the same problems stop the run instead, naming the resource, the page and
the record.

One row per distinct record. A bad record stays in the API, and every run that reads its page
reads it again: the table is merged on ``record_key``, a hash of the resource and the record's
content (after hashing and excluding columns), so it holds each record once however many runs
read it, with ``first_seen_at`` and ``last_seen_at``. A changed record is another row. When a
record was first seen is kept in the resource's state (:class:`QuarantineLedger`, committed with
the load like the cursor), since a merge replaces the whole row. The same ledger tells the run's
reconciliation how many records the API holds that the table of records does not
(``warehouse/verdicts.py``): a full scan replaces it with what it saw, an incremental run adds to it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pyarrow as pa
import pyarrow.compute as pc

from dlt.common.json import json

from rackwave_source import settings as S
from rackwave_source.rows.arrow_shape import to_arrow
from rackwave_source.rows.drift import ColumnTypes
from rackwave_source.exceptions import UnexpectedResponseError
from rackwave_source.rows.privacy import Privacy
from rackwave_source.schema import TColumns

QUARANTINE_TABLE = "rackwave_quarantine"
QUARANTINE_KEY = "record_key"


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


def set_aside_keyless(resource: str, page: int, table: pa.Table) -> Tuple[pa.Table, List[Dict[str, Any]]]:
    """Splits off the records without ``id`` or ``created_at`` (else the run stops on them)."""
    ids = table.column(S.PRIMARY_KEY)
    no_id = pc.or_(pc.is_null(ids), pc.fill_null(pc.equal(ids, ""), True))  # "" is no id
    missing = pc.or_(no_id, pc.is_null(table.column(S.CURSOR_FIELD)))
    if not pc.any(missing).as_py():
        return table, []
    flags = missing.to_pylist()
    rejected = [
        quarantine_row(resource, page, i, row, f"no `{S.PRIMARY_KEY}` or `{S.CURSOR_FIELD}`")
        for i, (row, bad) in enumerate(zip(table.to_pylist(), flags)) if bad
    ]
    return table.filter(pc.invert(missing)), rejected


def sort_out(
    resource: str, page: int, data: List[Any], columns: TColumns, schema: pa.Schema,
    types: ColumnTypes, privacy: Optional[Privacy] = None,
) -> Tuple[pa.Table, List[Dict[str, Any]]]:
    """Keeps the records that fit the declared shape; the others become quarantine rows, their
    hashed and excluded columns treated as the table's (``privacy.py``)."""
    privacy = privacy or Privacy()
    good: List[Dict[str, Any]] = []
    rejected: List[Dict[str, Any]] = []
    for index, record in enumerate(data):
        reason = _problem(resource, page, record, columns, schema, types)
        if reason is None:
            good.append(record)
        else:
            rejected.append(quarantine_row(resource, page, index, privacy.record(record), reason))
    return privacy.table(to_arrow(resource, page, good, columns, schema, types)), rejected


def _problem(
    resource: str, page: int, record: Any, columns: TColumns, schema: pa.Schema,
    types: ColumnTypes,
) -> Optional[str]:
    if not isinstance(record, dict):
        return f"a {type(record).__name__}, not an object"
    for key in (S.PRIMARY_KEY, S.CURSOR_FIELD):
        if not isinstance(record.get(key), str) or not record.get(key):
            return f"no `{key}`"
    try:
        to_arrow(resource, page, [record], columns, schema, types)
    except UnexpectedResponseError as exc:
        return str(exc)
    return None


