"""What the commands share: the defaults (pipeline, dataset, DuckDB file), the options a run and
``rackwave check`` take alike, the DuckDB file the command manages, finishing a load a killed run
left, and finding our own error inside dlt's wrappers.

Every command module imports from here, never from another command, so no command is a hub.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any, Dict, Iterator, List, Optional

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.schema.exceptions import DataValidationError
from dlt.extract.source import DltSource

from rackwave_source import RESOURCES, rackwave_source
from rackwave_source.warehouse.recovery import prepare_resume
from rackwave_source.rows.drift import contract_error
from rackwave_source.exceptions import ConfigurationError, RackwaveError
from pipelines.destinations import missing_extra

# Not "rackwave.duckdb": DuckDB names the catalog after the file, and a catalog named like the
# dataset ("rackwave") makes every `rackwave.leads` reference ambiguous, for dlt and for users.
DEFAULT_DUCKDB_FILE = "rackwave_data.duckdb"
#: dlt's setting naming the DuckDB file (secrets.toml or the environment: dlt refuses it in config.toml)
DUCKDB_CREDENTIALS_KEY = "destination.duckdb.credentials"
#: the pipeline's local-state key where dlt 1.31 looks for the DuckDB file (remember_duckdb_file)
DLT_LOCAL_DUCKDB_FILE_KEY = "duckdb_database"
DEFAULT_DATASET = "rackwave"
DEFAULT_PIPELINE = "rackwave"
SANDBOX_LEADS = 10_000
SANDBOX_CONTACTS = 5_000


def own_duckdb_file(destination: str, duckdb_path: Optional[str]) -> Optional[str]:
    """The DuckDB file this command manages, absolute (so it lands in the current folder whatever
    dlt's local_dir says): ``--duckdb-file``, else the file dlt's own settings name
    (``DESTINATION__DUCKDB__CREDENTIALS``, which dlt's tools read too), else
    ``./rackwave_data.duckdb``.

    None when the destination is not DuckDB, or when the configured credentials are more than a
    file name (a table of settings, ``:pipeline:``, a MotherDuck ``md:`` address): dlt resolves
    those itself.
    """
    if destination != "duckdb":
        return None
    if duckdb_path is None:
        configured: Any = dlt.config.get(DUCKDB_CREDENTIALS_KEY)
        if configured is not None and not is_duckdb_file_name(configured):
            return None
        duckdb_path = configured
    return os.path.abspath(duckdb_path or DEFAULT_DUCKDB_FILE)


def name_and_folder(pipeline_name: str, pipelines_dir: Optional[str]) -> Dict[str, Any]:
    """``dlt.pipeline``'s ``pipeline_name`` and ``pipelines_dir``, passed with ``**`` on purpose.

    `dlt deploy` reads these two arguments from this script's source and stops when they are
    not literals ("The value of 'pipelines_dir' argument ... cannot be determined"). Passed this
    way, it takes dlt's default folder and the name from dlt's config (``pipeline_name`` in
    .dlt/config.toml: ``rackwave``, the command's default), which is the pipeline it deploys.
    """
    return {"pipeline_name": pipeline_name, "pipelines_dir": pipelines_dir}


def is_duckdb_file_name(value: Any) -> bool:
    """A configured DuckDB credentials value that is just a file's path."""
    return isinstance(value, str) and bool(value) and not value.startswith((":", "md:"))


def remember_duckdb_file(pipeline: dlt.Pipeline, duckdb_file: Optional[str]) -> None:
    """Records the command's DuckDB file in the pipeline's local state, under the key dlt 1.31
    reads back for every pipeline it attaches to (``duckdb_database``: ``Pipeline.
    _bind_local_files`` hands it to the DuckDB configuration, which uses it unless an absolute path
    is configured). So ``dlt.attach("rackwave")``, ``dlt pipeline rackwave show`` and the
    dashboard open the file this run wrote, from any folder, with or without ``--duckdb-file``
    or a ``.dlt/`` folder. Call it on the pipeline that runs (after any ``drop()``, which clears
    the local state)."""
    if duckdb_file is not None:
        pipeline.set_local_state_val(DLT_LOCAL_DUCKDB_FILE_KEY, duckdb_file)


def finish_interrupted_load(pipeline: dlt.Pipeline, repaired: bool = False) -> None:
    """Loads what a run killed or failed after its extract left behind, before this run reads.

    This is dlt's own resume (``pipeline.run()`` with a pending package loads it and returns),
    done first so that this run then reads the API as usual. It is safe because every run merges
    on ``id``, full scans too: a package loaded twice, or a job run again, changes nothing.
    ``repaired``: the leftovers of the kill were already repaired (by the source, made after
    this pipeline: ``source.before_reading``).
    """
    print(
        f"A previous run of pipeline `{pipeline.pipeline_name}` did not finish loading; its "
        "load is finished first.",
        file=sys.stderr,
    )
    if not repaired:
        prepare_resume(pipeline)
    pipeline.run()


def unwrap(exc: BaseException) -> BaseException:
    """Finds our own error inside dlt's step/extraction wrappers (a frozen schema's violation
    becomes our ``SchemaContractError``). A stop by a signal (ours, dlt's
    ``SignalReceivedException``, Ctrl-C) is found too: dlt wraps it in its step error with no
    text, which read "the extract step failed:" and nothing more."""
    seen: Optional[BaseException] = exc
    visited = set()
    while seen is not None and id(seen) not in visited:
        if isinstance(seen, (RackwaveError, KeyboardInterrupt)):
            return seen
        if isinstance(seen, DataValidationError):
            return contract_error(seen)
        if isinstance(seen, ConfigFieldMissingException):
            return seen
        missing = missing_extra(seen)
        if missing is not None:
            return missing
        visited.add(id(seen))
        seen = seen.__cause__ or seen.__context__
    return exc


def validated_source(kwargs: Dict[str, Any], selected: List[str]) -> DltSource:
    """The source with every setting checked; missing credentials say where to put them (the
    same message from a run and from ``rackwave check``)."""
    try:
        return rackwave_source(**kwargs).with_resources(*selected)
    except ConfigFieldMissingException as exc:
        raise missing_credentials(exc) from None


def missing_credentials(exc: ConfigFieldMissingException) -> ConfigurationError:
    """What to do when dlt found no value for a setting the source or the push needs."""
    return ConfigurationError(
        ", ".join(exc.fields) or "a setting",
        "it is missing",
        "Put client_id and client_secret in .dlt/secrets.toml under [sources.rackwave], or "
        "set SOURCES__RACKWAVE__CLIENT_ID and SOURCES__RACKWAVE__CLIENT_SECRET "
        "(or try the local demo: rackwave --sandbox).",
    )


@contextlib.contextmanager
def sandbox_server(leads: int, contacts: int) -> Iterator[Any]:
    """Starts the local sandbox (demo data, demo credentials) for ``--sandbox``."""
    from rackwave_sandbox import Sandbox, SandboxConfig

    with Sandbox(SandboxConfig(leads=leads, contacts=contacts)).serve(port=0) as server:
        yield server


def add_shared_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    """The options a run and ``rackwave check`` take alike: which pipeline, dataset, resources,
    API and DuckDB file (``verb``: what the command does with the resources)."""
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="dataset/schema name")
    parser.add_argument("--pipeline-name", default=DEFAULT_PIPELINE, help="dlt pipeline name")
    parser.add_argument("--resources", default=",".join(RESOURCES),
                        help=f"comma-separated resources to {verb} (default: leads,contacts)")
    parser.add_argument("--sandbox", action="store_true",
                        help="start the local sandbox with demo data and use it")
    parser.add_argument("--sandbox-leads", type=int, default=SANDBOX_LEADS, help=argparse.SUPPRESS)
    parser.add_argument("--sandbox-contacts", type=int, default=SANDBOX_CONTACTS,
                        help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help="API base URL (overrides the configured environment)")
    parser.add_argument("--duckdb-file", default=None,
                        help=f"DuckDB file for --destination duckdb (default ./{DEFAULT_DUCKDB_FILE})")
