"""Where a test's pipeline loads, and how the test reads it back: DuckDB, Postgres, Delta lake,
BigQuery and Snowflake (local emulators, ``tests/emulators/bigquery.py`` and
``tests/emulators/fake_snowflake.py``; or real accounts of yours, ``LiveBigQueryWarehouse`` and
``LiveSnowflakeWarehouse``).

Each warehouse answers the same SQL (``?`` placeholders, ``rackwave.<table>``), so an end-to-end
test is written once and run on all of them; ``columns`` reports each column's type in dlt's
vocabulary, so tables can be compared across warehouses. A warehouse whose ``dataset`` is not
``rackwave`` (a real account's ``rackwave_live_<random>``) reads the stories' ``rackwave.``
qualifier as its own dataset.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import duckdb

if TYPE_CHECKING:
    from emulators.bigquery import BigQueryEmulator

DATASET = "rackwave"

#: Real accounts' settings, read at import: the per-test isolation (``conftest.isolated_dlt``)
#: clears DESTINATION__* from the environment before each test.
LIVE_ENV: Dict[str, str] = {k: v for k, v in os.environ.items()
                            if k.startswith(("DESTINATION__", "GOOGLE_APPLICATION_CREDENTIALS"))}
#: destination: (the switch that allows a run on a real account, the prefix of its credentials)
LIVE_SWITCHES = {
    "bigquery": ("RACKWAVE_LIVE_BIGQUERY", "DESTINATION__BIGQUERY__CREDENTIALS"),
    "snowflake": ("RACKWAVE_LIVE_SNOWFLAKE", "DESTINATION__SNOWFLAKE__CREDENTIALS"),
    "motherduck": ("RACKWAVE_LIVE_MOTHERDUCK", "DESTINATION__MOTHERDUCK__CREDENTIALS"),
}


def why_not_live(destination: str) -> str:
    """Why tests cannot run on a real ``destination`` account here; empty when they can."""
    switch, prefix = LIVE_SWITCHES[destination]
    if os.environ.get(switch) != "1":
        return f"{destination}: set {switch}=1 and its credentials to run against a real account"
    if not any(k.startswith(prefix) for k in LIVE_ENV) and not (
        destination == "bigquery" and "GOOGLE_APPLICATION_CREDENTIALS" in LIVE_ENV
    ):
        return f"{destination}: {switch}=1 but no {prefix}* credentials in the environment"
    return ""

_DUCKDB_TYPES = {"VARCHAR": "text", "TIMESTAMP WITH TIME ZONE": "timestamp", "JSON": "json",
                 "BIGINT": "bigint", "DOUBLE": "double", "BOOLEAN": "bool"}
_POSTGRES_TYPES = {"character varying": "text", "text": "text", "jsonb": "json",
                   "timestamp with time zone": "timestamp", "bigint": "bigint",
                   "double precision": "double", "boolean": "bool"}
#: BigQuery's REST API names (``TableFieldSchema.type``), legacy and standard SQL spellings
_BIGQUERY_TYPES = {"STRING": "text", "TIMESTAMP": "timestamp", "JSON": "json",
                   "INTEGER": "bigint", "INT64": "bigint", "FLOAT": "double", "FLOAT64": "double",
                   "BOOLEAN": "bool", "BOOL": "bool"}


class Warehouse:
    """A destination one test loads into."""

    name = "duckdb"
    #: the dataset runs load into; the stories' SQL says ``rackwave.<table>`` whatever it is
    dataset = DATASET
    #: seconds a run of the user's code in a process of its own may take
    run_timeout = 120

    def settings(self) -> Dict[str, str]:
        """Environment variables the run needs (credentials, bucket)."""
        return {}

    def _in_dataset(self, sql: str) -> str:
        """The stories' ``rackwave.<table>`` names, in this warehouse's dataset: only that
        qualifier (not ``rackwave_runs``, ``_rackwave_deleted_at`` or an ``@rackwave.`` email)."""
        if self.dataset == DATASET:
            return sql
        return re.sub(r"(?<![\w.@])rackwave\.(?=[A-Za-z_])", f"{self.dataset}.", sql)

    def query(self, sql: str, *params: Any) -> Tuple[List[str], List[Tuple[Any, ...]]]:
        raise NotImplementedError

    def columns(self, table: str) -> Dict[str, str]:
        """``{column: dlt data type}`` of a loaded table."""
        raise NotImplementedError

    def _information_schema(self, table: str, types: Dict[str, str]) -> Dict[str, str]:
        _, rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ?", self.dataset, table)
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


class BigQuerySQL(Warehouse):
    """The stories' SQL on BigQuery, wherever it runs: ``client()`` gives the client."""

    name = "bigquery"

    def client(self) -> Any:
        """A context manager giving a ``google.cloud.bigquery.Client``."""
        raise NotImplementedError

    def query(self, sql: str, *params: Any) -> Tuple[List[str], List[Tuple[Any, ...]]]:
        """``sql`` with ``?`` placeholders, run as BigQuery positional parameters; the
        ``<dataset>.<table>`` names resolve in the client's project."""
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter(None, _bigquery_type(p), p)
                              for p in params])
        with self.client() as client:
            result = client.query(self._in_dataset(sql), job_config=config).result()
            return [f.name for f in result.schema], [tuple(row.values()) for row in result]

    def columns(self, table: str) -> Dict[str, str]:
        """Emulator shim ``columns_from_a_query``: the emulator's table metadata (``tables.get``,
        ``INFORMATION_SCHEMA.COLUMNS``) is taken once, when ``CREATE TABLE`` runs, and from Arrow
        types: a column dlt adds later with ``ALTER TABLE ... ADD COLUMN`` is missing from it, and
        a ``JSON`` column reads as ``STRING``. The schema of a query's result comes from the
        table as DuckDB holds it now, JSON included; on BigQuery both agree."""
        with self.client() as client:
            schema = client.query(f"SELECT * FROM {self.dataset}.{table} LIMIT 0").result().schema
        return {f.name: _BIGQUERY_TYPES.get(f.field_type, f.field_type) for f in schema}


