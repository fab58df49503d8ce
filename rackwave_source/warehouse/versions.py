"""``<resource>_history``: every observed version of every record, kept by dlt's scd2 merge.

With ``history = "scd2"`` each resource yields its records to a second table, a variant of the
resource (like the quarantine and ``rackwave_runs``), from the same pages: the API is read once.
dlt's ``scd2`` merge strategy keeps one row per version, with ``_dlt_valid_from`` and
``_dlt_valid_to`` (NULL for the current version), both the creation time of the load package.

How dlt 1.31's scd2 merge decides (``destinations/sql_jobs.py``, ``gen_scd2_sql``), and what the
connector makes of it:

* A version is identified by its row version column. dlt computes that hash for JSON items only,
  not for Arrow items, which this source yields: the source computes it (``row_hashes``) over the
  record's fields, dlt's and the connector's own columns excluded, so an unchanged record has
  the same hash at every run and dlt inserts nothing for it.
* Retiring: dlt closes every current version whose hash is not in the load, or, with a
  ``merge_key``, only those whose key is in the load. A **full scan** declares no merge key and
  loads every record still in the API (the pages, the records a lookup found, and the
  undecided ones a lookup could not settle, read back from the current-state table): exactly the
  records the scan confirmed deleted are absent, and dlt closes their versions. An
  **incremental run** reads only the newest records, so it declares ``merge_key = id``: it adds
  versions of the records it read and closes only earlier versions of those same records. One
  key column, so dlt#4244 (compound merge keys compared as concatenated text) cannot happen.
  The hint is set explicitly either way at every run: dlt keeps column hints from one run to
  the next in the stored schema, and only an explicit ``merge_key: False`` takes it off.
* Rows confirmed deleted travel to the current-state table with ``_rackwave_deleted_at`` set
  (``deletions.py``); they are left out of the history load, which is what closes them there.
* A merge run twice (dlt resuming a killed load) changes nothing: the second pass finds every
  staged hash already current, so it neither closes nor inserts. What would not be exact is a
  copy job into the staging table run twice (dlt's scd2 insert does not deduplicate staged
  rows): before dlt resumes, the staged rows of every job that was running are removed by hash
  (``unstage_started_versions``, called by ``recovery.prepare_resume``). Rows of the history
  table itself are never removed: older versions are its point.

dlt 1.31 has no scd2 on the filesystem destination (Delta merges by upsert only): a run with
history on refuses it, before reading anything, with a ``ConfigurationError``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Protocol, Sequence, Set, Tuple

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.schema.typing import TColumnSchema
from dlt.extract.resource import DltResource

from rackwave_source import settings as S
from rackwave_source.warehouse.deletions import DeletionCounts, unseen_rows
from rackwave_source.warehouse.target import DELETED_AT
from rackwave_source.exceptions import ConfigurationError
from rackwave_source.options import ValidatedOptions
from rackwave_source.read.scan import Scan
from rackwave_source.schema import LOAD_ID_COLUMN, TColumns
from rackwave_source.warehouse.loaded import LoadedTable
from rackwave_source.dlt_internals import active_pipeline
from rackwave_source.warehouse.target import destination_kind, loader_hints

logger = logging.getLogger("rackwave_source")
#: columns that are not the record's: dlt's, and the connector's own (deletion flag, row hash)
OWN_PREFIXES = ("_dlt_", "_rackwave_")
_HEX_HASH = re.compile(r"[0-9a-f]{32}")
_IDS_PER_DELETE = 1_000


def history_table(resource: str) -> str:
    return f"{resource}{S.HISTORY_SUFFIX}"


HISTORY_TABLES: Tuple[str, ...] = tuple(history_table(name) for name in S.RESOURCE_NAMES)


def scd2() -> Dict[str, Any]:
    """The history table's write disposition: dlt's scd2, our row hash as the row version."""
    return {"disposition": "merge", "strategy": "scd2",
            "row_version_column_name": S.HISTORY_ROW_HASH}


def history_columns(columns: TColumns) -> TColumns:
    """The resource's declared columns (``id`` no primary key: it repeats, once per version),
    the row hash, and ``_dlt_load_id`` (the load that brought the version)."""
    declared: TColumns = {name: dict(column) for name, column in columns.items()}  # type: ignore[misc]
    for column in declared.values():
        column.pop("primary_key", None)
    row_hash: TColumnSchema = {"data_type": "text", "nullable": False}
    return {**declared, S.HISTORY_ROW_HASH: row_hash, **LOAD_ID_COLUMN}


def declare(resource: DltResource, columns: TColumns) -> None:
    """Makes the ``<resource>_history`` variant of ``resource``. Call it before the resource's own
    hints (primary key, merge), which a variant would otherwise copy."""
    resource.apply_hints(table_name=history_table(resource.name), create_table_variant=True,
                         write_disposition=scd2(),  # type: ignore[arg-type]
                         columns=history_columns(columns))


def require_scd2(destination: str) -> None:
    """Refuses, before anything is read, a destination where dlt has no scd2 merge."""
    pipeline = active_pipeline()
    if pipeline is None or pipeline.destination is None:
        return  # iterated on its own: nothing is loaded
    if "scd2" in (pipeline.destination.capabilities().supported_merge_strategies or ()):
        return
    raise ConfigurationError(
        "history",
        f"the {destination} destination cannot keep history: dlt 1.31 has no scd2 merge there"
        + (" (Delta and Iceberg tables merge by upsert only)" if destination == "filesystem"
           else ""),
        'Load into a SQL destination (DuckDB, Postgres, BigQuery, Snowflake...) to keep '
        '<resource>_history tables, or set history = "off" (SOURCES__RACKWAVE__HISTORY=off) '
        "for this pipeline. Nothing was read or loaded.",
    )


class Batches(Protocol):
    """Items for one table, gathered (``resources._Batches``)."""

    def add(self, table: pa.Table) -> Iterator[Any]: ...

    def flush(self, empty: Optional[pa.Table]) -> Iterator[Any]: ...


class Versions:
    """What one run of one resource sends to its history table (nothing when history is off)."""

    def __init__(self, resource: str, on: bool) -> None:
        self.resource = resource
        self.table = history_table(resource)
        self.on = on
        self._batches: Optional[Batches] = None
        self._reconciled: Set[str] = set()
        self._full_scan = False

    @classmethod
    def of(cls, resource: str, options: ValidatedOptions, destination: str) -> "Versions":
        on = options.history == "scd2"
        if on:
            require_scd2(destination)
        return cls(resource, on)

    def start(self, full_scan: bool, batches: Batches) -> Iterator[Any]:
        """The run's hints: no merge key on a full scan (every absent version closes), ``id`` on
        an incremental run (only versions of the records read can close)."""
        if not self.on:
            return
        self._batches = batches
        yield from self._hints(full_scan)

    def now_full_scan(self) -> Iterator[Any]:
        """The run goes on as a full scan (an incremental read repaired, ``reading.py``): its
        load holds every record still in the API (those the incremental part read included), so
        the hints become a full scan's and the confirmed deletions' versions close. dlt takes
        the table's hints as they stand at the end of the extract."""
        if self.on:
            yield from self._hints(full_scan=True)

    def _hints(self, full_scan: bool) -> Iterator[Any]:
        self._full_scan = full_scan
        yield dlt.mark.with_hints([], dlt.mark.make_hints(
            table_name=self.table, write_disposition=scd2(),  # type: ignore[arg-type]
            columns={S.PRIMARY_KEY: {"merge_key": not full_scan, "nullable": False}},
            **loader_hints(destination_kind())), create_table_variant=True)

    def add(self, records: pa.Table) -> Iterator[Any]:
        """Records as the API has them now: each one's current version."""
        if self._batches is not None and records.num_rows:
            yield from self._batches.add(with_row_hash(records))

    def add_reconciled(self, rows: pa.Table) -> Iterator[Any]:
        """Rows a full scan's reconciliation loads: found by a lookup (a version), or confirmed
        deleted (``_rackwave_deleted_at`` set: left out, so dlt closes their version)."""
        if not self.on or not rows.num_rows:
            return
        self._reconciled.update(str(i) for i in rows.column(S.PRIMARY_KEY).to_pylist())
        if DELETED_AT in rows.column_names:
            rows = rows.filter(pc.is_null(rows.column(DELETED_AT)))
        yield from self.add(rows)

    def add_undecided(self, scan: Scan, counts: DeletionCounts) -> Iterator[Any]:
        """The records a full scan did not see and no lookup could settle: kept as loaded in the
        current-state table, so their current version must stay open too (they are in the load,
        read back from that table). Read only when there are some."""
        if not self.on or not counts.undecided:
            return
        loaded = LoadedTable.of(self.resource)
        if loaded is None:
            return
        ids: List[str] = []
        for unseen in unseen_rows(scan, loaded, [S.PRIMARY_KEY, DELETED_AT]):
            if DELETED_AT in unseen.column_names:
                unseen = unseen.filter(pc.is_null(unseen.column(DELETED_AT)))
            ids.extend(i for i in map(str, unseen.column(S.PRIMARY_KEY).to_pylist())
                       if i not in self._reconciled)
        if ids:
            yield from self.add(loaded.rows(ids))

    def flush(self, empty: Optional[pa.Table] = None) -> Iterator[Any]:
        """The last versions. A full scan that loaded none (every record gone from the API, or
        a list the server shows empty) loads ``empty`` all the same: dlt's scd2 merge runs only
        for a table in the load, and it is what closes every version still open. Without it the
        current-state table lost every row and the history kept them all current."""
        if self._batches is not None:
            last = with_row_hash(empty) if self._full_scan and empty is not None else None
            yield from self._batches.flush(last)


