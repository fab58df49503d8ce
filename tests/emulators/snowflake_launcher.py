"""The Snowflake emulator's process: fakesnow's server, patched where it falls short of Snowflake.

Run by tests/emulators/fake_snowflake.py with the Python of `.venv-recipes/fakesnow` (not the suite's:
fakesnow needs other duckdb and sqlglot versions). Binds a free loopback port, prints
``READY <port>`` once it serves, and stops on SIGTERM or when stdin closes.

Each shim below is one way fakesnow 0.12 differs from Snowflake for what dlt 1.31 sends; each
is named, says why, and changes fakesnow only in this process. The product never knows.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from typing import Any, Callable, List


# --- shims ---------------------------------------------------------------------------------------

SHIMS: List[Callable[[], None]] = []


def shim(function: Callable[[], None]) -> Callable[[], None]:
    SHIMS.append(function)
    return function


@shim
def failures_are_sql_errors() -> None:
    """fakesnow answers a statement it cannot run (a bug, a feature it lacks) with HTTP 500,
    which the connector takes for an outage and retries for minutes: a test would hang until
    its timeout and say nothing. Answer as Snowflake answers a statement it rejects (a
    ProgrammingError, which dlt fails the job with at once), the traceback in the log."""
    import traceback

    import snowflake.connector.errors
    from fakesnow.cursor import FakeSnowflakeCursor

    execute = FakeSnowflakeCursor.execute

    def execute_or_reject(self: Any, command: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return execute(self, command, *args, **kwargs)
        except (snowflake.connector.errors.Error, NotImplementedError):
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure is the emulator's
            traceback.print_exc(file=sys.stderr)
            raise snowflake.connector.errors.ProgrammingError(
                msg=f"the emulator (fakesnow) failed: {type(exc).__name__}: {exc}",
                errno=999999, sqlstate="XX000") from exc

    FakeSnowflakeCursor.execute = execute_or_reject  # type: ignore[method-assign]


@shim
def several_statements_in_one_request() -> None:
    """dlt creates and alters all tables of a schema in one request (``CREATE TABLE ...;
    CREATE TABLE ...``, with ``num_statements=0``), which Snowflake runs one after the other.
    fakesnow parses one statement per request: run each in turn, answer with the last one's
    result (dlt reads nothing back from DDL)."""
    from fakesnow.cursor import FakeSnowflakeCursor
    from fakesnow.dialect import parse

    execute = FakeSnowflakeCursor.execute

    def execute_each(self: Any, command: str, *args: Any, **kwargs: Any) -> Any:
        statements = [s for s in parse(command) if s is not None] if ";" in command else []
        if len(statements) < 2:
            return execute(self, command, *args, **kwargs)
        for statement in statements:
            execute(self, statement.sql(dialect="snowflake"), *args, **kwargs)
        return self

    FakeSnowflakeCursor.execute = execute_each  # type: ignore[method-assign]


@shim
def put_into_a_quoted_stage_location() -> None:
    """dlt writes the stage of ``PUT`` as a string literal, ``PUT 'file:///...'
    '@"RACKWAVE"."%LEADS"/"<load id>"'``, which Snowflake accepts (a location with special
    characters must be quoted). fakesnow takes the quotes for part of the stage name and answers
    "does not start with @": hand it the location without them."""
    import fakesnow.transforms as transforms
    from sqlglot import exp

    put_stage = transforms.put_stage

    def unquoted(expression: Any, *args: Any, **kwargs: Any) -> Any:
        target = expression.args.get("target") if isinstance(expression, exp.Put) else None
        if isinstance(target, exp.Var):
            text = target.text("this")
            if len(text) > 1 and text[0] == text[-1] == "'":
                expression.set("target", exp.Var(this=text[1:-1]))
        return put_stage(expression, *args, **kwargs)

    transforms.put_stage = unquoted


@shim
def copy_options_as_dlt_writes_them() -> None:
    """dlt's ``COPY INTO`` separates the ``FILE_FORMAT`` options with commas (``(TYPE = 'JSON',
    BINARY_FORMAT = 'BASE64')``) and quotes ``MATCH_BY_COLUMN_NAME = 'CASE_INSENSITIVE'``; Snowflake
    takes both spellings. fakesnow's parser leaves an empty ``SequenceProperties`` for each comma
    (its option reader then fails an assertion) and reads only the unquoted value: hand it the
    options without the empty entries and the value unquoted."""
    import fakesnow.cursor
    from sqlglot import exp

    copy_into = fakesnow.cursor.copy_into

    def normalised(duck_conn: Any, database: Any, schema: Any, expr: Any, *args: Any,
                   **kwargs: Any) -> Any:
        for param in expr.args.get("params") or []:
            name = param.this.name.upper()
            if name == "FILE_FORMAT":
                param.set("expressions", [
                    e for e in param.expressions
                    if not (isinstance(e, exp.SequenceProperties) and not e.expressions)])
            elif name == "MATCH_BY_COLUMN_NAME" and isinstance(param.expression, exp.Literal):
                param.set("expression", exp.Var(this=param.expression.name))
        return copy_into(duck_conn, database, schema, expr, *args, **kwargs)

    fakesnow.cursor.copy_into = normalised


@shim
def json_lines_into_columns() -> None:
    """dlt loads JSONL files (its format for Snowflake, and the one the `rackwave` command picks)
    with ``COPY INTO <table> ... FILE_FORMAT = (TYPE = 'JSON') MATCH_BY_COLUMN_NAME = ...``:
    Snowflake puts each top-level key into the column of that name. fakesnow loads a JSON file
    only whole, one VARIANT per line. With MATCH_BY_COLUMN_NAME, read each key into its column
    instead: VARIANT columns take the JSON value, the others the text cast to the column's type
    (ISO timestamps, numbers, booleans, as dlt writes them); a JSON null is SQL NULL. A file
    with no rows loads nothing, as in Snowflake."""
    import fakesnow.copy_into as module
    import fakesnow.cursor
    from sqlglot import exp, parse_one

    local = threading.local()
    copy_into = fakesnow.cursor.copy_into  # the previous shim's, when it is applied first
    inserts = module._inserts

    def remembering(duck_conn: Any, database: Any, schema: Any, *args: Any, **kwargs: Any) -> Any:
        local.where = (duck_conn, database, schema)
        try:
            return copy_into(duck_conn, database, schema, *args, **kwargs)
        finally:
            local.where = None

    def by_column(expr: Any, params: Any, urls: List[str], *args: Any, **kwargs: Any) -> Any:
        if (not isinstance(params.file_format, module.ReadJSON)
                or params.match_by_column_name == module.MatchByColumnName.NONE
                or isinstance(expr.args["files"][0], exp.Subquery)):
            return inserts(expr, params, urls, *args, **kwargs)
        duck_conn, database, schema = local.where
        table = module._extract_table(expr.this)
        columns = module._describe_table(table, duck_conn, database, table.db or schema)
        exact = params.match_by_column_name == module.MatchByColumnName.CASE_SENSITIVE
        statements = []
        for url in urls:
            source = params.file_format.read_expression(url).sql(dialect="duckdb")
            keys = [k for (k,) in duck_conn.execute(
                f"SELECT DISTINCT unnest(json_keys(json)) FROM {source}").fetchall()]
            by_name = {(k if exact else k.upper()): k for k in keys}
            selected = []
            for column, kind in columns:
                key = by_name.get(column if exact else column.upper())
                if key is None:
                    continue
                path = "'$.\"" + key.replace("'", "''").replace('"', '\\"') + "\"'"
                value = (f"json_extract(json, {path})" if kind == "JSON"
                         else f"CAST(json_extract_string(json, {path}) AS {kind})")
                selected.append(f"CASE WHEN json_type(json, {path}) IN ('NULL') OR "
                                f"json_type(json, {path}) IS NULL THEN NULL ELSE {value} END "
                                f'AS "{column}"')
            if not selected:  # a file with no rows (a resource empty at its first load): no
                column, kind = columns[0]  # key; an insert of no rows
                selected.append(f'CAST(NULL AS {kind}) AS "{column}"')
                source = f"{source} WHERE false"
            statements.append(parse_one(
                f"SELECT {', '.join(selected)} FROM {source}", read="duckdb"))
        return [exp.Insert(this=expr.this, expression=s, by_name=True) for s in statements]

    fakesnow.cursor.copy_into = remembering
    module._inserts = by_column


@shim
def null_timestamps_stay_null() -> None:
    """Snowflake sends a timestamp as a struct (epoch, fraction[, timezone]) in its Arrow
    results; fakesnow builds that struct without the column's nulls, so a NULL timestamp reads
    back as 1970-01-01 (a never-flagged ``_rackwave_deleted_at`` looked flagged). Build it with
    the column's null mask."""
    import fakesnow.arrow as module
    import pyarrow as pa
    import pyarrow.compute as pc

    to_struct = module.timestamp_to_sf_struct

    def with_nulls(ts: Any) -> Any:
        if isinstance(ts, pa.ChunkedArray):
            ts = ts.combine_chunks()
        if not ts.null_count:
            return to_struct(ts)
        struct = to_struct(pc.fill_null(ts, pa.scalar(0, ts.type)))
        return pa.StructArray.from_arrays(
            [struct.field(i) for i in range(struct.type.num_fields)],
            fields=list(struct.type), mask=ts.is_null())

    module.timestamp_to_sf_struct = with_nulls


# --- the server ----------------------------------------------------------------------------------

def main() -> int:
    import uvicorn

    import fakesnow.server

    for apply in SHIMS:
        apply()

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(fakesnow.server.app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while thread.is_alive() and not server.started:
        time.sleep(0.02)
    if not server.started:
        return 1

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # the parent's end of stdin closes when the test process exits, however it exits
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print(f"READY {port}", flush=True)
    stop.wait()
    server.should_exit = True
    thread.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