@dataclass
class BigQueryWarehouse(BigQuerySQL):
    """A BigQuery project of its own on the local emulator, one per test: the stories' tables
    in its dataset (``rackwave``), and ``drop`` removes what the test loaded."""

    emulator: "BigQueryEmulator"
    project: str
    folder: Path
    dataset: str = DATASET

    @classmethod
    def fresh(cls, emulator: "BigQueryEmulator", folder: Path,
              dataset: str = DATASET) -> "BigQueryWarehouse":
        return cls(emulator, f"rackwave-test-{uuid.uuid4().hex[:12]}", folder, dataset)

    def settings(self) -> Dict[str, str]:
        """dlt's BigQuery destination on the emulator, through dlt's and Google's own settings
        (nothing in the product knows of the emulator). The ``_shim_*`` / ``_SHIM_*`` entries work
        around emulator gaps, each named and explained where it is made."""
        return {
            # google-cloud-bigquery sends every request here instead of Google's endpoint
            "BIGQUERY_EMULATOR_HOST": self.emulator.url,
            "DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID": self.project,
            "DESTINATION__BIGQUERY__LOCATION": "US",
            **_shim_credentials_without_google(self.folder),
            "GOOGLE_CLOUD_PROJECT": self.project,  # else google.auth warns it found no project
            **_SHIM_UNCOMPRESSED_LOAD_FILES,
            **_FAIL_FAST,
        }

    def client(self) -> Any:
        return self.emulator.client(self.project)

    def drop(self) -> None:
        """Removes the test's datasets (the emulator keeps every table in memory)."""
        with self.emulator.client(self.project) as client:
            for dataset in client.list_datasets():
                client.delete_dataset(dataset.reference, delete_contents=True, not_found_ok=True)


def _bigquery_type(value: Any) -> str:
    from datetime import datetime

    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, datetime):
        return "TIMESTAMP"
    return "STRING"


def _shim_credentials_without_google(folder: Path) -> Dict[str, str]:
    """Emulator shim ``credentials_without_google``: the emulator checks none, but dlt needs
    some. Given only a project id, dlt asks Google's default credentials
    (``google.auth.default()``), which end by probing the GCE metadata server (169.254.169.254:
    off this machine) and then fail. An ``authorized_user`` credentials file with a token that
    expires in 2099 stops that search at its first step and is never refreshed (refreshing would
    call Google's token endpoint)."""
    path = folder / "bigquery-emulator-credentials.json"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "type": "authorized_user", "client_id": "emulator", "client_secret": "emulator",
            "refresh_token": "emulator", "token": "emulator", "expiry": "2099-01-01T00:00:00Z"}))
    return {"GOOGLE_APPLICATION_CREDENTIALS": str(path)}


#: Emulator shim ``uncompressed_load_files``: dlt gzips the files it uploads in load jobs; the
#: emulator's upload endpoint reads the bytes as they are and cannot parse gzipped JSONL or
#: parquet. dlt's own setting turns compression off (real BigQuery takes either).
_SHIM_UNCOMPRESSED_LOAD_FILES = {"NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION": "true"}

#: Not an emulator gap, a harness choice: dlt retries BigQuery calls for 60 s by default; a test
#: whose emulator died should fail in seconds, not hang until pytest's timeout.
_FAIL_FAST = {"DESTINATION__BIGQUERY__RETRY_DEADLINE": "10",
                   "DESTINATION__BIGQUERY__HTTP_TIMEOUT": "30"}


def shim_quick_load_job_polls(monkeypatch: Any) -> None:
    """Emulator shim ``quick_load_job_polls`` (speed only): dlt's BigQuery loader sleeps 1 s
    before each look at a load job, sized for BigQuery, where a job takes seconds; the emulator
    ends one in milliseconds, so each run spent most of its time asleep (the BigQuery stories took
    93 s instead of 67 s). For the test calling it (``monkeypatch``), dlt looks every 0.1 s."""
    from dlt.common.runtime.signals import sleep
    from dlt.destinations.impl.bigquery import bigquery

    monkeypatch.setattr(bigquery, "sleep", lambda seconds: sleep(min(seconds, 0.1)))


