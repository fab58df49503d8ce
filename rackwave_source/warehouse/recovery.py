"""Making a killed run's leftovers safe to resume, so the next plain
``pipeline.run(rackwave_source())`` goes on where it stopped.

dlt resumes a package a killed run left: ``run()`` loads it and returns. Three leftovers of a
kill are repaired first (``prepare_resume``), by the source when it is made after its pipeline, or by
the ``rackwave`` command:

* **A normalize committed halfway.** dlt 1.31's normalize renames ``load/new/<load id>`` to
  ``load/normalized/<load id>``, then deletes ``normalize/extracted/<load id>``. Killed between
  the two, every later ``run()`` normalizes the package again and fails on the rename
  ("Directory not empty"). The normalized copy is complete (the rename is atomic): deleting the
  extracted one is exactly dlt's missing second step.
* **A copy job run twice into DuckDB's staging tables.** A job killed after DuckDB committed its
  rows but before dlt recorded it (dlt 1.31 writes a marker right after the commit, and completes
  a marked job on resume without running it: the window is the moment between the two) runs
  again when the package resumes, and would stage its rows twice. Other destinations deduplicate staged rows in the merge itself; on a local
  DuckDB file that window over the whole staged table would hold it in memory (benchmarks/README.md:
  peak RSS at a million leads), so the source declares its staged rows unique there (each run yields every id
  once, ``resources._stage_hints``) and instead removes, before the resume, the rows of every job
  that was running at the kill (``unstage_started_jobs``): dlt then copies them once. The same
  holds for a first load into DuckDB, which copies straight into the table.
* **Rows appended by a job run twice**: dlt's state table and the quarantine have no key to
  merge on; their rows of the resumed load are removed before it runs again
  (``forget_started_appends``).
* **Versions staged by a history job run twice**: dlt's scd2 merge inserts every staged row, so
  the staged versions of a history job that was running are removed by row hash before it runs
  again (``history.unstage_started_versions``); the history table itself is never touched.
"""

from __future__ import annotations

import logging
import re
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Any, List, Tuple


from rackwave_source import settings as S
from rackwave_source.dlt_internals import extracted_packages, interrupted_jobs, normalized_package
from rackwave_source.exceptions import ConfigurationError
from rackwave_source.rows.quarantine import QUARANTINE_TABLE
from rackwave_source.warehouse.target import STATE_WAREHOUSE, destination_kind, warehouse_mark

logger = logging.getLogger("rackwave_source")
#: tables a load appends to (no key to merge on): dlt's state, and the quarantine
APPENDED_TABLES = ("_dlt_pipeline_state", QUARANTINE_TABLE)
SQL_DESTINATIONS = ("duckdb", "postgres", "bigquery", "snowflake", "motherduck")
#: where dlt records a job the destination committed
LOAD_ID_PATTERN = re.compile(r"\d+\.\d+")


def prepare_resume(pipeline: Any) -> None:
    """Repairs what a killed run left, when it left a package to resume (else does nothing)."""
    if not pipeline.has_pending_data:
        return
    finish_normalize_commit(pipeline)
    kind = destination_kind(pipeline)
    if kind == "duckdb":
        unstage_started_jobs(pipeline)
    if kind in SQL_DESTINATIONS:
        forget_started_appends(pipeline)
        from rackwave_source.warehouse.versions import unstage_started_versions

        unstage_started_versions(pipeline, _interrupted_jobs(pipeline))  # history tables


