"""Where a test's pipeline loads, and how the test reads it back: DuckDB, Postgres, Delta lake,
Snowflake (an emulator, tests/snowflake_emulator.py).

Each warehouse answers the same SQL (``?`` placeholders, ``rackwave.<table>``), so an end-to-end
test is written once and run on all of them; ``columns`` reports each column's type in dlt's
vocabulary, so tables can be compared across warehouses.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import duckdb

DATASET = "rackwave"

_DUCKDB_TYPES = {"VARCHAR": "text", "TIMESTAMP WITH TIME ZONE": "timestamp", "JSON": "json",
                 "BIGINT": "bigint", "DOUBLE": "double", "BOOLEAN": "bool"}
_POSTGRES_TYPES = {"character varying": "text", "text": "text", "jsonb": "json",
                   "timestamp with time zone": "timestamp", "bigint": "bigint",
                   "double precision": "double", "boolean": "bool"}


class Warehouse:
    """A destination one test loads into."""

    name = "duckdb"

    def settings(self) -> Dict[str, str]:
        """Environment variables the run needs (credentials, bucket)."""
        return {}

    def query(self, sql: str, *params: Any) -> Tuple[List[str], List[Tuple[Any, ...]]]:
        raise NotImplementedError

    def columns(self, table: str) -> Dict[str, str]:
        """``{column: dlt data type}`` of a loaded table."""
        raise NotImplementedError

    def _information_schema(self, table: str, types: Dict[str, str]) -> Dict[str, str]:
        _, rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ?", DATASET, table)
        return {name: types.get(kind, kind) for name, kind in rows}


@dataclass
class DuckDBWarehouse(Warehouse):
    path: Path
    name = "duckdb"

    def query(self, sql: str, *params: Any) -> Tuple[List[str], List[Tuple[Any, ...]]]:
        with duckdb.connect(str(self.path), read_only=True) as con:
            cur = con.execute(sql, list(params))
            return [d[0] for d in cur.description], cur.fetchall()

    def columns(self, table: str) -> Dict[str, str]:
        return self._information_schema(table, _DUCKDB_TYPES)


@dataclass
class PostgresWarehouse(Warehouse):
    dsn: str
    name = "postgres"

    def settings(self) -> Dict[str, str]:
        return {"DESTINATION__POSTGRES__CREDENTIALS": self.dsn}

    def query(self, sql: str, *params: Any) -> Tuple[List[str], List[Tuple[Any, ...]]]:
        import psycopg2

        with psycopg2.connect(self.dsn) as con, con.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), params)
            return [d[0] for d in cur.description], cur.fetchall()

    def columns(self, table: str) -> Dict[str, str]:
        return self._information_schema(table, _POSTGRES_TYPES)


@dataclass
class DeltaWarehouse(Warehouse):
    """Delta tables in a local folder, read with the ``deltalake`` package (as a lake user
    would), then queried through an in-memory DuckDB."""

    folder: Path
    name = "filesystem"

    def settings(self) -> Dict[str, str]:
        return {"DESTINATION__FILESYSTEM__BUCKET_URL": self.folder.as_uri()}

    def tables(self) -> Dict[str, Any]:
        from deltalake import DeltaTable

        found = {}
        for log in sorted((self.folder / DATASET).glob("*/_delta_log")):
            found[log.parent.name] = DeltaTable(str(log.parent)).to_pyarrow_table()
        return found

    def query(self, sql: str, *params: Any) -> Tuple[List[str], List[Tuple[Any, ...]]]:
        with duckdb.connect() as con:
            con.execute(f"CREATE SCHEMA {DATASET}")
            for name, arrow in self.tables().items():
                con.register("arrow_view", arrow)
                con.execute(f"CREATE TABLE {DATASET}.{name} AS SELECT * FROM arrow_view")
                con.unregister("arrow_view")
            cur = con.execute(sql, list(params))
            return [d[0] for d in cur.description], cur.fetchall()

    def columns(self, table: str) -> Dict[str, str]:
        import pyarrow as pa

        def kind(t: Any) -> str:
            if pa.types.is_string(t) or pa.types.is_large_string(t):
                return "text"
            if pa.types.is_timestamp(t):
                return "timestamp"
            if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t):
                return "json"
            if pa.types.is_integer(t):
                return "bigint"
            if pa.types.is_floating(t):
                return "double"
            if pa.types.is_boolean(t):
                return "bool"
            return str(t)

        schema = self.tables()[table].schema
        return {f.name: kind(f.type) for f in schema}


@dataclass
class ParquetWarehouse(Warehouse):
    """Plain parquet files in a local folder (``lake_format = "parquet"``), read with DuckDB's
    built-in ``read_parquet``."""

    folder: Path
    name = "filesystem"

    def settings(self) -> Dict[str, str]:
        return {"DESTINATION__FILESYSTEM__BUCKET_URL": self.folder.as_uri()}

    def query(self, sql: str, *params: Any) -> Tuple[List[str], List[Tuple[Any, ...]]]:
        with duckdb.connect() as con:
            con.execute(f"CREATE SCHEMA {DATASET}")
            for table in sorted((self.folder / DATASET).iterdir()):
                if table.is_dir() and not table.name.startswith("_dlt") and any(
                        table.glob("*.parquet")):
                    con.execute(f"CREATE VIEW {DATASET}.{table.name} AS SELECT * FROM "
                                f"read_parquet('{table}/*.parquet', union_by_name = true)")
            cur = con.execute(sql, list(params))
            return [d[0] for d in cur.description], cur.fetchall()


_SNOWFLAKE_TYPES = {"TEXT": "text", "VARCHAR": "text", "VARIANT": "json", "TIMESTAMP_TZ": "timestamp",
                    "TIMESTAMP_LTZ": "timestamp", "FLOAT": "double", "BOOLEAN": "bool"}


@dataclass
class SnowflakeWarehouse(Warehouse):
    """A database of its own on the Snowflake emulator (tests/snowflake_emulator.py).

    dlt's snowflake destination upper-cases identifiers (schema ``RACKWAVE``, table ``LEADS``,
    column ``_DLT_LOAD_ID``) and quotes them; the stories' unquoted ``rackwave.leads`` and ``id``
    resolve to those as in Snowflake, and result columns are reported lower-case, as dlt names
    them. ``?`` placeholders are the connector's qmark style."""

    emulator: Any  # snowflake_emulator.SnowflakeEmulator
    database: str
    name = "snowflake"

    def settings(self) -> Dict[str, str]:
        return {"DESTINATION__SNOWFLAKE__CREDENTIALS": self.emulator.credentials(self.database)}

    def query(self, sql: str, *params: Any) -> Tuple[List[str], List[Tuple[Any, ...]]]:
        con = self.emulator.connect(self.database)
        try:
            cur = con.cursor()
            cur.execute(sql, params)
            return [d[0].lower() for d in cur.description], [tuple(r) for r in cur.fetchall()]
        finally:
            con.close()

    def columns(self, table: str) -> Dict[str, str]:
        # NUMBER is bigint with scale 0 (dlt's NUMBER(19,0)), a decimal otherwise
        _, rows = self.query(
            "SELECT column_name, data_type, numeric_scale FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ?", DATASET.upper(), table.upper())
        return {name.lower(): ("bigint" if kind == "NUMBER" and not scale
                               else _SNOWFLAKE_TYPES.get(kind, kind))
                for name, kind, scale in rows}