def with_row_hash(records: pa.Table) -> pa.Table:
    """The records without the connector's and dlt's columns, with their row hash."""
    records = records.drop_columns([n for n in records.column_names if n.startswith(OWN_PREFIXES)])
    field = pa.field(S.HISTORY_ROW_HASH, pa.string(), nullable=False)
    return records.append_column(field, row_hashes(records).cast(pa.string()))  # 0 rows: null


def row_hashes(records: pa.Table) -> pa.Array:
    """One hash per row over its non-null fields, by name: the same record gives the same hash
    whatever its columns' order, and a column absent from a table (a field the API added, null
    on a whole page) hashes like a null one, so a new field changes only the records that have a
    value for it. Each field is ``len(name):name len(value):value`` (no value can forge another
    field); values as text (timestamps as UTC microseconds, lists of text element by element, other
    nested values as JSON)."""
    pieces = []
    for name in sorted(n for n in records.column_names if not n.startswith(OWN_PREFIXES)):
        text = _as_text(records.column(name))
        if text is None:
            continue
        length = pc.cast(pc.utf8_length(text), pa.string())
        piece = pc.binary_join_element_wise(f"{len(name)}:{name}", length, text, ":")
        pieces.append(pc.fill_null(piece, ""))
    if not pieces:
        return pa.array([hashlib.blake2b(b"", digest_size=16).hexdigest()] * records.num_rows)
    # the separator is "": null fields add nothing (pyarrow 26's null_handling="skip" drops rows)
    joined = pc.binary_join_element_wise(*pieces, "") if len(pieces) > 1 else pieces[0]
    return pa.array([hashlib.blake2b(v.encode(), digest_size=16).hexdigest()
                     for v in joined.to_pylist()], pa.string())


