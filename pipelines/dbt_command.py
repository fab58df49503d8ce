"""``rackwave dbt``: builds and tests the dbt project in ``rackwave_dbt/`` on the warehouse the
command loads, with the same ``--destination``, ``--duckdb-file`` and ``--dataset``.

dbt is run directly (dbt's own ``dbtRunner``, in this process: ``dbt build`` then ``dbt source
freshness``) with the project's ``profiles.yml``, whose values come from ``RACKWAVE_DBT_*``
environment variables set here from the options and from dlt's settings for the destination
(the same credentials a run uses). dlt's dbt runner (``dlt.dbt.package``) was measured and not
chosen: it runs ``deps``, ``seed``, ``run`` and ``test`` as four dbt processes, without
``build`` (tests would not stop the models downstream of a failure), 19 s against 6 s here for
the same project; and its DuckDB profile installs the httpfs, parquet and iceberg extensions on
every connection, a download that fails on a machine without internet access.

Exit codes as a run's: 0 every model built and every test passed (warnings allowed); 1 a model
or a test failed; 2 bad settings (dbt not installed, a destination dbt is not set up for here,
missing credentials, no DuckDB file); 75 the warehouse could not be reached or is locked.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination.reference import Destination

from rackwave_source.dlt_internals import bound_configuration
from rackwave_source.exceptions import (
    ConfigurationError,
    MissingExtraError,
    RackwaveError,
    RackwaveFatalError,
    RackwaveTransientError,
    WarehouseUnavailableError,
)

from pipelines.destinations import locked_duckdb_file, missing_destination_setting
from pipelines.cli import Command
from pipelines.common import DEFAULT_DATASET, DEFAULT_DUCKDB_FILE, own_duckdb_file
from pipelines.run_report import EXIT_CONFIG, EXIT_FATAL, EXIT_LOADED, EXIT_TEMPORARY

#: the dbt project shipped with the command: ``rackwave_dbt/`` beside ``pipelines/``, in a checkout
#: as in an installed wheel
DEFAULT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "rackwave_dbt"
#: the folder, in the one the command runs in, where dbt writes ``target/`` and ``logs/``
WORK_DIR = "rackwave_dbt"
#: destinations the project's profiles.yml has a target for, with the adapter dbt needs
DBT_ADAPTERS = {"duckdb": "dbt.adapters.duckdb", "postgres": "dbt.adapters.postgres"}
#: the variables profiles.yml reads (DBT_ENV_SECRET_*: dbt scrubs their values from its logs)
TARGET_VAR, DATASET_VAR, DUCKDB_FILE_VAR = ("RACKWAVE_DBT_TARGET", "RACKWAVE_DBT_DATASET",
                                            "RACKWAVE_DBT_DUCKDB_FILE")
PG_VARS = {"host": "RACKWAVE_DBT_PG_HOST", "port": "RACKWAVE_DBT_PG_PORT",
           "username": "RACKWAVE_DBT_PG_USER", "database": "RACKWAVE_DBT_PG_DATABASE",
           "password": "DBT_ENV_SECRET_RACKWAVE_PG_PASSWORD"}
PG_SSLMODE_VAR = "RACKWAVE_DBT_PG_SSLMODE"
#: node statuses of a dbt result that fail the build, and those that only warn
FAILED_STATUSES = ("error", "fail", "runtime error")
WARNING_STATUSES = ("warn",)
#: a database's error for a table that is not there (DuckDB's, Postgres')
MISSING_TABLE = re.compile(r'Table with name \S+ does not exist|relation "[^"]+" does not exist')


class DbtBuildFailed(RackwaveFatalError):
    """A model or a test of the dbt project failed (exit code 1)."""


@dataclass
class DbtOutcome:
    """What one dbt invocation did: counts per resource type, failures and warnings as lines."""

    passed: Dict[str, int] = field(default_factory=dict)  # warnings included
    failed: List[str] = field(default_factory=list)
    warned: List[str] = field(default_factory=list)
    skipped: int = 0
    missing_table: bool = False


# -- settings ---------------------------------------------------------------------------------
def dbt_environment(destination: str, dataset: str, duckdb_file: Optional[str]) -> Dict[str, str]:
    """The ``RACKWAVE_DBT_*`` values profiles.yml reads, for the warehouse the command loads
    (``check_destination`` first). Checked before dbt starts: a DuckDB file that does not exist
    is refused (dbt would create an empty one), missing Postgres credentials name dlt's
    setting."""
    values = {TARGET_VAR: destination, DATASET_VAR: dataset}
    if destination == "duckdb":
        values[DUCKDB_FILE_VAR] = existing_duckdb_file(duckdb_file)
    else:
        values.update(postgres_values())
    return values


def check_destination(destination: str) -> None:
    """A warehouse profiles.yml has a target for."""
    if destination not in DBT_ADAPTERS:
        raise ConfigurationError(
            "--destination",
            f"rackwave dbt runs on {' and '.join(DBT_ADAPTERS)}, not {destination}",
            "For another warehouse, install its dbt adapter, add a target for it to a copy of "
            "rackwave_dbt/profiles.yml and run `dbt build` (docs/integrations.md, dbt).")


def existing_duckdb_file(duckdb_path: Optional[str]) -> str:
    """The DuckDB file a run with the same options writes; it must exist already."""
    path = own_duckdb_file("duckdb", duckdb_path)
    if path is None:
        raise ConfigurationError(
            "destination.duckdb.credentials", "it is not a DuckDB file's path",
            "Pass --duckdb-file PATH, or run dbt yourself with a profile for it.")
    if not os.path.exists(path):
        raise ConfigurationError(
            "--duckdb-file", f"{path} does not exist, so nothing was loaded there yet",
            f"Load it first (`rackwave --duckdb-file {duckdb_path or DEFAULT_DUCKDB_FILE}`, the "
            "demo: `rackwave --sandbox`), or pass the file a run wrote.")
    return path


def postgres_values() -> Dict[str, str]:
    """The Postgres credentials a run uses (dlt's ``destination.postgres.credentials``)."""
    factory: Any = Destination.from_reference("postgres")
    try:
        credentials: Any = bound_configuration(factory, DEFAULT_DATASET).credentials
    except ConfigFieldMissingException as exc:
        raise missing_destination_setting("postgres", exc) from None
    values = {var: str(getattr(credentials, name) or "") for name, var in PG_VARS.items()}
    sslmode = (credentials.query or {}).get("sslmode")
    if sslmode:
        values[PG_SSLMODE_VAR] = str(sslmode)
    return values


def dbt_runner(destination: str) -> Any:
    """dbt's programmatic runner, or a clear error when dbt or the adapter is not installed."""
    for module in ("dbt.cli.main", DBT_ADAPTERS[destination]):
        if not installed(module):
            raise MissingExtraError("`rackwave dbt`", f"{module} (dbt-core 1.11 with the DuckDB "
                                    "and Postgres adapters)", "dbt", sys.executable)
    return importlib.import_module("dbt.cli.main").dbtRunner()


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (its parent packages missing included)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def project_dir(given: Optional[str]) -> Path:
    """The dbt project: ``--project-dir``, else the one shipped with the command."""
    folder = Path(given).resolve() if given else DEFAULT_PROJECT_DIR
    if not (folder / "dbt_project.yml").is_file():
        raise ConfigurationError(
            "--project-dir", f"{folder} has no dbt_project.yml",
            "Pass the folder of the rackwave dbt project (rackwave_dbt/ in the repository).")
    return folder


# -- running dbt --------------------------------------------------------------------------------
def invoke(runner: Any, command: List[str], folder: Path, extra: Sequence[str]) -> DbtOutcome:
    """One dbt command on the project, with its own profiles.yml; dbt prints its usual lines.
    A dbt that could not run at all (a connection refused, a locked file, a project that does
    not parse) raises our error."""
    args = [*command, "--project-dir", str(folder), "--profiles-dir", str(folder),
            *colours(extra), *work_paths(extra), *extra]
    result = runner.invoke(args)
    if result.exception is not None:
        raise dbt_failure(result.exception)
    return outcome_of(result.result)


def colours(extra: Sequence[str]) -> List[str]:
    """dbt colours its lines whatever the output is: ``rackwave dbt > build.log`` wrote ANSI
    codes into the file. No colour unless the output is a terminal; the user's own
    ``--use-colors`` / ``--no-use-colors``, or dbt's ``DBT_USE_COLORS``, wins."""
    if any(a in ("--use-colors", "--no-use-colors") for a in extra) or \
            "DBT_USE_COLORS" in os.environ:
        return []
    return [] if sys.stdout.isatty() else ["--no-use-colors"]


def work_paths(extra: Sequence[str]) -> List[str]:
    """dbt writes ``target/`` and ``logs/`` inside the project by default: inside the installed
    package. They go to ``./rackwave_dbt/`` of the folder the command runs in (in a checkout, that
    is the project itself), unless the user's ``--target-path`` / ``--log-path`` or dbt's
    ``DBT_TARGET_PATH`` / ``DBT_LOG_PATH`` say otherwise. No usage statistics unless
    ``DBT_SEND_ANONYMOUS_USAGE_STATS`` asks: dbt would keep its user id beside profiles.yml."""
    given = set(extra) | {a.split("=", 1)[0] for a in extra}
    work = Path.cwd() / WORK_DIR
    args: List[str] = []
    for flag, variable, folder in (("--target-path", "DBT_TARGET_PATH", "target"),
                                   ("--log-path", "DBT_LOG_PATH", "logs")):
        if flag not in given and variable not in os.environ:
            args += [flag, str(work / folder)]
    if "DBT_SEND_ANONYMOUS_USAGE_STATS" not in os.environ and not given & {
            "--send-anonymous-usage-stats", "--no-send-anonymous-usage-stats"}:
        args.append("--no-send-anonymous-usage-stats")
    return args


def outcome_of(execution: Any) -> DbtOutcome:
    """Counts and failures from dbt's results (models, tests, source freshness alike)."""
    outcome = DbtOutcome()
    for node_result in getattr(execution, "results", None) or []:
        node = node_result.node
        status = str(getattr(node_result.status, "value", node_result.status))
        kind = str(getattr(node.resource_type, "value", node.resource_type))
        line = f"{kind} {node.name}: {status}: {detail_of(node_result)}"
        if status in FAILED_STATUSES:
            outcome.failed.append(line)
            message = str(node_result.message or "")
            outcome.missing_table |= MISSING_TABLE.search(message) is not None
        elif status == "skipped":
            outcome.skipped += 1
        else:  # passed, a warning included (listed too)
            outcome.passed[kind] = outcome.passed.get(kind, 0) + 1
            if status in WARNING_STATUSES:
                outcome.warned.append(line)
    return outcome


def detail_of(node_result: Any) -> str:
    """dbt's message for a node; for source freshness, how old the newest record is."""
    age = getattr(node_result, "age", None)
    if age is not None:
        return (f"the newest created_at is {node_result.max_loaded_at:%Y-%m-%d %H:%M} UTC, "
                f"{age / 3600:.0f} hours ago")
    return str(node_result.message or "").strip()


def dbt_failure(exc: BaseException) -> RackwaveError:
    """Our error for a dbt that could not run: a locked DuckDB file or an unreachable Postgres
    is temporary (75); anything else is dbt's own message (1)."""
    locked = locked_duckdb_file(exc)
    if locked is not None:
        return locked
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
    if "could not connect" in text.lower() or "connection refused" in text.lower():
        return WarehouseUnavailableError(
            f"dbt could not reach the warehouse: {text}. Check its connection settings and run "
            "again.")
    return DbtBuildFailed(f"dbt could not run: {text}")


def build(runner: Any, folder: Path, extra: Sequence[str], load_hint: str) -> DbtOutcome:
    """``dbt build``; a failed model or test raises, naming each and what to do."""
    outcome = invoke(runner, ["build"], folder, extra)
    if outcome.failed:
        advice = (f"The tables are not there: load them first ({load_hint})."
                  if outcome.missing_table else
                  "Models downstream of a failure were skipped. See each one with `dbt build "
                  f"--select <name>` in {folder} (docs/integrations.md, dbt), fix the data or the "
                  "model, and run again.")
        raise DbtBuildFailed(
            f"dbt build failed: {len(outcome.failed)} failed, {sum(outcome.passed.values())} "
            f"passed, {outcome.skipped} skipped:\n  "
            + "\n  ".join(outcome.failed) + f"\n{advice}")
    return outcome


def summary(built: DbtOutcome, fresh: DbtOutcome) -> str:
    """The closing lines: what passed, and every warning (relationships, freshness)."""
    counts = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}"
                       for kind, n in sorted(built.passed.items()))
    lines = [f"dbt build passed: {counts or 'nothing selected'}."]
    lines += [f"warning: {line}" for line in built.warned + fresh.warned]
    return "\n".join(lines)


