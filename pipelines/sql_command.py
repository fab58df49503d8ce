"""``rackwave sql``: query what the runs loaded, on the same warehouse, dataset and pipeline.

``rackwave sql "SELECT status, count(*) FROM leads GROUP BY 1"`` prints a table (``--format
csv`` or ``json`` for other programs); unqualified table names are the dataset's. With no query,
it reads statements (ended by ``;``) from standard input: an interactive shell on a terminal,
a script otherwise. It goes through dlt's SQL client of the pipeline, so every warehouse the
command loads answers the same way, and nothing needs to be on PATH but this command.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from typing import Any, Iterator, List, Tuple

import dlt

from pipelines.destinations import DESTINATIONS, make_destination, validate_destination
from pipelines.cli import Command
from pipelines.common import (
    DEFAULT_DATASET,
    DEFAULT_DUCKDB_FILE,
    DEFAULT_PIPELINE,
    name_and_folder,
    own_duckdb_file,
)
from rackwave_source.exceptions import ConfigurationError

FORMATS = ("table", "csv", "json")
PROMPT, MORE = "rackwave> ", "     ...> "
#: a cell wider than this is cut in the table format (csv and json carry it whole)
MAX_CELL = 60

Result = Tuple[List[str], List[Tuple[Any, ...]]]


class QueryRefused(Exception):
    """The warehouse refused a statement: its own first line says why."""


class SqlCommand(Command):
    """``rackwave sql``: exit code 0, every statement ran; 2, bad arguments, no loaded file, or
    SQL the warehouse refused (its own message on stderr)."""

    name = "sql"
    description = ("Query what rackwave loaded, on the same warehouse and dataset (unqualified "
                   "table names are the dataset's). No query: read statements ending in ';' "
                   "from standard input (a shell on a terminal).")

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("query", nargs="?", help="one SQL statement")
        parser.add_argument("--format", choices=FORMATS, default="table",
                            help="table (default), csv (a header row) or json (a list of objects)")
        parser.add_argument("--destination", default="duckdb", choices=DESTINATIONS)
        parser.add_argument("--dataset", default=DEFAULT_DATASET, help="dataset/schema name")
        parser.add_argument("--pipeline-name", default=DEFAULT_PIPELINE, help="dlt pipeline name")
        parser.add_argument("--duckdb-file", default=None,
                            help=f"DuckDB file (default ./{DEFAULT_DUCKDB_FILE})")

    def execute(self, args: argparse.Namespace) -> int:
        return run_statements(args)


def run_statements(args: argparse.Namespace) -> int:
    """The query, or every statement read from standard input, one result each."""
    refused = 0
    try:
        pipeline = query_pipeline(args)
        statements = [args.query] if args.query else read_statements(sys.stdin)
        with pipeline.sql_client() as client:
            for statement in statements:
                try:
                    print(render(run(client, statement), args.format), flush=True)
                except QueryRefused as exc:  # a shell goes on to the next statement
                    print(f"error: {exc}", file=sys.stderr, flush=True)
                    refused += 1
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2 if refused else 0


def query_pipeline(args: argparse.Namespace) -> dlt.Pipeline:
    """The loading pipeline, bound to the warehouse a run of the same options loads; a DuckDB
    file that does not exist is refused (dlt would create an empty one)."""
    destination = validate_destination(args.destination)
    duckdb_file = own_duckdb_file(destination, args.duckdb_file)
    if duckdb_file is not None and not os.path.exists(duckdb_file):
        raise ConfigurationError(
            "--duckdb-file", f"{duckdb_file} does not exist, so nothing was loaded there yet",
            "Run `rackwave` first, or name the file the runs load with --duckdb-file.")
    pipeline: dlt.Pipeline = dlt.pipeline(destination=make_destination(destination, duckdb_file),
                                          dataset_name=args.dataset,
                                          **name_and_folder(args.pipeline_name, None))
    return pipeline


def run(client: Any, statement: str) -> Result:
    """Column names and rows of one statement; the warehouse's own message when it refuses."""
    try:
        with client.execute_query(statement) as cursor:
            description = cursor.native_cursor.description or ()
            rows = [tuple(row) for row in cursor.fetchall()] if description else []
            return [str(column[0]) for column in description], rows
    except Exception as exc:  # noqa: BLE001 - the warehouse's words are what helps
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise QueryRefused(f"the warehouse refused the query: {first} (unqualified tables are "
                           "the dataset's)") from None


def read_statements(stream: Any) -> Iterator[str]:
    """Statements ended by ``;`` (the last may lack it), one line at a time: a prompt on a
    terminal; ``.quit`` or end of input stops."""
    interactive = stream.isatty()
    pending: List[str] = []
    while True:
        if interactive:
            print(MORE if pending else PROMPT, end="", flush=True)
        line = stream.readline()
        if not line or line.strip() in (".quit", ".exit"):
            break
        pending.append(line)
        if line.rstrip().endswith(";"):
            statement = "".join(pending).strip().rstrip(";").strip()
            pending = []
            if statement:
                yield statement
    rest = "".join(pending).strip().rstrip(";").strip()
    if rest:
        yield rest


def render(result: Result, form: str) -> str:
    columns, rows = result
    if form == "json":
        return json.dumps([dict(zip(columns, row)) for row in rows], default=str)
    if form == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    return table(columns, rows)


def table(columns: List[str], rows: List[Tuple[Any, ...]]) -> str:
    """Columns padded to their widest cell, numbers to the right; the row count below."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(columns)]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows if row[i] is not None)
               and bool(rows) for i in range(len(columns))]

    def line(values: List[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric)).rstrip()

    body = [line(columns), line(["-" * w for w in widths]), *(line(row) for row in cells)]
    return "\n".join([*body, f"({len(rows)} row{'s' if len(rows) != 1 else ''})"])


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= MAX_CELL else text[:MAX_CELL - 1] + "…"
