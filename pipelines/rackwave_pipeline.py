"""Load Rackwave leads and contacts into a warehouse (DuckDB by default).

Runnable as ``python pipelines/rackwave_pipeline.py`` or, once installed, as ``rackwave``:

    rackwave --sandbox                       # demo: local sandbox -> ./rackwave_data.duckdb
    rackwave                                 # credentials from .dlt/secrets.toml or env vars
    rackwave --destination postgres --full-scan

Exit codes: 0 loaded; 2 bad settings; 1 a fatal error (credentials, API contract); 75 a
temporary failure (API down, rate limited): a scheduler may simply run it again later.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import json
import logging
import os
import shlex
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Arrow's default allocator (mimalloc) keeps memory per thread; with 16 threads decoding pages
# and dlt writing parquet, peak RSS measured 354 MB against 267 MB with the system allocator, at
# the same speed (benchmarks/README.md). Read once, when pyarrow loads: so it is set here, before
# dlt imports pyarrow, and only for this command (an explicit setting wins).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

#: this module is the process's command: ``python -m``, run as a script, or the ``rackwave``
#: console script (pyproject.toml), which imports it first; not a test's or a caller's import
_COMMAND = __name__ == "__main__" or os.path.basename(sys.argv[0]) == "rackwave"
_COLLECTING = gc.isenabled()
if _COMMAND:  # the objects the imports below make live as long as the command: see
    gc.disable()  # spare_the_collector; frozen and collection resumed after them

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.common.schema.exceptions import DataValidationError
from dlt.extract.source import DltSource
from dlt.pipeline.exceptions import PipelineStepFailed

from rackwave_source import settings as S
from rackwave_source import RESOURCES, rackwave_source
from rackwave_source.warehouse.recovery import prepare_resume, set_aside_other_warehouse
from rackwave_source.warehouse.target import quiet_dlt
from rackwave_source.options import validate_resources
from rackwave_source.rows.drift import contract_error
from rackwave_source.exceptions import ConfigurationError, RackwaveError

from pipelines.destinations import (
    DESTINATIONS,
    LAKE_FORMATS,
    is_unreachable,
    lake_format,
    make_destination,
    missing_destination_setting,
    missing_extra,
    unreachable_warehouse,
    validate_destination,
)
from pipelines.run_lock import pipeline_lock
from pipelines.run_report import (
    Failure,
    failure_of,
    parse_arguments,
    print_document,
    reserved_stdout,
    run_document,
)
from pipelines.signals import stop_on_signals
from pipelines.progress import command_progress
from pipelines.summary import TableSummary, render, summarize

if _COMMAND:
    gc.freeze()
    if _COLLECTING:
        gc.enable()

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
#: allocations between two collections of the youngest generation (Python's default: 700)
GC_YOUNG_THRESHOLD = 10_000


@dataclass
class RunResult:
    """What one pipeline run did, for the CLI and for callers."""

    pipeline: dlt.Pipeline
    tables: List[TableSummary]
    seconds: float
    destination: str
    dataset: str
    extra: Dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        return render(self.tables, self.destination, self.dataset, self.seconds)


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


def finish_interrupted_load(pipeline: dlt.Pipeline) -> None:
    """Loads what a run killed or failed after its extract left behind, before this run reads.

    This is dlt's own resume (``pipeline.run()`` with a pending package loads it and returns),
    done first so that this run then reads the API as usual. It is safe because every run merges
    on ``id``, full scans too: a package loaded twice, or a job run again, changes nothing.
    """
    print(
        f"A previous run of pipeline `{pipeline.pipeline_name}` did not finish loading; its "
        "load is finished first.",
        file=sys.stderr,
    )
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


def run_pipeline(
    *,
    destination: str = "duckdb",
    dataset: str = "rackwave",
    pipeline_name: str = "rackwave",
    resources: Optional[Sequence[str]] = None,
    full_scan: bool = False,
    full_refresh: bool = False,
    base_url: Optional[str] = None,
    client_id: Optional[str] = None,
    client_secret: Optional[str] = None,
    progress: Optional[bool] = False,
    duckdb_path: Optional[str] = None,
    pipelines_dir: Optional[str] = None,
    source_options: Optional[Dict[str, Any]] = None,
    lake_format_name: Optional[str] = None,
    export_schema_path: Optional[str] = None,
    staging: Optional[str] = None,
) -> RunResult:
    """Runs one load and returns its summary. Raises our errors unwrapped from dlt's."""
    selected = list(validate_resources(list(resources or RESOURCES), RESOURCES))
    destination = validate_destination(destination)
    lake = lake_format(lake_format_name) if destination == "filesystem" else None
    kwargs: Dict[str, Any] = dict(source_options or {})
    if base_url:
        kwargs["base_url"] = base_url
    if client_id is not None:
        kwargs["client_id"] = client_id
    if client_secret is not None:
        kwargs["client_secret"] = client_secret
    if full_scan:
        kwargs["full_scan"] = True
    # Settings are validated here, before the pipeline touches the destination or the API.
    source = validated_source(kwargs, selected)

    duckdb_file = own_duckdb_file(destination, duckdb_path)
    fresh_duckdb = duckdb_file is not None and not os.path.exists(duckdb_file)
    # dlt hints its optional arguments as ``str = None`` (implicit Optional), which mypy reads
    # as ``str``: None for pipelines_dir, export_schema_path and progress is dlt's own default.
    pipeline: dlt.Pipeline = dlt.pipeline(
        destination=make_destination(destination, duckdb_file),
        dataset_name=dataset,
        progress=command_progress(progress),
        export_schema_path=export_schema_path,  # type: ignore[arg-type]
        staging=staging,
        **name_and_folder(pipeline_name, pipelines_dir),
    )
    set_aside_other_warehouse(pipeline)  # before a pending load could go to the wrong one
    remember_duckdb_file(pipeline, duckdb_file)
    if pipeline.has_pending_data:
        finish_interrupted_load(pipeline)
    started = time.monotonic()
    # Rows before the run are reported only when known for free (a new DuckDB file holds none):
    # every figure of the summary comes from the run's own counts (rackwave_runs), and counting
    # the tables first cost 0.15 s of every run, a sixth of a run with nothing new.
    before: Optional[Dict[str, int]] = {name: 0 for name in selected} if fresh_duckdb else None
    try:
        # None is each argument's default in dlt, hinted as an implicit Optional (see above)
        if full_refresh:
            keep_push_log(pipeline)
        pipeline.run(
            source,
            refresh="drop_sources" if full_refresh else None,  # type: ignore[arg-type]
            table_format="delta" if lake == "delta" else None,  # type: ignore[arg-type]
        )
    except PipelineStepFailed as exc:
        error = unwrap(exc)
        if isinstance(error, ConfigFieldMissingException):
            raise missing_destination_setting(destination, error) from None
        if error is exc and exc.step in ("sync", "load") and is_unreachable(exc.exception):
            raise unreachable_warehouse(destination, exc.exception) from None
        if error is exc:
            raise
        # Re-raised bare: chaining it to dlt's wrapper (which already contains it) makes a cycle.
        raise error from None
    tables = summarize(pipeline, selected, before if not full_refresh else {})
    return RunResult(pipeline, tables, time.monotonic() - started, destination, dataset)