# -- the command --------------------------------------------------------------------------------
class DbtCommand(Command):
    """``rackwave dbt``: 0 built and tested, 1 a model or test failed, 2 settings, 75 the
    warehouse unreachable or locked."""

    name = "dbt"
    description = ("Build and test the dbt project (rackwave_dbt/) on the warehouse `rackwave` "
                   "loads: dbt build, then dbt source freshness. Arguments after `--` go to dbt "
                   "build (e.g. -- --select stg_rackwave__leads).")

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--destination", default="duckdb",
                            help=f"the warehouse the load wrote: {' or '.join(DBT_ADAPTERS)}")
        parser.add_argument("--dataset", default=DEFAULT_DATASET,
                            help="the dataset (schema) the load wrote; the models are built in it")
        parser.add_argument("--duckdb-file", default=None,
                            help=f"the DuckDB file the load wrote (default ./{DEFAULT_DUCKDB_FILE})")
        parser.add_argument("--project-dir", default=None,
                            help="the dbt project (default: the one shipped with the command); "
                                 "dbt writes target/ and logs/ in ./rackwave_dbt/")
        parser.add_argument("dbt_args", nargs="*", metavar="-- DBT_BUILD_ARGS",
                            help="arguments for dbt build, after `--`")

    def execute(self, args: argparse.Namespace) -> int:
        return build_and_test(args, list(args.dbt_args))


