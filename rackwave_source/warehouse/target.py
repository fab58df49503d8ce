"""What the destination holds of a resource's table, read back through the running pipeline.

A full scan settles the rows it did not see (``deletions.py``) from what the destination itself
holds. SQL destinations are read through ``pipeline.dataset()``, lake tables through ``lake.py``;
whatever shape either hands back is made the shape the source loaded by ``readback.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from typing import Any, Dict, Iterator, Optional, Tuple

import dlt
import numpy as np
import pyarrow as pa

from dlt.common.configuration.exceptions import ConfigurationException

from rackwave_source import settings as S
from rackwave_source.dlt_internals import active_pipeline
from rackwave_source.exceptions import ConfigurationError
from rackwave_source.schema import LOAD_ID

#: the column a confirmed deletion sets (``deletions.py``); rows with it set are not counted
DELETED_AT = "_rackwave_deleted_at"

#: resource state: which warehouse and dataset the state's loads went to (``warehouse_mark``)
STATE_WAREHOUSE = "warehouse"
#: the destination settings that say where a load goes (never a password or key)
_WHERE_FIELDS = ("host", "port", "database", "project_id")
logger = logging.getLogger("rackwave_source")
#: marks already worked out, by pipeline, destination and dataset (resolving the destination's
#: settings takes tens of ms; a run asks once for the command and once per resource)
_MARKS: Dict[Tuple[int, int, str], Tuple[Any, str]] = {}


def destination_kind(pipeline: Any = None) -> str:
    """The destination's type (``duckdb``, ``postgres``, ``filesystem``...) of ``pipeline``, or
    of the pipeline running this extract; ``""`` when there is none."""
    pipeline = pipeline if pipeline is not None else active_pipeline()
    destination = getattr(pipeline, "destination", None)
    return "" if destination is None else str(destination.destination_type).rsplit(".", 1)[-1]


def warehouse_mark(pipeline: Any) -> Optional[str]:
    """Which warehouse and dataset ``pipeline`` loads, as a short hash: the destination's type,
    the dataset, and where it is (host, port, database or file, project, bucket; never a
    credential). None when that cannot be told yet (no destination, settings missing: the run
    then fails on those before loading)."""
    destination = getattr(pipeline, "destination", None)
    if pipeline is None or destination is None:
        return None
    key = (id(pipeline), id(destination), str(pipeline.dataset_name))
    known = _MARKS.get(key)
    if known is not None and known[0] is destination:  # the run's own, asked again
        return known[1]
    try:
        config = pipeline.destination_client().config  # resolved settings; nothing connects
    except (ConfigurationException, ValueError):
        return None
    credentials = getattr(config, "credentials", None)
    where = [destination_kind(pipeline), str(pipeline.dataset_name)]
    where += [str(getattr(credentials, name, None) or "") for name in _WHERE_FIELDS]
    where.append(str(getattr(config, "bucket_url", None) or ""))
    mark = hashlib.sha256("|".join(where).encode()).hexdigest()[:16]
    if len(_MARKS) >= 16:
        _MARKS.clear()
    _MARKS[key] = (destination, mark)  # holds the destination: its id is not reused meanwhile
    return mark


def claim_state(state: Dict[str, Any], mark: Optional[str], resource: str) -> None:
    """Makes ``state`` (a resource's) the state of the warehouse this run loads.

    dlt keeps one local state per pipeline name, whatever the destination: a pipeline run into
    one warehouse, then another, then back, carried the second one's cursor into the first,
    whose older state dlt did not restore over a newer local one. Records created in between
    were never read, and the run said "exact". A state whose loads went elsewhere is set aside:
    this run reads everything, merged into what the table holds, like a first run. (The command
    and a source made after its pipeline do better, before the run: ``recovery.
    set_aside_other_warehouse`` lets dlt restore the warehouse's own state instead.)"""
    if mark is None:
        return
    before = state.get(STATE_WAREHOUSE)
    if before is not None and before != mark:
        logger.warning("%s: the pipeline's state was written by loads into another warehouse or "
                       "dataset; this run reads everything into this one (give each warehouse "
                       "a pipeline name of its own to keep their states apart)", resource)
        state.clear()
    state[STATE_WAREHOUSE] = mark


def check_duckdb_location(pipeline: Any) -> None:
    """Refuses a run whose DuckDB file is not the one its code names (before any request).

    dlt keeps a pipeline's local state per name, shared by every folder of the user, and
    resolves a relative DuckDB path against the folder the pipeline was first run in (its
    ``initial_cwd``), or the file recorded there (``duckdb_database``). So the same code
    (``dlt.destinations.duckdb("rackwave_data.duckdb")``, pipeline ``rackwave``) run in a second
    folder loaded the first folder's file, exit 0, with that folder's state."""
    if pipeline is None or destination_kind(pipeline) != "duckdb":
        return
    params = getattr(pipeline.destination, "config_params", {}) or {}
    named = params.get("credentials")
    if not isinstance(named, str) or not named or named.startswith((":", "md:")) or \
            os.path.isabs(named):
        return
    try:
        recorded = pipeline.get_local_state_val("duckdb_database")
    except KeyError:
        recorded = None
    bound = recorded or os.path.join(str(params.get("local_dir") or os.getcwd()), named)
    here = os.path.abspath(named)
    if os.path.abspath(bound) == here:
        return
    raise ConfigurationError(
        "destination",
        f"pipeline `{pipeline.pipeline_name}` would load {bound}, not {here} as its code says: "
        "dlt keeps a pipeline's state per name for every folder of this user, and resolves a "
        "relative DuckDB path against the folder the pipeline first ran in",
        "Give this folder's pipeline a name of its own (dlt.pipeline(\"rackwave_<project>\", "
        "...)), or pass the file as an absolute path (dlt.destinations.duckdb(os.path.abspath("
        f"{named!r}))). Nothing was read or loaded.")


def table_format(table: str) -> Optional[str]:
    """The table format (``delta``...) a table got from ``pipeline.run(..., table_format=...)``:
    in the schema once the resource's first hints were taken; None outside a pipeline."""
    try:
        found = dlt.current.source_schema().tables.get(table, {}).get("table_format")
    except Exception:  # noqa: BLE001 - outside a pipeline
        return None
    return None if found is None else str(found)


def merged_variant_hints(resource: str) -> Dict[str, Any]:
    """Hints for an item of a merged table variant of ``resource`` (``rackwave_runs``,
    ``rackwave_quarantine``): the destination's file format (``loader_hints``); on the
    filesystem destination, the table format the resource's table got from
    ``pipeline.run(..., table_format="delta")``, which dlt gives the resource's own table only:
    so the variant is a Delta table beside Delta tables (and merges). Plain parquet files cannot
    merge: there it is appended to (as dlt would fall back to, with a warning)."""
    kind = destination_kind()
    if kind != "filesystem":
        return loader_hints(kind)
    found = table_format(resource)
    return {"table_format": found} if found else {"write_disposition": "append"}


def loader_hints(kind: str) -> Dict[str, Any]:
    """The ``file_format`` hint every table of the source carries on destination ``kind``
    (``settings.LOADER_FILE_FORMATS``): none where dlt's defaults load the source's Arrow
    items, or where dlt's own setting names a format."""
    wanted = S.LOADER_FILE_FORMATS.get(kind)
    if wanted is None or dlt.config.get(S.LOADER_FORMAT_CONFIG_KEY) is not None:
        return {}
    quiet_dlt(_ArrowAsJsonl)  # a side effect, listed in source.before_reading
    return {"file_format": wanted}


def quiet_dlt(kind: type) -> None:
    """Installs a filter of ``kind`` on dlt's logger, once per process. The source installs the
    filters below where it makes the choice they are about, so a plain ``pipeline.run`` is as
    quiet as the command."""
    dlt_logger = logging.getLogger("dlt")
    if not any(isinstance(f, kind) for f in dlt_logger.filters):
        dlt_logger.addFilter(kind())


@contextlib.contextmanager
def dlt_quiet(kind: type) -> Iterator[None]:
    """A filter of ``kind`` on dlt's logger while the body runs."""
    dlt_filter, dlt_logger = kind(), logging.getLogger("dlt")
    dlt_logger.addFilter(dlt_filter)
    try:
        yield
    finally:
        dlt_logger.removeFilter(dlt_filter)


class JsonAsText(logging.Filter):
    """Postgres hands JSON columns (``tags``) back as Python lists, which dlt, making them Arrow,
    encodes as JSON text, warning each time ("Arrow nested values require serialization to
    STRING", "Default conversion ... failed"). ``readback.py`` decodes that text: nothing to say."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("Arrow nested values require serialization to STRING" in message
                    or message.startswith("Default conversion to `string` for `data_type=json`"))


class _ArrowAsJsonl(logging.Filter):
    """dlt warns at every BigQuery or Snowflake load that the source's Arrow tables are written
    as JSONL by a converting writer ("native writer could not be found ... degrade
    performance"). That is the ``file_format`` hint above, on purpose: parquet cannot carry
    their JSON columns into either warehouse."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("yielded as arrow and job file format jsonl native writer could not be "
                    "found" in message)


def current_load_id() -> Optional[str]:
    """The id of the load package being extracted, or None (iterated outside a pipeline)."""
    try:
        return str(dlt.current.load_package_state()["load_id"])
    except Exception:  # noqa: BLE001 - no pipeline, no package
        return None


def with_load_id(table: pa.Table) -> pa.Table:
    """Every row stamped with the id of the load that brings it (``_dlt_load_id``), as dlt stamps
    rows it builds from dicts, so dbt models can select what a load brought. Done here, not by
    dlt's ``add_dlt_load_id`` setting, so a user's own pipeline gets it too."""
    load_id = current_load_id()
    if load_id is None:  # iterated outside a pipeline: no load
        return table
    if LOAD_ID in table.column_names:
        table = table.drop_columns([LOAD_ID])
    ids = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(table.num_rows, dtype=np.int8)), pa.array([load_id]))
    return table.append_column(pa.field(LOAD_ID, ids.type, nullable=False), ids)