def set_aside_other_warehouse(pipeline: Any) -> bool:
    """Drops the pipeline's local state and schema when its loads went to another warehouse or
    dataset than the one it loads now (``warehouse.warehouse_mark``), so that dlt restores this
    warehouse's own state and schema as the run starts (or starts afresh where there are none).
    dlt would otherwise keep the newer local state: another warehouse's cursor, and records
    never read. A load left unfinished there is refused rather than loaded here: it belongs to
    the other warehouse. Returns whether it dropped."""
    resources = pipeline.state.get("sources", {}).get(S.SOURCE_NAME, {}).get("resources", {})
    marks = {r.get(STATE_WAREHOUSE) for r in resources.values() if isinstance(r, dict)}
    marks.discard(None)
    if not marks:  # a first run, or a state from before marks: nothing to compare
        return False
    here = warehouse_mark(pipeline)
    if here is None or marks == {here}:
        return False
    if pipeline.has_pending_data:
        raise ConfigurationError(
            "destination",
            f"pipeline `{pipeline.pipeline_name}` has a load into another warehouse or dataset "
            "left unfinished",
            "Finish it first, with the destination and dataset it was started with; or give this "
            "warehouse a pipeline name of its own (rackwave --pipeline-name).")
    logger.warning("pipeline `%s` last loaded another warehouse or dataset: this run goes on "
                   "from the state kept in this one (give each warehouse a pipeline name of its "
                   "own to keep them apart)", pipeline.pipeline_name)
    pipeline.drop()
    return True


def finish_normalize_commit(pipeline: Any) -> int:
    """Deletes the extracted copy of every package normalize already committed; returns how
    many there were."""
    finished = 0
    for package in extracted_packages(pipeline.working_dir):
        if normalized_package(pipeline.working_dir, package.name).is_dir():
            logger.warning("finishing the normalize step of load %s, which a killed run left "
                           "half committed", package.name)
            shutil.rmtree(package)
            finished += 1
    return finished


def unstage_started_jobs(pipeline: Any) -> int:
    """Removes the rows of every resource's load job that was running when the run was killed,
    from the staging table it copies into (a merge) or the table itself (a first load, which
    replaces it); dlt runs those jobs again as it resumes, so each row is copied once whether the
    killed job had committed or not. Removing them from the table is harmless for a merge too:
    its staged rows replace the table's rows of the same ids anyway. Returns the jobs found."""
    started = [(job.name.split(".", 1)[0], job) for _, job in _interrupted_jobs(pipeline)
               if job.suffix == ".parquet"]
    started = [(table, job) for table, job in started if table in S.RESOURCE_NAMES]
    if not started:
        return 0
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    with pipeline.sql_client(S.SOURCE_NAME) as client:
        for table, job in started:
            escaped = str(job).replace("'", "''")
            for staging in (True, False):
                with client.with_staging_dataset() if staging else nullcontext():
                    name = client.make_qualified_table_name(table)
                    try:
                        client.execute_sql(
                            f"DELETE FROM {name} WHERE {S.PRIMARY_KEY} IN "
                            f"(SELECT {S.PRIMARY_KEY} FROM read_parquet('{escaped}'))")
                    except DatabaseUndefinedRelation:
                        continue  # not staged (a replace), or not created yet
            logger.warning("%s: a load job was running when the last run was killed; its rows "
                           "are removed before dlt runs it again", table)
    return len(started)


def forget_started_appends(pipeline: Any) -> int:
    """Removes the rows a killed load may already have appended to dlt's state table and to
    the quarantine (tables without a key to merge on) from a job dlt runs again as it resumes:
    the rows of that load, by ``_dlt_load_id``. On Postgres the state table's ``_dlt_id`` is
    unique, so the job run again failed every later run ("duplicate key ... _dlt_id_key");
    elsewhere the rows were doubled. Returns the jobs found."""
    started = [(job.name.split(".", 1)[0], package.name)
               for package, job in _interrupted_jobs(pipeline)]
    started = [(table, load_id) for table, load_id in started
               if table in APPENDED_TABLES and LOAD_ID_PATTERN.fullmatch(load_id)]
    if not started:
        return 0
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    with pipeline.sql_client(S.SOURCE_NAME) as client:
        for table, load_id in started:
            name = client.make_qualified_table_name(table)
            try:  # the load id is digits and a dot (checked above): safe inline on every dialect
                client.execute_sql(f"DELETE FROM {name} WHERE _dlt_load_id = '{load_id}'")
            except DatabaseUndefinedRelation:
                continue  # not created yet
            logger.warning("%s: rows of load %s a killed run may have written are removed "
                           "before dlt writes them again", table, load_id)
    return len(started)


def _interrupted_jobs(pipeline: Any) -> List[Tuple[Path, Path]]:
    return interrupted_jobs(pipeline.working_dir)
