"""Which warehouse a run loads into, and what each one needs to hold the same tables.

The source emits the same Arrow tables whatever the destination; what differs is how dlt writes
them and the layout each warehouse rewards:

* DuckDB and MotherDuck: parquet files, bulk-loaded (the fastest path, see benchmarks/).
* Postgres: CSV files and COPY. dlt's CSV writer cannot carry an Arrow list, so ``tags`` (and
  any list or object column) is handed over as JSON text, which COPY parses into the ``jsonb``
  column the schema declares: faster and lighter than INSERT statements (benchmarks/README.md).
* BigQuery and Snowflake: JSONL, which carries ``tags`` into a JSON / VARIANT column (the source
  asks for it, ``settings.LOADER_FILE_FORMATS``, so plain dlt code gets it too). BigQuery tables
  are partitioned by ``created_at`` day and clustered by ``status`` (leads); Snowflake's leads
  table is clustered by ``status``.
* Lake files (``filesystem``): Delta tables by default, which dlt can merge. Plain parquet files
  can only be appended to: with ``lake_format = "parquet"`` every run must be a full scan, which
  replaces the files (the source refuses an incremental run there).

The command chooses no file format: the source's tables carry the one each destination needs,
and whatever is configured in dlt's own settings (a loader file format) wins.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Dict, List, Optional

import dlt
from dlt.common.destination.reference import Destination
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

from rackwave_source.options import validate_choice
from rackwave_source.exceptions import (
    ConfigurationError,
    MissingExtraError,
    WarehouseUnavailableError,
)

DESTINATIONS = ("duckdb", "postgres", "bigquery", "snowflake", "filesystem", "motherduck")
LAKE_FORMATS = ("delta", "parquet")
#: DuckDB's text for a file another process holds, and the holder when DuckDB knows it
DUCKDB_LOCK = re.compile(r'Could not set lock on file "(?P<path>[^"]+)"')
DUCKDB_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
DEFAULT_LAKE_FORMAT = "delta"
#: dlt config key of the lake format, beside the bucket_url it applies to
LAKE_FORMAT_KEY = "destination.filesystem.lake_format"
#: DuckDB's defaults (80 % of RAM, a thread per core) let its buffers grow with the table while
#: it loads parquet, so peak RSS grew with the account. With these it stays flat and a load is no
#: slower (benchmarks/README.md, peak RSS at 100,000 and 1,000,000 leads); DuckDB spills to a
#: temp folder beside the file if a merge ever needs more. Given as PRAGMAs, not dlt's
#: ``global_config``, which binds each value as a query parameter. (DuckDB's Python client imports
#: pandas to bind any parameter; dlt 1.31 binds its own on the first connection of every run,
#: ``SET GLOBAL checkpoint_threshold = ?``, so every dlt run on DuckDB pays that import.)
DUCKDB_LOAD_PRAGMAS: List[str] = [
    "memory_limit='64MB'",
    "threads=1",
    "preserve_insertion_order=false",
]


#: dlt's extras (as its "missing dependency" errors name them) -> this package's extra
EXTRAS = {"postgres": "postgres", "bigquery": "bigquery", "snowflake": "snowflake",
          "motherduck": "motherduck", "filesystem": "lake", "deltalake": "lake",
          "pyiceberg": "lake", "gs": "lake", "s3": "lake", "az": "lake"}


def missing_extra(exc: BaseException) -> Optional[MissingExtraError]:
    """dlt's ``MissingDependencyException`` (a destination's driver not installed; it advises
    ``pip install "dlt[snowflake]"``, which would install another dlt) as our error naming this
    package's extra, or None when ``exc`` is something else."""
    from dlt.common.exceptions import MissingDependencyException

    if not isinstance(exc, MissingDependencyException):
        return None
    wanted = " ".join(str(d) for d in exc.dependencies)
    found = re.search(r"dlt\[([a-z_]+)", wanted)
    extra = EXTRAS.get(found.group(1), found.group(1)) if found else "dev"
    return MissingExtraError(f"The {exc.caller}", wanted or "a package", extra, sys.executable)


def validate_destination(name: str) -> str:
    """A destination this project supports and tests (docs/destinations.md, one section each)."""
    return validate_choice("destination", name, DESTINATIONS) or "duckdb"


def lake_format(configured: Optional[str]) -> str:
    """``delta`` or ``parquet``: the argument, else ``[destination.filesystem] lake_format``."""
    value = configured or dlt.config.get(LAKE_FORMAT_KEY) or DEFAULT_LAKE_FORMAT
    return validate_choice("lake_format", value, LAKE_FORMATS) or DEFAULT_LAKE_FORMAT