def keep_push_log(pipeline: dlt.Pipeline) -> None:
    """``rackwave --full-refresh`` drops the tables of the source's schema, and the push log
    (``rackwave push``) is written through the same pipeline, so it is listed there. It leaves
    the schema first (the warehouse's table stays; the next push lists it again): the refresh of
    the loaded data keeps the audit of what was written into the CRM. On a runner without the
    pipeline's local state, the schema is restored from the warehouse first, as the run would."""
    if not pipeline.schema_names:
        pipeline.sync_destination()
    if S.SOURCE_NAME not in pipeline.schemas:
        return
    schema = pipeline.schemas[S.SOURCE_NAME]
    if S.PUSH_LOG_TABLE in schema.tables:
        schema.drop_tables([S.PUSH_LOG_TABLE])
        pipeline.schemas.save_schema(schema)


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


#: the subcommands, one line each in ``rackwave --help`` (each has its own ``--help``)
SUBCOMMANDS = (
    ("check", "check settings, credentials and the API; say what the next run would do"),
    ("push", "create leads in Rackwave from warehouse rows, exactly once (reverse ETL)"),
    ("dbt", "build and test the dbt project on the warehouse the runs load"),
    ("sql", "query what the runs loaded: a table, CSV or JSON; a shell with no query"),
)


