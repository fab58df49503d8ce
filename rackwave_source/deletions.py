"""Records a full scan did not see: deleted from the API, or only missed? Confirmed, then applied.

A full scan replaces the table with what it read. A warehouse row whose id the scan did not see
is a *candidate*: its record was deleted, or it was not seen. A quiet scan (``coverage.py``)
proves the first: nothing changed while it paged, so what it did not see is gone. Otherwise each
candidate is looked up through the API's ``search`` parameter (by its email, or by its name when
it has none):

* found: the record is still there; it is loaded as the API has it now;
* every search came back without it: it is gone; ``deleted_records = "delete"`` drops it with the
  rest of the old table, ``"flag"`` keeps the row with ``_rackwave_deleted_at`` set;
* no search can tell (no email or name, or more matches than a few pages): it is kept as loaded,
  and the next full scan asks again.

So a record the API still holds is never removed nor flagged on the strength of its absence from
a scan that may have missed it. Lookups cost one request per candidate (deletions since the last
full scan, plus any record the scan missed), never one per record of the account. Rows already
flagged stay flagged without a lookup: a deleted id does not come back.

The warehouse's rows are read back in chunks (``pipeline.dataset()``, or ``lake.py`` for lake
files) only when there is something to decide: after a scan that was not quiet, or in flag mode.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

import dlt
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dlt.common.json import json
from dlt.common.schema.typing import TColumnSchema

from . import settings as S
from .endpoint import ListEndpoint, LookupInconclusive
from .lake import is_lake, lake_table
from .scan import Scan, id_hash

DELETED_AT = "_rackwave_deleted_at"
DELETED_AT_COLUMN: Dict[str, TColumnSchema] = {
    DELETED_AT: {"data_type": "timestamp", "nullable": True}
}
_CHUNK = 10_000


@dataclass
class DeletionCounts:
    """What the reconciliation decided (the run record reports it)."""

    candidates: int = 0  # loaded rows the scan did not see (not counting rows flagged before)
    confirmed: int = 0  # of those, gone from the API (dropped, or flagged now)
    still_there: int = 0  # of those, found by a lookup: reloaded as they are now
    undecided: int = 0  # of those, no lookup could tell: kept as loaded
    lookups: int = 0  # records looked up


def reconcile(
    endpoint: ListEndpoint,
    scan: Scan,
    lookup_fields: Sequence[Tuple[str, ...]],
    flag: bool,
    when: datetime,
    counts: DeletionCounts,
    concurrency: int = 1,
) -> Iterator[pa.Table]:
    """Yields the rows a full scan's replace must also carry (see the module docstring)."""
    if scan.quiet and not flag:
        return  # proven: every unseen row is gone, and the replace drops it
    loaded = _Loaded.of(endpoint.resource)
    if loaded is None:
        return
    seen = np.sort(np.frombuffer(scan.seen, dtype=np.int64))
    for chunk in loaded.chunks():
        unseen = chunk.filter(pa.array(~_contains(seen, _hashes(chunk))))
        if not unseen.num_rows:
            continue
        flagged_before = _flagged(unseen)
        if flag and flagged_before is not None:
            yield loaded.as_deleted(unseen.filter(flagged_before), when)
            unseen = unseen.filter(pc.invert(flagged_before))
        counts.candidates += unseen.num_rows
        gone, kept = _decide(endpoint, unseen, lookup_fields, scan.quiet, counts, loaded,
                             concurrency)
        counts.confirmed += gone.num_rows
        yield from kept
        if flag and gone.num_rows:
            yield loaded.as_deleted(gone, when)


def _decide(
    endpoint: ListEndpoint, rows: pa.Table, lookup_fields: Sequence[Tuple[str, ...]],
    quiet: bool, counts: DeletionCounts, loaded: "_Loaded", concurrency: int,
) -> Tuple[pa.Table, List[pa.Table]]:
    """Splits candidates into the confirmed gone and the tables to load instead. Lookups run on
    up to ``concurrency`` threads, like a scan's pages."""
    if quiet:
        return rows, []

    def look(row: Dict[str, Any]) -> Union[pa.Table, None, LookupInconclusive]:
        try:
            return endpoint.lookup(str(row[S.PRIMARY_KEY]), _terms(row, lookup_fields))
        except LookupInconclusive as exc:
            return exc

    gone: List[int] = []
    kept: List[pa.Table] = []
    undecided: List[int] = []
    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="rackwave-lookup") as pool:
        for index, found in enumerate(pool.map(look, rows.to_pylist())):
            counts.lookups += 1
            if isinstance(found, LookupInconclusive):
                undecided.append(index)
            elif found is None:
                gone.append(index)
            else:
                counts.still_there += 1
                kept.append(found)
    counts.undecided += len(undecided)
    if undecided:
        kept.append(loaded.as_loaded(rows.take(pa.array(undecided, pa.int64()))))
    return rows.take(pa.array(gone, pa.int64())), kept