def build_and_test(args: argparse.Namespace, extra: List[str]) -> int:
    """dbt build, then dbt source freshness, on the warehouse the load wrote."""
    try:
        folder = project_dir(args.project_dir)
        check_destination(args.destination)
        runner = dbt_runner(args.destination)
        connection = dbt_environment(args.destination, args.dataset, args.duckdb_file)
        os.environ.update(connection)  # read by profiles.yml's env_var(); this process ends next
        load_hint = (f"rackwave --destination {args.destination} --dataset {args.dataset}"
                     + (f" --duckdb-file {args.duckdb_file}" if args.duckdb_file else ""))
        built = build(runner, folder, extra, load_hint)
        fresh = invoke(runner, ["source", "freshness"], folder, [])
        if fresh.failed:
            raise DbtBuildFailed(
                "dbt build passed, but source freshness failed:\n  " + "\n  ".join(fresh.failed)
                + "\nNo new records for longer than error_after allows: check that the loads "
                "run (rackwave_runs), or raise the threshold.")
    except RackwaveError as exc:
        temporary = isinstance(exc, RackwaveTransientError)
        print(f"error{' (temporary, safe to run again)' if temporary else ''}: {exc}",
              file=sys.stderr)
        if isinstance(exc, ConfigurationError):
            return EXIT_CONFIG
        return EXIT_TEMPORARY if temporary else EXIT_FATAL
    print(summary(built, fresh))
    return EXIT_LOADED