def version_line() -> str:
    """``rackwave --version``: this package's version and the dlt it runs on."""
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return f"rackwave {of('rackwave-source')} (dlt {of('dlt')})"


def build_parser() -> argparse.ArgumentParser:
    commands = "\n".join(f"  {name:<8}{what}" for name, what in SUBCOMMANDS)
    parser = argparse.ArgumentParser(
        prog="rackwave",
        usage="rackwave [options]\n       rackwave {check,push,dbt,sql} [options]",
        description="Load Rackwave leads and contacts into a warehouse (DuckDB by default).",
        epilog=f"commands:\n{commands}\n\n`rackwave <command> --help` shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_line())
    parser.add_argument("--destination", default="duckdb", choices=DESTINATIONS,
                        help="where to load (default: duckdb, writing ./rackwave_data.duckdb); "
                             "credentials and settings in .dlt/ as for any dlt destination")
    parser.add_argument("--lake-format", choices=LAKE_FORMATS, default=None,
                        help="filesystem destination: delta tables (default, merged) or plain "
                             "parquet files (every run must then be a --full-scan)")
    add_shared_arguments(parser, "load")
    parser.add_argument("--full-scan", action="store_true",
                        help="read everything: merge updates and remove deleted records")
    parser.add_argument("--full-refresh", action="store_true",
                        help="drop the tables and the stored state, then load from scratch")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show progress per resource (default: on a terminal only; "
                             "elsewhere --progress prints a line every few seconds)")
    parser.add_argument("--staging", choices=["filesystem"], default=None,
                        help="BigQuery/Snowflake: stage load files in the bucket configured under "
                             "[destination.filesystem] and load from there (large loads)")
    parser.add_argument("--export-schema", metavar="DIR", default=None,
                        help="write the loaded schema to DIR/rackwave.schema.yaml (dlt's export)")
    parser.add_argument("--json", action="store_true",
                        help="print the run's summary, or its failure, as one JSON document on "
                             "stdout (messages stay on stderr; format in docs/operations.md)")
    return parser


def spare_the_collector() -> None:
    """For a process that is this command: the objects alive now (the modules imported: dlt,
    pyarrow, duckdb, ours), and at exit every object left, are moved out of the cyclic garbage
    collector's reach (``gc.freeze``). Its full collections would otherwise traverse them again
    and again for nothing: while they are imported (0.05 s; paused then, see ``_COMMAND``), once
    during a run (0.05 s) and several times in the interpreter's teardown (0.1-0.2 s): a third
    of a run with nothing new (benchmarks/README.md). Objects are still freed when their last
    reference goes; only reference cycles already garbage now or at exit are never collected,
    and the OS takes the memory back at exit. Not done when ``main`` is called with arguments
    from a longer-lived process (tests, a caller's code), whose garbage cycles (an unclosed
    connection) must still be collected. A collection is also started every 10,000 allocations
    instead of 700 (``GC_YOUNG_THRESHOLD``): a run makes few reference cycles, and 0.03 s of
    collections less."""
    gc.freeze()
    atexit.register(gc.freeze)
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


class SwitchSaidOnce(logging.Filter):
    """dlt warns, whenever a pipeline is made, that the destination in its local state "differs
    ... and will be ignored" after a change of ``--destination``. Every command uses the warehouse
    it is given, and a run whose state belongs to another warehouse sets that state aside and
    says so in one line of its own (``recovery.set_aside_other_warehouse``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (" in state differs from destination " in message
                    or message.startswith("The state staging destination"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    if argv is None:  # the process is this command (console script, python -m)
        spare_the_collector()
    quiet_dlt(SwitchSaidOnce)  # once per process (rackwave_source/warehouse/target.py)
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["check"]:  # `rackwave check`: imported here, off a plain run's path
        from pipelines.check import check_main

        return check_main(arguments[1:])
    if arguments[:1] == ["dbt"]:  # `rackwave dbt`: the dbt project on the loaded warehouse
        from pipelines.dbt_command import dbt_main

        return dbt_main(arguments[1:])
    if arguments[:1] == ["sql"]:  # `rackwave sql`: query what was loaded (pipelines/sql_command.py)
        from pipelines.sql_command import sql_main

        return sql_main(arguments[1:])
    if arguments[:1] == ["push"]:  # `rackwave push leads`: reverse ETL (pipelines/push.py)
        from pipelines.push import push_main

        return push_main(arguments[1:])
    started = time.monotonic()
    args = parse_arguments(build_parser(), argv)
    resources = [r.strip() for r in args.resources.split(",") if r.strip()]
    options: Dict[str, Any] = dict(
        destination=args.destination,
        dataset=args.dataset,
        pipeline_name=args.pipeline_name,
        resources=resources,
        full_scan=args.full_scan,
        full_refresh=args.full_refresh,
        base_url=args.base_url,
        progress=args.progress,
        duckdb_path=args.duckdb_file,
        lake_format_name=args.lake_format,
        export_schema_path=args.export_schema,
        staging=args.staging,
    )
    result: Optional[RunResult] = None
    failure: Optional[Failure] = None
    with reserved_stdout(args.json):
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(stop_on_signals())
                # first: a run that finds its pipeline running touches nothing
                stack.enter_context(pipeline_lock(get_dlt_pipelines_dir(), args.pipeline_name))
                if args.sandbox:
                    from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

                    server = stack.enter_context(
                        sandbox_server(args.sandbox_leads, args.sandbox_contacts)
                    )
                    print(f"Sandbox with {args.sandbox_leads} leads and {args.sandbox_contacts} "
                          f"contacts listening at {server.base_url}", file=sys.stderr)
                    options.update(base_url=server.base_url, client_id=DEMO_CLIENT_ID,
                                   client_secret=DEMO_CLIENT_SECRET)
                result = run_pipeline(**options)
        except (Exception, KeyboardInterrupt) as exc:
            failure = failure_of(unwrap(exc), args.destination)
            if not failure.expected:
                traceback.print_exc()
            print(failure.text, file=sys.stderr)
    if args.json:
        print_document(run_document(
            pipeline=args.pipeline_name, destination=args.destination, dataset=args.dataset,
            seconds=time.monotonic() - started, tables=result.tables if result else [],
            failure=failure))
    elif result is not None:
        print(result.render())
        if args.destination == "duckdb":
            print("\n".join(explore_hints(args.duckdb_file or DEFAULT_DUCKDB_FILE, args.dataset,
                                           args.duckdb_file is not None, args.pipeline_name)))
    return failure.exit_code if failure is not None else 0


def explore_hints(path: str, dataset: str, named_file: bool = False,
                  pipeline_name: str = DEFAULT_PIPELINE) -> List[str]:
    """Commands that query what the run loaded, working as written in a new shell: this
    interpreter by its full path (``python`` on PATH may be another one, without duckdb), and
    DuckDB's own shell, by its full path too, only when it is installed."""
    query = f"SELECT status, count(*) FROM {dataset}.leads GROUP BY 1"
    # Python string literals in double quotes (json.dumps writes valid ones): the shell's
    # single quotes around the code then need no escaping
    code = (f"import duckdb; print(duckdb.connect({json.dumps(path)}, read_only=True)"
            f".sql({json.dumps(query)}))")
    shell = shutil.which("duckdb")
    hints = [f"{shlex.quote(shell)} -readonly {shlex.quote(path)} {shlex.quote(query)}"] \
        if shell else []
    hints.append(f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}")
    command = os.path.abspath(sys.argv[0])
    if os.path.basename(command) == "rackwave" and os.access(command, os.X_OK):
        options = (f" --duckdb-file {shlex.quote(path)}" if named_file else "") + (
            f" --pipeline-name {shlex.quote(pipeline_name)}"
            if pipeline_name != DEFAULT_PIPELINE else "")
        hints.insert(0, f"{shlex.quote(command)} sql{options} {shlex.quote(query)}")
    return [f"{'Explore' if i == 0 else '     or'}: {hint}" for i, hint in enumerate(hints)]


if __name__ == "__main__":
    sys.exit(main())
