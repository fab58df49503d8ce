"""Where ``rackwave push`` reads: a query on the warehouse, a CSV or parquet file, and the push
log the warehouse already holds.

Rows come in chunks (DB-API ``fetchmany``): a push of a million rows holds one chunk at a time,
never the whole input. The first chunk is read at once (``next``), so a bad query or file is named
before anything is sent; the connection stays open until the last chunk is read.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List

import dlt
from dlt.common.json import json
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from rackwave_source import settings as S
from rackwave_source.exceptions import ConfigurationError
from rackwave_source.push.journal import Outcome, PushJournal

Rows = List[Dict[str, Any]]
_LOG_COLUMNS = ("row_key", "email", "status", "lead_id", "errors", "content_hash", "pushed_at",
                "load_id")


def read_query(pipeline: dlt.Pipeline, query: str, chunk_size: int) -> Iterator[Rows]:
    """The query's rows, ``chunk_size`` at a time, run on the pipeline's warehouse (unqualified
    tables are the dataset's)."""
    try:
        with pipeline.sql_client() as client:
            with client.execute_query(query) as cursor:
                columns = [_field(c[0]) for c in cursor.native_cursor.description or ()]
                while True:
                    values = cursor.fetchmany(chunk_size)
                    if not values:
                        return
                    yield [dict(zip(columns, row)) for row in values]
    except Exception as exc:  # noqa: BLE001 - the database's own message is the useful part
        raise ConfigurationError(
            "--query", f"the warehouse could not run it: {_first_line(exc)}",
            f"Check the SQL; tables are in the dataset `{pipeline.dataset_name}` "
            f"(e.g. {pipeline.dataset_name}.leads).",
        ) from None


def _field(column: str) -> str:
    """A result column as the field it names: Snowflake reports unquoted identifiers in upper
    case (``SELECT email`` gives ``EMAIL``), so a lead field's name is matched ignoring case."""
    folded = column.lower()
    return folded if folded in S.PUSH_FIELDS and column not in S.PUSH_FIELDS else column


def read_file(path: str, chunk_size: int) -> Iterator[Rows]:
    """A CSV (every value read as text: a phone like +447700900000 stays text) or parquet file,
    ``chunk_size`` rows at a time."""
    if not os.path.isfile(path):
        raise ConfigurationError("--from-file", f"{path} is not a file",
                                 "Give the path of a .csv or .parquet file.")
    import duckdb

    lower = path.lower()
    if lower.endswith(".parquet"):
        relation = f"read_parquet({_literal(path)})"
    elif lower.endswith((".csv", ".csv.gz", ".tsv")):
        relation = f"read_csv({_literal(path)}, all_varchar = true, header = true)"
    else:
        raise ConfigurationError("--from-file", f"{path} is neither .csv nor .parquet",
                                 "Give a .csv (with a header row) or a .parquet file.")
    try:
        with duckdb.connect() as con:
            result = con.sql(f"SELECT * FROM {relation}")
            columns = list(result.columns)
            while True:
                values = result.fetchmany(chunk_size)
                if not values:
                    return
                yield [dict(zip(columns, row)) for row in values]
    except duckdb.Error as exc:
        raise ConfigurationError("--from-file", f"{path} could not be read: {_first_line(exc)}",
                                 "Check that it is a valid CSV with a header row, or parquet.",
                                 ) from None


def seed_journal(pipeline: dlt.Pipeline, journal: PushJournal) -> int:
    """Puts the warehouse's push log into the journal where the journal does not know a row
    (another machine pushed, or this machine's journal was lost); returns how many."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(S.PUSH_LOG_TABLE)
            with client.execute_query(f"SELECT {', '.join(_LOG_COLUMNS)} FROM {table}") as cursor:
                rows = cursor.fetchall()
    except DatabaseUndefinedRelation:  # no push yet on this warehouse (or no dataset at all)
        return 0
    return journal.seed(_outcome(row) for row in rows)


def _outcome(row: Any) -> Outcome:
    key, email, status, lead_id, errors, content_hash, pushed_at, load_id = row
    if isinstance(pushed_at, str):
        pushed_at = datetime.fromisoformat(pushed_at)
    if isinstance(pushed_at, datetime) and pushed_at.tzinfo is None:
        pushed_at = pushed_at.replace(tzinfo=timezone.utc)
    return Outcome(key, email, status, lead_id, json.loads(errors) if errors else None,
                   content_hash, pushed_at, load_id)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
