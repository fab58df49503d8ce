"""``rackwave push leads``: create leads in Rackwave from a warehouse query or a file, exactly once.

    rackwave push leads --query "SELECT name, email, phone FROM rackwave.scored_leads"
    rackwave push leads --from-file new_leads.csv --dry-run

The command is a shell over the source's destination (``rackwave_source.push_destination``):

1. it takes the lock of the warehouse pipeline (the push log is written through it) and of the
   push pipeline, and finishes a load either left pending;
2. it reads what the warehouse's ``rackwave_push_log`` already knows into the push journal (a new
   machine then sends nothing twice either);
3. it reads the rows (``push_input.py``), checks them all, and with ``--dry-run`` stops there;
4. it runs the push pipeline (dlt, into ``rackwave_push()``) with the rows that have no outcome;
5. it merges the outcomes not yet logged into ``rackwave_push_log``, in the warehouse pipeline.

A push killed between 4 and 5 leaves its outcomes in the journal; the next push logs them.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import traceback
from typing import Any, Dict, List, Optional, Sequence

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.pipeline import get_dlt_pipelines_dir

from rackwave_source import settings as S
from rackwave_source.push import UNCHANGED, outcome_counts, settled_rows
from rackwave_source.push_destination import RackwavePush, push_log, push_target
from rackwave_source.push_journal import PushJournal
from rackwave_source.push_rows import PushRow, ignored_columns

from pipelines.destinations import DESTINATIONS, make_destination, validate_destination
from pipelines.push_input import read_file, read_query, seed_journal
from pipelines.rackwave_pipeline import (
    DEFAULT_DATASET,
    DEFAULT_DUCKDB_FILE,
    DEFAULT_PIPELINE,
    finish_interrupted_load,
    missing_credentials,
    name_and_folder,
    own_duckdb_file,
    remember_duckdb_file,
    unwrap,
)
from pipelines.run_lock import pipeline_lock
from pipelines.run_report import (
    EXIT_LOADED,
    JSON_FORMAT_VERSION,
    Failure,
    failure_of,
    parse_arguments,
    print_document,
)
from pipelines.signals import stop_on_signals

PUSH_PIPELINE_SUFFIX = "_push"
SHOWN_REJECTS = 10


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rackwave push",
        description="Create leads in Rackwave from warehouse rows, exactly once. Columns map by "
                    "name to the API's fields: " + ", ".join(S.PUSH_FIELDS) + ".",
    )
    parser.add_argument("resource", choices=["leads"], help="what to create (leads)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--query", help="SQL run on the warehouse the command loads")
    source.add_argument("--from-file", metavar="PATH", help="a CSV or parquet file of rows")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the rows and tell what would be sent; send nothing")
    parser.add_argument("--destination", default="duckdb", choices=DESTINATIONS,
                        help="the warehouse to query and to log into (default: duckdb)")
    parser.add_argument("--duckdb-file", default=None,
                        help=f"DuckDB file for --destination duckdb (default ./{DEFAULT_DUCKDB_FILE})")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="dataset/schema of the log")
    parser.add_argument("--pipeline-name", default=DEFAULT_PIPELINE,
                        help="the loading pipeline, whose warehouse and lock the push shares")
    parser.add_argument("--base-url", help="API base URL (overrides the configured environment)")
    parser.add_argument("--json", action="store_true",
                        help="print the push's summary as one JSON document on stdout")
    return parser


def push_main(argv: Sequence[str]) -> int:
    """``rackwave push``; returns the exit code (0: every row got an outcome)."""
    started = time.monotonic()
    args = parse_arguments(build_parser(), argv)
    summary: Optional[Dict[str, Any]] = None
    failure: Optional[Failure] = None
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(stop_on_signals())
            pipelines_dir = get_dlt_pipelines_dir()
            stack.enter_context(pipeline_lock(pipelines_dir, args.pipeline_name))
            stack.enter_context(pipeline_lock(pipelines_dir, push_pipeline_name(args)))
            summary = run_push(args)
    except (Exception, KeyboardInterrupt) as exc:
        failure = failure_of(unwrap(exc), args.destination)
        if not failure.expected:
            traceback.print_exc()
        print(failure.text, file=sys.stderr)
    seconds = round(time.monotonic() - started, 3)
    if args.json:
        print_document(push_document(args, summary, failure, seconds))
    elif summary is not None:
        print(render(summary, seconds))
    return failure.exit_code if failure is not None else EXIT_LOADED


def push_document(args: argparse.Namespace, summary: Optional[Dict[str, Any]],
                  failure: Optional[Failure], seconds: float) -> Dict[str, Any]:
    """The ``--json`` document: the keys of ``rackwave --json`` and ``rackwave check --json``
    (``format_version``, ``status``, ``exit_code``, ``error`` as an object), then the push's
    own figures."""
    return {
        "format_version": JSON_FORMAT_VERSION,
        "command": "push",
        "status": failure.status if failure else "dry_run" if args.dry_run else "pushed",
        "exit_code": failure.exit_code if failure else EXIT_LOADED,
        "pipeline": args.pipeline_name,
        "destination": args.destination,
        "dataset": args.dataset,
        "seconds": seconds,
        **(summary or {}),
        "error": None if failure is None else {
            "class": failure.error_class, "message": failure.message,
            "exit_code": failure.exit_code},
    }


def push_pipeline_name(args: argparse.Namespace) -> str:
    return f"{args.pipeline_name}{PUSH_PIPELINE_SUFFIX}"


def run_push(args: argparse.Namespace) -> Dict[str, Any]:
    """Steps 1-5 of the module; returns the summary."""
    overrides = {"base_url": args.base_url} if args.base_url else {}
    try:  # settings and credentials checked before anything else
        target = push_target(**overrides)
    except ConfigFieldMissingException as exc:
        raise missing_credentials(exc) from None
    try:
        warehouse = warehouse_pipeline(args)
        seeded = seed_journal(warehouse, target.journal)
        items = read_file(args.from_file) if args.from_file else read_query(warehouse, args.query)
        rows = target.pusher.plan(items)
        summary: Dict[str, Any] = {"rows": len(items), "seeded_from_log": seeded,
                                   "ignored_columns": ignored_columns(list(items[0]) if items
                                                                      else [])}
        if summary["ignored_columns"]:
            print("Ignored columns (no field of POST /leads): "
                  + ", ".join(summary["ignored_columns"]), file=sys.stderr)
        if args.dry_run:
            return {**summary, "dry_run": True, **dry_run_plan(target.journal, rows)}
        send_rows(args, target, rows)
        logged = log_outcomes(warehouse, target.journal)
        stats = target.pusher.client.stats(S.LEADS_PATH)
        return {**summary, "dry_run": False, "outcomes": outcome_counts(target.pusher.counts),
                "requests": stats["requests"], "rate_limited": stats["rate_limited"],
                "lookups": target.pusher.counts["lookups"],
                "marks": target.pusher.counts["marks"],
                "duplicates": target.pusher.counts["duplicates"], "logged": logged,
                "log_table": f"{args.dataset}.{S.PUSH_LOG_TABLE}",
                "rejects": _rejects(target.journal, rows)}
    finally:
        target.journal.close()


def warehouse_pipeline(args: argparse.Namespace) -> dlt.Pipeline:
    """The loading pipeline, on the same warehouse and dataset a run uses, its pending load
    finished (a pending package would otherwise be all the log's run loads)."""
    destination = validate_destination(args.destination)
    duckdb_file = own_duckdb_file(destination, args.duckdb_file)
    pipeline: dlt.Pipeline = dlt.pipeline(destination=make_destination(destination, duckdb_file),
                            dataset_name=args.dataset,
                            **name_and_folder(args.pipeline_name, None))
    remember_duckdb_file(pipeline, duckdb_file)
    if pipeline.has_pending_data:
        finish_interrupted_load(pipeline)
    return pipeline


def send_rows(args: argparse.Namespace, target: RackwavePush, rows: List[PushRow]) -> None:
    """Runs the push pipeline on the rows with no standing outcome (a killed push's pending
    package first: dlt resumes it from its last batch done, so the standing outcomes are read
    after it)."""
    pipeline = dlt.pipeline(destination=target.destination, dataset_name=push_pipeline_name(args),
                            **name_and_folder(push_pipeline_name(args), None))
    if pipeline.has_pending_data:
        print("A previous push did not finish; it is finished first.", file=sys.stderr)
        pipeline.run()
    standing = settled_rows(target.journal, rows)
    target.pusher.counts[UNCHANGED] += len(standing)
    send = [row.item for row in rows if row.key not in standing]
    if send:  # only the fields the API takes travel into the push's load package
        pipeline.run(send, table_name=S.PUSH_TABLE)


def log_outcomes(warehouse: dlt.Pipeline, journal: PushJournal) -> int:
    """Merges every outcome not yet logged into ``rackwave_push_log``; returns how many."""
    outcomes = journal.unlogged()
    if outcomes:
        warehouse.run(push_log(outcomes))
        journal.mark_logged(outcomes)
    return len(outcomes)


def dry_run_plan(journal: PushJournal, rows: List[PushRow]) -> Dict[str, Any]:
    """What a push of ``rows`` would do now."""
    standing = settled_rows(journal, rows)
    invalid = [row for row in rows if not row.valid and row.key not in standing]
    return {"would_send": len(rows) - len(standing) - len(invalid), "would_reject": len(invalid),
            "unchanged": len(standing),
            "rejects": [{"row": row.key, "errors": row.errors} for row in invalid[:SHOWN_REJECTS]]}


def _rejects(journal: PushJournal, rows: List[PushRow]) -> List[Dict[str, Any]]:
    """The first rejected rows of this push, with their errors, as the journal has them now."""
    rejected = [{"row": key, "errors": outcome.errors}
                for key, outcome in settled_rows(journal, rows).items()
                if outcome.status == "rejected"]
    return rejected[:SHOWN_REJECTS]


def render(summary: Dict[str, Any], seconds: float) -> str:
    """The push's summary for a terminal."""
    if summary.get("dry_run"):
        lines = [f"Dry run: {summary['rows']} rows read, nothing sent.",
                 f"  would send    {summary['would_send']:>7}",
                 f"  would reject  {summary['would_reject']:>7}",
                 f"  unchanged     {summary['unchanged']:>7}  (an outcome stands: not sent again)"]
    else:
        counts = summary["outcomes"]
        lines = [f"Pushed {summary['rows']} rows in {seconds:.1f} s:"]
        lines += [f"  {name:<12}{counts[name]:>7}" for name in counts]
        lines.append(f"  requests    {summary['requests']:>7}  (429 answers: "
                     f"{summary['rate_limited']}, lookups: {summary['lookups']})")
        if summary["duplicates"]:
            lines.append(f"  duplicates  {summary['duplicates']:>7}  (a later row with an email "
                         "already in this push: not sent)")
        lines.append(f"Outcomes logged in {summary['log_table']} ({summary['logged']} new).")
    for reject in summary.get("rejects") or []:
        problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in reject["errors"].items())
        lines.append(f"  rejected {reject['row']}: {problems}")
    return "\n".join(lines)