def _terms(row: Dict[str, Any], lookup_fields: Sequence[Tuple[str, ...]]) -> List[str]:
    """The search term for one row: the first entry whose fields are all present, joined by a
    space (one request per lookup: the email finds the record when it has one)."""
    for fields in lookup_fields:
        values = [row.get(name) for name in fields]
        if all(isinstance(v, str) and v.strip() for v in values):
            return [" ".join(str(v).strip() for v in values)]
    return []


def _hashes(table: pa.Table) -> Any:
    ids = table.column(S.PRIMARY_KEY).to_pylist()
    return np.fromiter(map(id_hash, ids), dtype=np.int64, count=len(ids))


def _contains(sorted_hashes: Any, hashes: Any) -> Any:
    """Boolean mask: which of ``hashes`` are in ``sorted_hashes``."""
    if not len(sorted_hashes):
        return np.zeros(len(hashes), dtype=bool)
    positions = np.searchsorted(sorted_hashes, hashes)
    positions[positions >= len(sorted_hashes)] = 0
    return sorted_hashes[positions] == hashes


def _flagged(table: pa.Table) -> Optional[pa.Array]:
    if DELETED_AT not in table.column_names:
        return None
    return pc.is_valid(table.column(DELETED_AT))


@dataclass
class _Loaded:
    """The resource's table as the destination holds it."""

    pipeline: Any
    resource: str
    json_columns: Set[str]

    @classmethod
    def of(cls, resource: str) -> Optional["_Loaded"]:
        pipeline = dlt.current.pipeline()
        schema = pipeline.schemas.get(S.SOURCE_NAME) if S.SOURCE_NAME in pipeline.schemas else None
        if schema is None or resource not in schema.tables:
            return None
        table_schema = schema.tables[resource]
        if not (table_schema.get("x-normalizer") or {}).get("seen-data"):
            return None  # declared but never loaded: nothing to carry over
        json_columns = {
            name for name, column in table_schema.get("columns", {}).items()
            if column.get("data_type") == "json"
        }
        return cls(pipeline, resource, json_columns)

    def chunks(self) -> Iterator[pa.Table]:
        """The table as loaded, in chunks (lake tables without SQL, see ``lake.py``)."""
        if is_lake(self.pipeline):
            data = lake_table(self.pipeline, self.resource)
            for batch in data.to_batches(batch_size=_CHUNK) if data is not None else ():
                if batch.num_rows:
                    yield pa.Table.from_batches([batch])
            return
        relation = self.pipeline.dataset(schema=S.SOURCE_NAME)[self.resource]
        yield from relation.iter_arrow(chunk_size=_CHUNK)

    def as_loaded(self, table: pa.Table) -> pa.Table:
        """The rows as they were loaded, minus dlt's own columns, JSON columns as lists again."""
        table = table.drop_columns([n for n in table.column_names if n.startswith("_dlt_")])
        for name in self.json_columns & set(table.column_names):
            column = table.column(name)
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                # JSON read back as text (DuckDB, Postgres): make it the list it was loaded as
                values = [None if v is None else json.loads(v) for v in column.to_pylist()]
                table = table.set_column(table.schema.get_field_index(name), name,
                                         pa.array(values, pa.list_(pa.string())))
        return table

    def as_deleted(self, table: pa.Table, flagged_at: datetime) -> pa.Table:
        """The rows as loaded, with the deletion time set where it was not set before."""
        table = self.as_loaded(table)
        when = pa.scalar(flagged_at, pa.timestamp("us", tz="UTC"))
        if DELETED_AT in table.column_names:
            index = table.schema.get_field_index(DELETED_AT)
            current = table.column(DELETED_AT).cast(pa.timestamp("us", tz="UTC"))
            return table.set_column(index, DELETED_AT, pc.fill_null(current, when))
        return table.append_column(DELETED_AT,
                                   pa.array([flagged_at] * table.num_rows, when.type))