# --- a PostgreSQL server of our own -------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_bin() -> Optional[Path]:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                        key=lambda p: int(Path(p).parent.parent.name))
    return Path(candidates[-1]).parent if candidates else None


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster on loopback (``initdb`` + ``pg_ctl``), or an existing one."""

    dsn_base: str  # postgresql://user:password@host:port
    folder: Optional[Path] = None
    bin_dir: Optional[Path] = None

    @classmethod
    def start(cls) -> "PostgresServer":
        bin_dir = _postgres_bin()
        if bin_dir is None:
            raise RuntimeError(
                "PostgreSQL server programs (initdb, pg_ctl) not found: install them "
                "(Debian: apt-get install postgresql) or point RACKWAVE_TEST_POSTGRES at a server "
                "(postgresql://user:password@host:port)")
        folder = Path(tempfile.mkdtemp(prefix="rackwave-pg-"))
        port = _free_port()
        server = cls(f"postgresql://postgres:postgres@127.0.0.1:{port}", folder, bin_dir)
        server._as_owner([str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", "postgres",
                          "-A", "trust", "-E", "UTF8", "--no-sync"], folder)
        server._as_owner([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-w", "-t", "60",
                          "-l", str(folder / "server.log"), "-o",
                          f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                          "-c synchronous_commit=off -c full_page_writes=off", "start"], folder)
        return server

    @staticmethod
    def _as_owner(command: List[str], folder: Path) -> None:
        """PostgreSQL refuses to run as root: as root, run it as the `postgres` user."""
        if os.geteuid() == 0:
            shutil.chown(folder, user="postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        if self.folder is None or self.bin_dir is None:
            return
        try:
            self._as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.folder / "data"),
                            "-m", "immediate", "stop"], self.folder)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _admin(self, sql: str) -> None:
        import psycopg2

        con = psycopg2.connect(self.dsn_base + "/postgres")
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(sql)
        finally:
            con.close()

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A new, empty database for one test; dropped afterwards."""
        name = f"rw_{uuid.uuid4().hex[:12]}"
        self._admin(f"CREATE DATABASE {name}")
        try:
            yield f"{self.dsn_base}/{name}"
        finally:
            for _ in range(3):
                try:
                    self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    break
                except Exception:  # noqa: BLE001 - a straggling connection: try again
                    time.sleep(0.2)