def make_destination(name: str, duckdb_file: Optional[str]) -> Any:
    """The destination factory; DuckDB writes ``duckdb_file`` when the command manages it."""
    options: Dict[str, Any] = {}
    if duckdb_file is not None:
        options["credentials"] = DuckDbCredentials(duckdb_file, pragmas=DUCKDB_LOAD_PRAGMAS)
    return Destination.from_reference(name, **options)


def missing_destination_setting(destination: str, exc: Any) -> ConfigurationError:
    """A clear error for destination settings dlt could not find (raised before any request)."""
    fields = ", ".join(getattr(exc, "fields", []) or []) or "credentials"
    where = f"destination.{destination}.credentials"
    examples = {
        "postgres": "postgresql://loader:<password>@localhost:5432/analytics",
        "snowflake": "snowflake://loader:<password>@<account>/<database>?warehouse=<wh>&role=<role>",
        "motherduck": "md:rackwave (with the token in motherduck_token)",
        "bigquery": "a service-account JSON (project_id, private_key, client_email)",
        "filesystem": 'bucket_url = "s3://bucket/rackwave" or "file:///data/lake"',
    }
    return ConfigurationError(
        where,
        f"the {destination} destination is missing {fields}",
        f"Set it in .dlt/secrets.toml under [{where}] or in the environment variable "
        f"{where.upper().replace('.', '__')} ({examples.get(destination, 'see dlt docs')}); "
        "see docs/destinations.md, the section on this destination.",
    )


def is_unreachable(exc: BaseException) -> bool:
    """A warehouse that cannot be reached now (refused, timed out, DNS): worth running again.

    dlt passes most drivers' connection errors through unwrapped (psycopg2's OperationalError,
    Snowflake's, DuckDB's IOException for a locked file), so they are recognised by kind.
    """
    from dlt.common.destination.exceptions import DestinationTransientException

    if isinstance(exc, (DestinationTransientException, ConnectionError, TimeoutError)):
        return True
    if locked_duckdb_file(exc) is not None:
        return True
    return type(exc).__name__ in ("OperationalError", "InterfaceError", "ServiceUnavailable")


def unreachable_warehouse(destination: str, exc: BaseException) -> WarehouseUnavailableError:
    """Our transient error for a warehouse that cannot be reached, or failed for a while (exit
    code 75). A transient error that is no connection failure (DuckDB out of memory, a lock) is
    not called unreachable: its own first line says what it is; a DuckDB file another process
    holds says so (``locked_duckdb_file``)."""
    locked = locked_duckdb_file(exc)
    if locked is not None:
        return locked
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    cause = exc.__cause__ or exc.__context__
    connection = isinstance(exc, (ConnectionError, TimeoutError)) or type(
        cause if cause is not None else exc).__name__ in ("OperationalError", "InterfaceError",
                                                          "ServiceUnavailable", "ConnectionError")
    what = (f"Could not reach the {destination} warehouse" if connection
            else f"The {destination} warehouse failed with a temporary error")
    advice = ("Check its connection settings (host, port, credentials) and run again."
              if connection else "Run again; if it persists, the message above says why.")
    return WarehouseUnavailableError(
        f"{what}: {detail}. No cursor moved: the next run reads the same records again. {advice}"
    )


class WarehouseLockedError(WarehouseUnavailableError):
    """The DuckDB file is held open by another process (exit code 75: wait, or close it)."""


def locked_duckdb_file(exc: BaseException) -> Optional[WarehouseLockedError]:
    """DuckDB lets one process write a file and nobody else open it meanwhile; its IOException
    then names the file and, when it can, the holding program and pid. dlt wraps it in a
    connection error whose first 300 characters ended before either ("... IO Error: Could not
    set"), and called the warehouse unreachable. Found anywhere in ``exc``'s chain."""
    seen: Optional[BaseException] = exc
    visited = set()
    while seen is not None and id(seen) not in visited:
        found = DUCKDB_LOCK.search(str(seen))
        if found is not None:
            return duckdb_lock_error(found.group("path"), DUCKDB_LOCK_HOLDER.search(str(seen)))
        visited.add(id(seen))
        seen = seen.__cause__ or seen.__context__
    return None


def duckdb_lock_error(path: str, holder: Optional["re.Match[str]"]) -> WarehouseLockedError:
    who = (f"{holder.group('program')} (pid {holder.group('pid')})" if holder is not None
           else "another process (DuckDB does not say which)")
    return WarehouseLockedError(
        f"The DuckDB file {path} is locked by {who}: DuckDB lets one process write a file, and "
        "no other open it meanwhile (read_only=True included). Close that connection (a "
        "notebook's or a shell's duckdb.connect(...), another loader writing the same file) or "
        "wait for it to end, then run again. No cursor moved: the next run loads what this one "
        "would have."
    )
