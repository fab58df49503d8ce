"""``rackwave run`` (and plain ``rackwave``): load Rackwave leads and contacts into a warehouse
(DuckDB by default), then print what the run did.

    rackwave --sandbox                       # demo: local sandbox -> ./rackwave_data.duckdb
    rackwave                                 # credentials from .dlt/secrets.toml or env vars
    rackwave --destination postgres --full-scan

Runnable as ``python -m pipelines.rackwave_pipeline`` or ``python pipelines/rackwave_pipeline.py``
(the entry point is ``pipelines/cli.py``). ``run_pipeline`` is the run for callers: ``dlt deploy
pipelines/rackwave_pipeline.py`` reads its ``dlt.pipeline(...)`` call from this file.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # the process is the command: the entry point runs it, tuned
    if __package__ in (None, ""):  # run as a script: make the repo root importable
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from pipelines.cli import main

    sys.exit(main())

import argparse
import contextlib
import json
import shlex
import shutil
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.pipeline.exceptions import PipelineStepFailed

from rackwave_source import RESOURCES
from rackwave_source import settings as S
from rackwave_source.options import validate_resources

from pipelines.cli import Command
from pipelines.common import (
    DEFAULT_DUCKDB_FILE,
    DEFAULT_PIPELINE,
    add_shared_arguments,
    finish_interrupted_load,
    name_and_folder,
    own_duckdb_file,
    remember_duckdb_file,
    sandbox_server,
    unwrap,
    validated_source,
)
from pipelines.destinations import (
    DESTINATIONS,
    LAKE_FORMATS,
    is_unreachable,
    lake_format,
    make_destination,
    missing_destination_setting,
    unreachable_warehouse,
    validate_destination,
)
from pipelines.progress_display import command_progress
from pipelines.run_lock import pipeline_lock
from pipelines.run_report import Failure, failure_of, print_document, reserved_stdout, run_document
from pipelines.signals import stop_on_signals
from pipelines.summary import TableSummary, render, summarize


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
    # The source is made after its pipeline, as in ``pipeline.run(rackwave_source())``: it
    # validates every setting before the destination or the API is touched, and prepares this
    # pipeline (``source.before_reading``): another warehouse's state set aside, a pending load
    # of another warehouse refused, a killed run's leftovers repaired. Made first, it would
    # prepare whichever pipeline this process ran last (another dataset's, in one process).
    source = validated_source(kwargs, selected)
    remember_duckdb_file(pipeline, duckdb_file)  # after a drop, which clears the local state
    if pipeline.has_pending_data:
        finish_interrupted_load(pipeline, repaired=True)
    started = time.monotonic()
    # Rows before the run are reported only when known for free (a new DuckDB file holds none):
    # every figure of the summary comes from the run's own counts (rackwave_runs), and counting
    # the tables first was a large share of a run with nothing new.
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



class RunCommand(Command):
    """``rackwave [run]``: one load; exit 0 only when the run proved it read everything."""

    name = "run"
    description = "Load Rackwave leads and contacts into a warehouse (DuckDB by default)."

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--destination", default="duckdb", choices=DESTINATIONS,
                            help="where to load (default: duckdb, writing ./rackwave_data.duckdb);"
                                 " credentials and settings in .dlt/ as for any dlt destination")
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
                            help="BigQuery/Snowflake: stage load files in the bucket configured "
                                 "under [destination.filesystem] and load from there (large loads)")
        parser.add_argument("--export-schema", metavar="DIR", default=None,
                            help="write the loaded schema to DIR/rackwave.schema.yaml (dlt's export)")
        parser.add_argument("--json", action="store_true",
                            help="print the run's summary, or its failure, as one JSON document on "
                                 "stdout (messages stay on stderr; format in docs/operations.md)")

    def execute(self, args: argparse.Namespace) -> int:
        started = time.monotonic()
        result: Optional[RunResult] = None
        failure: Optional[Failure] = None
        with reserved_stdout(args.json):
            try:
                result = self.load(args)
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
                print("\n".join(explore_hints(args.duckdb_file or DEFAULT_DUCKDB_FILE,
                                               args.dataset, args.duckdb_file is not None,
                                               args.pipeline_name)))
        return failure.exit_code if failure is not None else 0

    def load(self, args: argparse.Namespace) -> RunResult:
        """The run, inside the pipeline's lock and the signal handling (and the sandbox)."""
        options = run_options(args)
        with contextlib.ExitStack() as stack:
            stack.enter_context(stop_on_signals())
            # first: a run that finds its pipeline running touches nothing
            stack.enter_context(pipeline_lock(get_dlt_pipelines_dir(), args.pipeline_name))
            if args.sandbox:
                from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

                server = stack.enter_context(
                    sandbox_server(args.sandbox_leads, args.sandbox_contacts))
                print(f"Sandbox with {args.sandbox_leads} leads and {args.sandbox_contacts} "
                      f"contacts listening at {server.base_url}", file=sys.stderr)
                options.update(base_url=server.base_url, client_id=DEMO_CLIENT_ID,
                               client_secret=DEMO_CLIENT_SECRET)
            return run_pipeline(**options)


def run_options(args: argparse.Namespace) -> Dict[str, Any]:
    """``run_pipeline``'s keyword arguments from the command's."""
    return dict(
        destination=args.destination,
        dataset=args.dataset,
        pipeline_name=args.pipeline_name,
        resources=[r.strip() for r in args.resources.split(",") if r.strip()],
        full_scan=args.full_scan,
        full_refresh=args.full_refresh,
        base_url=args.base_url,
        progress=args.progress,
        duckdb_path=args.duckdb_file,
        lake_format_name=args.lake_format,
        export_schema_path=args.export_schema,
        staging=args.staging,
    )