_SNOWFLAKE_TYPES = {"TEXT": "text", "VARCHAR": "text", "VARIANT": "json", "TIMESTAMP_TZ": "timestamp",
                    "TIMESTAMP_LTZ": "timestamp", "FLOAT": "double", "BOOLEAN": "bool"}


class SnowflakeSQL(Warehouse):
    """The stories' SQL on Snowflake, wherever it runs: ``connect()`` gives a connector session
    with qmark placeholders (``?``, as the stories write).

    dlt's snowflake destination upper-cases identifiers (schema ``RACKWAVE``, table ``LEADS``,
    column ``_DLT_LOAD_ID``) and quotes them; the stories' unquoted ``rackwave.leads`` and ``id``
    resolve to those as in Snowflake, and result columns are reported lower-case, as dlt names
    them."""

    name = "snowflake"

    def connect(self) -> Any:
        raise NotImplementedError

    def query(self, sql: str, *params: Any) -> Tuple[List[str], List[Tuple[Any, ...]]]:
        con = self.connect()
        try:
            cur = con.cursor()
            cur.execute(self._in_dataset(sql), params)
            return [d[0].lower() for d in cur.description], [tuple(r) for r in cur.fetchall()]
        finally:
            con.close()

    def columns(self, table: str) -> Dict[str, str]:
        # NUMBER is bigint with scale 0 (dlt's NUMBER(19,0)), a decimal otherwise
        _, rows = self.query(
            "SELECT column_name, data_type, numeric_scale FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ?", self.dataset.upper(), table.upper())
        return {name.lower(): ("bigint" if kind == "NUMBER" and not scale
                               else _SNOWFLAKE_TYPES.get(kind, kind))
                for name, kind, scale in rows}


@dataclass
class SnowflakeWarehouse(SnowflakeSQL):
    """A database of its own on the Snowflake emulator (tests/emulators/fake_snowflake.py)."""

    emulator: Any  # snowflake_emulator.SnowflakeEmulator
    database: str
    dataset: str = DATASET

    def settings(self) -> Dict[str, str]:
        return {"DESTINATION__SNOWFLAKE__CREDENTIALS": self.emulator.credentials(self.database)}

    def connect(self) -> Any:
        return self.emulator.connect(self.database)


# --- real accounts ------------------------------------------------------------------------------

@contextlib.contextmanager
def with_environment(values: Dict[str, str]) -> Iterator[None]:
    """``values`` set in this process's environment for the block, the previous ones back after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LiveAccount(Warehouse):
    """A real account of yours (``LIVE_ENV``'s credentials): a new dataset per test,
    ``rackwave_live_<random>``, dropped by ``drop`` with everything in it. Reached through dlt's
    own configuration and clients, so it is the account a run loads."""

    run_timeout = 600  # load jobs and merges take seconds each on a real warehouse

    def __init__(self) -> None:
        self.dataset = f"rackwave_live_{uuid.uuid4().hex[:10]}"

    def settings(self) -> Dict[str, str]:
        prefixes = (f"DESTINATION__{self.name.upper()}__",
                    *(("GOOGLE_APPLICATION_CREDENTIALS",) if self.name == "bigquery" else ()))
        return {k: v for k, v in LIVE_ENV.items() if k.startswith(prefixes)}

    def dlt_client(self) -> Any:
        """dlt's job client for the account and the test's dataset, its settings resolved."""
        from dlt.common.schema import Schema
        from dlt.destinations.dataset import get_destination_clients

        with with_environment(self.settings()):
            client, _ = get_destination_clients(Schema("rackwave"), self.name,
                                                destination_dataset_name=self.dataset)
        return client

    def drop(self) -> None:
        """Drops the test's dataset (best effort: cleanup must not hide the test's result)."""
        try:
            with self.dlt_client().sql_client as sql:
                sql.drop_dataset()
        except Exception:  # noqa: BLE001
            pass


class LiveBigQueryWarehouse(LiveAccount, BigQuerySQL):
    """A real BigQuery project: ``DESTINATION__BIGQUERY__CREDENTIALS__*`` or
    ``GOOGLE_APPLICATION_CREDENTIALS`` (``DESTINATION__BIGQUERY__LOCATION`` if not US)."""

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        with self.dlt_client().sql_client as sql:
            yield sql.native_connection


class LiveSnowflakeWarehouse(LiveAccount, SnowflakeSQL):
    """A real Snowflake account: ``DESTINATION__SNOWFLAKE__CREDENTIALS`` (or its parts); the
    role needs ``CREATE SCHEMA`` on the database."""

    def connect(self) -> Any:
        import snowflake.connector

        params = self.dlt_client().config.credentials.to_connector_params()
        return snowflake.connector.connect(**params, paramstyle="qmark", autocommit=True)


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
