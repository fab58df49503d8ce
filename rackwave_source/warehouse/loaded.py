"""What the destination holds of a resource's table, read back through the running pipeline.

A full scan settles the rows it did not see (``deletions.py``) from what the destination itself
holds. SQL destinations are read through ``pipeline.dataset()``, lake tables through ``lake.py``;
whatever shape either hands back is made the shape the source loaded by ``readback.py``.
"""

from __future__ import annotations
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple
import dlt
import pyarrow as pa
import pyarrow.compute as pc
from rackwave_source import settings as S
from rackwave_source.timestamps import from_iso
from rackwave_source.dlt_internals import active_pipeline
from rackwave_source.warehouse.lake import is_lake, lake_table
from rackwave_source.warehouse.readback import conformed, gathered
from rackwave_source.warehouse.target import DELETED_AT, JsonAsText, dlt_quiet


_CHUNK = 10_000


_IDS_PER_QUERY = 1_000


_SQL_CLIENTS: Dict[Tuple[int, str], Any] = {}


def _extract_sql_client(pipeline: Any) -> Any:
    """One SQL client for every resource of one extract (making one resolves the destination's
    configuration, which is slow next to a query; each use opens and closes its own connection)."""
    try:
        load_id = str(dlt.current.load_package_state()["load_id"])
    except Exception:  # noqa: BLE001 - no package being extracted: no sharing
        return pipeline.sql_client(S.SOURCE_NAME)
    key = (id(pipeline), load_id)
    client = _SQL_CLIENTS.get(key)
    if client is None:
        _SQL_CLIENTS.clear()
        client = _SQL_CLIENTS[key] = pipeline.sql_client(S.SOURCE_NAME)
    return client


@dataclass
class LoadedTable:
    """A resource's table as the destination holds it."""

    pipeline: Any
    resource: str
    #: the table's columns as dlt's schema declares them: what read-back rows are cast to
    declared: Dict[str, Any]

    @property
    def columns(self) -> Set[str]:
        return set(self.declared)

    @classmethod
    def of(cls, resource: str, checked: bool = True) -> Optional["LoadedTable"]:
        """The table, or None when this pipeline never loaded it or the destination lacks it
        (``checked``: asked of the destination; else the caller's query finds out)."""
        pipeline = active_pipeline()
        if pipeline is None or pipeline.destination is None:
            return None
        schema = pipeline.schemas[S.SOURCE_NAME] if S.SOURCE_NAME in pipeline.schemas else None
        if schema is None or resource not in schema.tables:
            return None
        table_schema = schema.tables[resource]
        if not (table_schema.get("x-normalizer") or {}).get("seen-data"):
            return None  # declared but never loaded
        if checked and not table_exists(pipeline, resource):
            return None
        return cls(pipeline, resource, dict(table_schema.get("columns", {})))

    def keys(self, wanted: Sequence[str]) -> Iterator[pa.Table]:
        """The table's rows, only the ``wanted`` columns it has (on BigQuery, what a query is
        billed by), in chunks: every page of the result."""
        names = [name for name in wanted if name in self.columns]
        if is_lake(self.pipeline):
            data = lake_table(self.pipeline, self.resource)
            chunks = data.to_batches(columns=names, batch_size=_CHUNK) if data else ()
        else:
            relation = self.pipeline.dataset(schema=S.SOURCE_NAME)[self.resource]
            chunks = relation.select(*names).iter_arrow(chunk_size=_CHUNK)
        yield from conformed(chunks, self.declared)

    def census(self, since_iso: str) -> Tuple[int, Set[str]]:
        """The rows the table holds, flagged deletions aside, and the ids of those created at or
        after ``since_iso`` (an ISO timestamp this package wrote, inlined as a literal: a bound
        parameter makes DuckDB import pandas). One query: a round trip is what costs on a
        warehouse such as BigQuery."""
        if is_lake(self.pipeline):
            return self._lake_census(since_iso)
        from dlt.destinations.exceptions import DatabaseUndefinedRelation

        with _extract_sql_client(self.pipeline) as client:
            name = client.make_qualified_table_name(self.resource)
            key, cursor, deleted = (client.escape_column_name(c) for c in (
                S.PRIMARY_KEY, S.CURSOR_FIELD, DELETED_AT))
            live = f"{deleted} IS NULL" if DELETED_AT in self.columns else "1 = 1"
            try:
                rows = client.execute_sql(
                    f"SELECT {key}, CAST(NULL AS BIGINT) FROM {name} WHERE {live} AND "
                    f"{cursor} >= '{since_iso}' "
                    f"UNION ALL SELECT NULL, COUNT(*) FROM {name} WHERE {live}") or []
            except DatabaseUndefinedRelation:
                return 0, set()  # the destination lost the table
        count = next(int(n) for i, n in rows if n is not None)
        return count, {str(i) for i, n in rows if n is None}

    def _lake_census(self, since_iso: str) -> Tuple[int, Set[str]]:
        import pyarrow.dataset as ds

        data = lake_table(self.pipeline, self.resource)
        if data is None:
            return 0, set()
        live = ds.field(DELETED_AT).is_null() if DELETED_AT in self.columns else None
        since = pa.scalar(from_iso(since_iso), pa.timestamp("us", "UTC"))
        recent = ds.field(S.CURSOR_FIELD) >= since
        ids = data.to_table(columns=[S.PRIMARY_KEY],
                            filter=recent if live is None else live & recent)
        return (int(data.count_rows(filter=live)),
                {str(i) for i in ids.column(S.PRIMARY_KEY).to_pylist()})

    def rows(self, ids: List[str]) -> pa.Table:
        """Whole rows of these ids, made again as the source yields them (``readback.py``):
        every page of every query's result, cast to the declared columns."""
        if is_lake(self.pipeline):
            data = lake_table(self.pipeline, self.resource)
            assert data is not None  # ``of`` saw it
            wanted = pa.array(ids, pa.string())
            parts = (  # batch by batch: bounded memory (Delta's ids may be string_view)
                batch.filter(pc.is_in(pc.cast(batch.column(S.PRIMARY_KEY), pa.string()), wanted))
                for batch in data.to_batches(batch_size=_CHUNK)
            )
            return gathered(parts, self.declared)
        relation = self.pipeline.dataset(schema=S.SOURCE_NAME)[self.resource]
        chunks = (
            chunk
            for at in range(0, len(ids), _IDS_PER_QUERY)
            for chunk in relation.where(S.PRIMARY_KEY, "in", ids[at:at + _IDS_PER_QUERY])
            .iter_arrow(chunk_size=_CHUNK)
        )
        with dlt_quiet(JsonAsText):  # a side effect, listed in source.before_reading
            return gathered(chunks, self.declared)


def table_exists(pipeline: Any, table: str) -> bool:
    """Whether the destination has the table (one catalog lookup, or one listing on a lake)."""
    with pipeline.destination_client(S.SOURCE_NAME) as client:
        return any(columns for _, columns in client.get_storage_tables([table]))