def _as_text(column: pa.ChunkedArray) -> Optional[pa.ChunkedArray]:
    """A column as comparable text, or None when it holds no value at all."""
    kind = column.type
    if pa.types.is_null(kind) or column.null_count == len(column):
        return None
    if pa.types.is_dictionary(kind):
        column = pc.cast(column, kind.value_type)
        kind = column.type
    if pa.types.is_timestamp(kind):
        micros = pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), pa.int64())
        return pc.cast(micros, pa.string())  # 8x faster than timestamps formatted as text
    if (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and _is_text(kind.value_type):
        return pa.chunked_array([_list_as_text(column.combine_chunks())], pa.string())
    if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return pa.chunked_array([pa.array([_json(v) for v in column.to_pylist()], pa.string())])
    return pc.cast(column, pa.string())


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _list_as_text(lists: pa.Array) -> pa.Array:
    """A list of strings (``tags``) as text, without a Python loop: each element
    ``len(value):value`` (``n`` when null), joined; an empty list is ``""``, a null one null."""
    start, end = lists.offsets[0].as_py(), lists.offsets[-1].as_py()
    offsets = pc.subtract(lists.offsets, pa.scalar(start, lists.offsets.type))  # of a slice too
    values = pc.cast(lists.values.slice(start, end - start), pa.string())
    length = pc.cast(pc.utf8_length(values), pa.string())
    pieces = pc.fill_null(pc.binary_join_element_wise(length, values, ":"), "n")
    rebuilt = type(lists).from_arrays(offsets, pieces, mask=lists.is_null())
    return pc.binary_join(rebuilt, "")


def _json(value: Any) -> Optional[str]:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def unstage_started_versions(pipeline: Any, jobs: Sequence[Tuple[Path, Path]]) -> int:
    """Removes from the staging tables the versions of every history load job that was running
    when a run was killed: dlt copies them again as it resumes, and its scd2 merge would insert
    a version staged twice twice. By row hash (unique in a load: one version per record); the
    history table itself is left as it is. Returns the jobs repaired."""
    started = [(job.name.split(".", 1)[0], job) for _, job in jobs
               if _file_format(job) != "sql"]  # a merge job: run twice, it changes nothing
    started = [(table, job) for table, job in started if table in HISTORY_TABLES]
    if not started:
        return 0
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    with pipeline.sql_client(S.SOURCE_NAME) as client, client.with_staging_dataset():
        for table, job in started:
            hashes = [h for h in _job_hashes(job) if _HEX_HASH.fullmatch(h)]
            name = client.make_qualified_table_name(table)
            column = client.escape_column_name(S.HISTORY_ROW_HASH)
            if not hashes:
                continue
            try:
                for at in range(0, len(hashes), _IDS_PER_DELETE):
                    listed = ", ".join(f"'{h}'" for h in hashes[at:at + _IDS_PER_DELETE])
                    client.execute_sql(f"DELETE FROM {name} WHERE {column} IN ({listed})")
            except DatabaseUndefinedRelation:
                continue  # nothing staged yet
            logger.warning("%s: a load job was running when the last run was killed; its staged "
                           "versions are removed before dlt copies them again", table)
    return len(started)


def _file_format(job: Path) -> str:
    """``parquet``, ``csv``, ``sql``...: a job file is ``<table>.<id>.<retry>.<format>[.gz]``."""
    return job.name.removesuffix(".gz").rsplit(".", 1)[-1]


def _job_hashes(job: Path) -> List[str]:
    """The row hashes a load job file carries (parquet; CSV on Postgres, maybe gzipped)."""
    kind = _file_format(job)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return [str(h) for h in pq.read_table(job, columns=[S.HISTORY_ROW_HASH])
                .column(0).to_pylist()]
    if kind == "csv":
        import pyarrow.csv as pcsv
        from dlt.common.storages import FileStorage

        with FileStorage.open_zipsafe_ro(str(job), "rb") as handle:
            options = pcsv.ConvertOptions(include_columns=[S.HISTORY_ROW_HASH],
                                          column_types={S.HISTORY_ROW_HASH: pa.string()})
            return [str(h) for h in pcsv.read_csv(handle, convert_options=options)
                    .column(0).to_pylist()]
    logger.warning("%s: cannot read the row hashes of %s; its versions may be staged twice",
                   job.name.split(".", 1)[0], job.name)
    return []
