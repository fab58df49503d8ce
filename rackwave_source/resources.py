"""A dlt resource per entry of ``settings.RESOURCES``: one generic read, in a short loop.

The loop, in the order a run does it: plan the run from the state (``scan_run.py``); make the
table exist with its columns; read the pages, new records only (``scan.py``); after a full scan,
settle the records it did not see (``deletions.py``); record the run in the state.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Dict, Iterator, Optional, Tuple

import dlt
import pyarrow as pa
from dlt.extract.resource import DltResource

from rackwave_source import settings as S
from rackwave_source.rows.arrow_shape import ArrowBatch, empty_table, json_as_text
from rackwave_source.api.client import RackwaveClient
from rackwave_source.api.decode import PageReader
from rackwave_source.warehouse.deletions import Reconciliation, deleted_at_column
from rackwave_source.api.endpoint import ListEndpoint
from rackwave_source.dlt_internals import unstarted_generator
from rackwave_source.exceptions import ConfigurationError
from rackwave_source.warehouse.versions import Versions
from rackwave_source.warehouse.versions import declare as declare_history
from rackwave_source.options import ValidatedOptions
from rackwave_source.rows.privacy import check_state
from rackwave_source.rows.quarantine import QUARANTINE_KEY, QUARANTINE_TABLE
from rackwave_source.reading import Reading
from rackwave_source.warehouse.target import current_load_id
from rackwave_source.warehouse.runs_table import history_item
from rackwave_source.warehouse.runs_table import declare as declare_run_history
from rackwave_source.read.progress import Progress
from rackwave_source.scan_run import ScanRun
from rackwave_source.warehouse.verdicts import check
from rackwave_source.warehouse.target import (
    quiet_dlt,
    claim_state,
    warehouse_mark,
    check_duckdb_location,
    destination_kind,
    loader_hints,
    table_format,
)
from rackwave_source.dlt_internals import active_pipeline
from rackwave_source.schema import LOAD_ID_COLUMN, QUARANTINE_COLUMNS, TColumns
from rackwave_source.warehouse.target import with_load_id


def read_records(spec: S.ResourceSpec, client: RackwaveClient,
                 options: ValidatedOptions, progress: Progress | None = None) -> Iterator[Any]:
    """Yields Arrow tables: every record on a full scan, new ones on an incremental run.

    Every run merges on ``id``, full scans too: the rows a full scan confirms deleted come again
    with ``_rackwave_deleted_at`` set, and the merge removes (``hard_delete``) or keeps them
    (``deletions.py``). So loading a package twice, as dlt does when it resumes a killed load,
    changes nothing. A first run that finds no record yields an empty table instead, so a new
    account's tables exist, with their columns, before their first record (see
    ``arrow_shape.empty_table``); later runs with nothing new yield no rows at all.
    """
    check_duckdb_location(active_pipeline())  # refuses before reading anything (warehouse.py)
    destination = destination_kind()
    versions = Versions.of(spec.name, options, destination)  # refuses before reading anything
    state = dlt.current.resource_state()
    claim_state(state, warehouse_mark(active_pipeline()), spec.name)  # warehouse.py
    run = ScanRun(state, options, spec.name)
    check_state(run.state, options.privacy, spec.name, loaded=not run.first_run)  # privacy.py
    flag = options.deleted_records == "flag"
    yield _hints(spec, destination, flag)
    json_text = _writes_csv_json(destination)
    yield from versions.start(run.plan.full_scan, _Batches(json_text, versions.table))
    replacing = _replaces(spec.name, destination, run)
    if replacing:
        yield dlt.mark.with_hints([], dlt.mark.make_hints(
            write_disposition="replace", columns=deleted_at_column(True)))  # no hard_delete
    endpoint = _endpoint(spec, client, options)
    http_before = client.stats(spec.path)
    how = Reconciliation(flag, replacing, run.started_at, options.concurrency)
    reading = Reading(spec, endpoint, run, options, versions, how, progress)
    batch = _Batches(json_text)
    yield from reading.read(batch.add)
    yield from batch.flush(empty_table(spec.columns, deleted_at_column(flag)) if run.first_run
                           else None)  # the table exists: a run with nothing new writes no file
    yield from versions.flush(empty_table(spec.columns))  # closes all on an empty full scan
    reading.quarantine.close()
    http_after = client.stats(spec.path)
    scan, deletions, tally = reading.scan, reading.deletions, reading.tally
    assert scan is not None and tally is not None
    flagged = deletions.confirmed if flag else 0  # each confirmed deletion is flagged now
    record = run.finish(scan, deletions, {k: http_after[k] - http_before[k] for k in http_after},
                        flagged, reading.fresh.count if reading.rows_new is None
                        else reading.rows_new, current_load_id(), tally)
    yield history_item(spec.name, record)  # rackwave_runs, in the same package (warehouse/runs_table.py)
    check(spec.name, tally, scan.plan.full_scan)  # exit 0 means exact (verdicts.py)


def _hints(spec: S.ResourceSpec, destination: str, flag: bool) -> Any:
    """The run's hints, on an empty list: a table item would lose them to a map that re-wraps it
    with hints of its own (e.g. Postgres' JSON-as-text)."""
    layout, table_hints = _layout(spec, destination)
    return dlt.mark.with_hints([], dlt.mark.make_hints(
        write_disposition="merge", columns={**deleted_at_column(flag), **layout},
        additional_table_hints={**table_hints, **_stage_hints(destination)} or None,
        **loader_hints(destination)))


def _stage_hints(kind: str) -> Dict[str, Any]:
    """On a local DuckDB file, the staged rows are declared unique, so dlt's merge skips the
    window that deduplicates them: it holds the whole staged table in the loading process's
    memory, so a first load or full scan of a million leads would not stay flat in memory
    (benchmarks/README.md, peak RSS).
    They are unique: a run yields every id once (``Scan`` drops repeats; deletions yield only ids
    the scan did not see). A killed load job run again on resume stages its rows twice: that is
    undone before dlt resumes (``recovery.unstage_started_jobs``)."""
    return {"x-stage-data-deduplicated": True} if kind == "duckdb" else {}


def _replaces(table: str, destination: str, run: ScanRun) -> bool:
    """Whether this run replaces the table instead of merging into it: on plain parquet files,
    which cannot merge (full scans only); and at the first load into DuckDB, which has nothing to
    merge with, so the rows are copied into the table directly instead of staged first (about
    half the load step: benchmarks/README.md). A killed first load resumed by dlt cannot double rows either:
    the rows of the job that was running are removed first (``recovery.py``)."""
    if _cannot_merge(table, destination):
        _require_full_scan(table, run)
        return True
    return destination == "duckdb" and run.first_run


def _cannot_merge(table: str, destination: str) -> bool:
    """Whether the table is plain parquet files on the filesystem destination (no Delta table
    format), which cannot merge: a full scan then replaces the files. The table format arrives
    with ``pipeline.run(..., table_format=...)``, in the schema once the hints were taken."""
    return destination == "filesystem" and table_format(table) not in ("delta", "iceberg")


def _require_full_scan(table: str, run: ScanRun) -> None:
    """Plain parquet files take only full scans: an incremental run would append duplicates."""
    if not run.plan.full_scan:
        raise ConfigurationError(
            "full_scan",
            f"table `{table}` is plain parquet files on the filesystem destination, which cannot "
            "merge, and this run is incremental: it would append duplicates",
            'Load Delta tables (pipeline.run(source, table_format="delta"); rackwave '
            "--lake-format delta), or make every run a full scan (full_scan = true; rackwave "
            "--full-scan), which replaces the files with exactly what the API holds.",
        )


class _Batches:
    """Page tables gathered into dlt items (``ArrowBatch``); a first run with no record at all
    yields one empty table, so the table exists with its columns."""

    def __init__(self, json_text: bool, variant: Optional[str] = None) -> None:
        self._batch = ArrowBatch()
        self._yielded = False
        self._json_text = json_text
        self._variant = variant  # another table of the resource, e.g. its history

    def add(self, table: pa.Table) -> Iterator[Any]:
        if table.num_rows:
            full = self._batch.add(table)
            if full is not None:
                self._yielded = True
                yield self._item(full)

    def flush(self, empty: Optional[pa.Table]) -> Iterator[Any]:
        rest = self._batch.flush()
        if rest is not None:
            yield self._item(rest)
        elif not self._yielded and empty is not None:
            yield self._item(empty)

    def _item(self, table: pa.Table) -> Any:
        table = with_load_id(table)
        hints: TColumns = {}
        if self._json_text:
            table, hints = json_as_text(table)
        if self._variant is not None:
            return dlt.mark.with_hints(table, dlt.mark.make_hints(
                table_name=self._variant, columns=hints or None), create_table_variant=True)
        return dlt.mark.with_hints(table, dlt.mark.make_hints(columns=hints)) if hints else table


def _layout(spec: S.ResourceSpec, kind: str) -> Tuple[TColumns, Dict[str, Any]]:
    """What BigQuery and Snowflake need to lay a table out for its queries, as hints: BigQuery
    partitions by the day of ``created_at`` and clusters on ``spec.cluster`` (as dlt's
    ``bigquery_adapter`` would mark them), Snowflake clusters on ``spec.cluster``."""
    if kind == "bigquery":
        columns: TColumns = {S.CURSOR_FIELD: {"x-bigquery-partition": True}}  # type: ignore[typeddict-unknown-key]
        if spec.cluster is None:
            return columns, {}
        columns[spec.cluster] = {"x-bigquery-cluster": True}  # type: ignore[typeddict-unknown-key]
        return columns, {"x-bigquery-cluster-columns": [spec.cluster]}
    if kind == "snowflake" and spec.cluster is not None:
        return {spec.cluster: {"cluster": True}}, {}
    return {}, {}


def _writes_csv_json(kind: str) -> bool:
    """Whether the pipeline loads Postgres, whose loader takes Arrow items as CSV: list columns
    (``tags``) then travel as JSON text (``arrow_shape.json_as_text``). Decided here, in the source,
    so a plain ``pipeline.run(rackwave_source())`` into Postgres works with dlt's defaults."""
    if kind != "postgres":
        return False
    quiet_dlt(_QuietJsonText)  # warehouse.py
    return True


class _QuietJsonText(logging.Filter):
    """dlt warns at every Postgres load that Arrow column types differ from the schema's: that is
    the JSON text handed to its CSV writer for ``jsonb`` columns, on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "when merging arrow schema with dlt schema" not in record.getMessage()


def _endpoint(spec: S.ResourceSpec, client: RackwaveClient,
              options: ValidatedOptions) -> ListEndpoint:
    filters: Dict[str, str] = {}
    for option, parameter in spec.filters:
        value = getattr(options, option)
        if value:
            filters[parameter] = str(value)
    reader = PageReader(spec.name, spec.columns, quarantine=options.bad_records == "quarantine",
                        known_types=_destination_types(spec.name), privacy=options.privacy)
    return ListEndpoint(client, spec.path, reader, options.per_page, filters)


def _destination_types(table: str) -> Dict[str, str]:
    """The data type of each column the table already has (dlt's schema, restored with the state
    from the destination), so a field whose type changed since is loaded as a variant."""
    try:
        schema = dlt.current.source_schema()
    except Exception:  # noqa: BLE001 - outside a pipeline (e.g. iterating the resource directly)
        return {}
    columns = schema.tables.get(table, {}).get("columns", {})
    return {name: str(c["data_type"]) for name, c in columns.items() if c.get("data_type")}


def make_resource(spec: S.ResourceSpec, client: RackwaveClient, options: ValidatedOptions,
                  progress: Progress | None = None) -> DltResource:
    """The dlt resource of one declared resource, merged on ``id``."""
    # dlt.resource(<a generator>) looks up its module with inspect.getmodule(<its frame>), whose
    # first call maps the file of every module loaded (a realpath each, on every run);
    # told this file's module first, it finds it at once (the same answer).
    inspect.modulesbyfile.setdefault(inspect.getabsfile(read_records), __name__)
    resource = dlt.resource(read_records(spec, client, options, progress), name=spec.name)
    # The quarantine table is a variant of the resource's table. A variant starts as a copy of the
    # resource's hints at the time it is made, so it is made first, while they are still empty:
    # it must not inherit the resource's columns, primary key or merge. So is rackwave_runs.
    declare_run_history(resource)
    resource.apply_hints(table_name=QUARANTINE_TABLE, create_table_variant=True,
                         write_disposition="merge", primary_key=QUARANTINE_KEY,
                         columns=QUARANTINE_COLUMNS)
    if options.history == "scd2":
        declare_history(resource, spec.columns)
    resource.apply_hints(primary_key=S.PRIMARY_KEY, write_disposition="merge",
                         columns={**spec.columns, **LOAD_ID_COLUMN})
    return resource


def reading_of(resource: DltResource) -> Tuple[ListEndpoint, ValidatedOptions]:
    """The endpoint a resource of this source reads (client, path, page size, filters) and the
    validated settings it plans its run with, without running it: ``rackwave check`` asks for
    page 1 and plans the next run with exactly these, so its answer is the run's. They are the
    arguments of the resource's ``read_records`` generator, made by :func:`make_resource` and
    not started yet (``inspect`` reads an unstarted generator's arguments)."""
    generator = unstarted_generator(resource)
    if generator is None or generator.gi_code is not read_records.__code__ \
            or inspect.getgeneratorstate(generator) != inspect.GEN_CREATED:
        raise TypeError(f"`{resource.name}` is no unstarted resource of rackwave_source()")
    arguments = inspect.getgeneratorlocals(generator)
    options: ValidatedOptions = arguments["options"]
    return _endpoint(arguments["spec"], arguments["client"], options), options
