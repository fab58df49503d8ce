"""``rackwave push leads``: create leads in Rackwave from a warehouse query or a file, exactly once.

    rackwave push leads --query "SELECT name, email, phone FROM rackwave.scored_leads"
    rackwave push leads --from-file new_leads.csv --dry-run

The command is a shell over the source's destination (``rackwave_source.push.destination``):

1. it takes the lock of the warehouse pipeline (the push log is written through it) and of the
   push pipeline, and finishes a load either left pending;
2. it reads what the warehouse's ``rackwave_push_log`` already knows into the push journal (a new
   machine then sends nothing twice either);
3. it reads the rows (``push_input.py``) and checks them; with ``--dry-run`` it stops there;
4. it runs the push pipeline (dlt, into ``rackwave_push()``) with the rows that have no outcome;
5. it merges the outcomes not yet logged into ``rackwave_push_log``, in the warehouse pipeline.

It streams: 3 and 4 go chunk by chunk (``push_read_chunk_size`` rows read at a time, checked,
and handed to dlt, which writes them to its load package on disk and gives the destination
``push_batch_size`` rows at a time); 5 reads the journal and writes the log chunk by chunk. What
spans the whole push is a set of 16-byte digests of the keys seen (a later row with the same
email is a duplicate) and counters, so memory does not grow with the rows
(``benchmarks/push.py --stream``).

A push killed between 4 and 5 leaves its outcomes in the journal; the next push logs them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import sys
import time
import traceback
from typing import Any, Dict, Iterator, List, Optional, Set

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.pipeline import get_dlt_pipelines_dir

from rackwave_source import settings as S
from rackwave_source.push.sender import UNCHANGED, outcome_counts, settled_rows
from rackwave_source.push.destination import RackwavePush, push_log_chunks, push_target
from rackwave_source.push.journal import PushJournal
from rackwave_source.push.rows import PushRow, ignored_columns, prepare_row

from pipelines.destinations import DESTINATIONS, make_destination, validate_destination
from pipelines.push_input import Rows, read_file, read_query, seed_journal
from pipelines.cli import Command
from pipelines.common import (
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
    print_document,
)
from pipelines.signals import stop_on_signals

PUSH_PIPELINE_SUFFIX = "_push"


class PushCommand(Command):
    """``rackwave push leads``: exit code 0 when every row got an outcome."""

    name = "push"
    description = ("Create leads in Rackwave from warehouse rows, exactly once. Columns map by "
                   "name to the API's fields: " + ", ".join(S.PUSH_FIELDS) + ".")

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("resource", choices=["leads"], help="what to create (leads)")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--query", help="SQL run on the warehouse the command loads")
        source.add_argument("--from-file", metavar="PATH", help="a CSV or parquet file of rows")
        parser.add_argument("--dry-run", action="store_true",
                            help="check the rows and tell what would be sent; send nothing")
        parser.add_argument("--destination", default="duckdb", choices=DESTINATIONS,
                            help="the warehouse to query and to log into (default: duckdb)")
        parser.add_argument("--duckdb-file", default=None,
                            help=f"DuckDB file for --destination duckdb "
                                 f"(default ./{DEFAULT_DUCKDB_FILE})")
        parser.add_argument("--dataset", default=DEFAULT_DATASET, help="dataset/schema of the log")
        parser.add_argument("--pipeline-name", default=DEFAULT_PIPELINE,
                            help="the loading pipeline, whose warehouse and lock the push shares")
        parser.add_argument("--base-url", help="API base URL (overrides the configured environment)")
        parser.add_argument("--json", action="store_true",
                            help="print the push's summary as one JSON document on stdout")

    def execute(self, args: argparse.Namespace) -> int:
        return push_and_report(args)


def push_and_report(args: argparse.Namespace) -> int:
    """The push inside the pipelines' locks and the signal handling; its summary or failure."""
    started = time.monotonic()
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
        failure = failure_of(unwrap(exc), args.destination, push=True)
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
        size = target.settings.read_chunk_size
        chunks = (read_file(args.from_file, size) if args.from_file
                  else read_query(warehouse, args.query, size))
        first = next(chunks, [])  # a bad query or file is named before anything is sent
        columns = ignored_columns(list(first[0]) if first else [])
        if columns:
            print("Ignored columns (no field of POST /leads): " + ", ".join(columns),
                  file=sys.stderr)
        stream = RowStream(target, itertools.chain([first], chunks))
        if args.dry_run:
            plan = dry_run_plan(target.journal, stream)
            return {**stream.summary(seeded, columns), "dry_run": True, **plan}
        send_rows(args, target, stream)
        logged = log_outcomes(warehouse, target.journal)
        stats = target.pusher.client.stats(S.LEADS_PATH)
        return {**stream.summary(seeded, columns), "dry_run": False,
                "outcomes": outcome_counts(target.pusher.counts),
                "requests": stats["requests"], "rate_limited": stats["rate_limited"],
                "lookups": target.pusher.counts["lookups"],
                "marks": target.pusher.counts["marks"],
                "duplicates": target.pusher.counts["duplicates"], "logged": logged,
                "log_table": f"{args.dataset}.{S.PUSH_LOG_TABLE}",
                "rejects": [{"row": key, "errors": errors}
                            for key, errors in target.pusher.rejects]}
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


class RowStream:
    """The input's rows, checked chunk by chunk: a key seen before in this push is a duplicate
    (counted, not sent: one lead per email), remembered as a 16-byte digest so a million keys
    cost tens of MB, not the rows."""

    def __init__(self, target: RackwavePush, chunks: Iterator[Rows]) -> None:
        self.target = target
        self.chunks = chunks
        self.rows_read = 0
        self.chunks_read = 0
        self._seen: Set[bytes] = set()

    def planned(self) -> Iterator[List[PushRow]]:
        """Each chunk's rows, checked, duplicates left out."""
        pusher = self.target.pusher
        for chunk in self.chunks:
            if not chunk:
                continue
            self.chunks_read += 1
            self.rows_read += len(chunk)
            rows = []
            for item in chunk:
                row = prepare_row(item, pusher.phone_separators)
                digest = hashlib.blake2b(row.key.encode(), digest_size=16).digest()
                if digest in self._seen:
                    pusher.counts["duplicates"] += 1
                else:
                    self._seen.add(digest)
                    rows.append(row)
            yield rows

    def to_send(self) -> Iterator[List[Dict[str, Any]]]:
        """Per chunk, the rows with no standing outcome, as the fields the API takes (what
        travels into the push's load package); the others are counted unchanged."""
        pusher = self.target.pusher
        for rows in self.planned():
            standing = settled_rows(self.target.journal, rows)
            pusher.counts[UNCHANGED] += len(standing)
            for key, outcome in standing.items():
                if outcome.status == "rejected":
                    pusher.note_reject(key, outcome.errors or {})
            yield [row.item for row in rows if row.key not in standing]

    def summary(self, seeded: int, ignored: List[str]) -> Dict[str, Any]:
        return {"rows": self.rows_read, "read_chunks": self.chunks_read,
                "seeded_from_log": seeded, "ignored_columns": ignored}


def send_rows(args: argparse.Namespace, target: RackwavePush, stream: RowStream) -> None:
    """Runs the push pipeline on the rows with no standing outcome (a killed push's pending
    package first: dlt resumes it from its last batch done, so the standing outcomes are read
    after it). dlt reads the chunks as it extracts, so only one is in memory at a time; no run
    at all when no row is to be sent."""
    pipeline = dlt.pipeline(destination=target.destination, dataset_name=push_pipeline_name(args),
                            **name_and_folder(push_pipeline_name(args), None))
    if pipeline.has_pending_data:
        print("A previous push did not finish; it is finished first.", file=sys.stderr)
        pipeline.run()
    chunks = stream.to_send()
    first = next((chunk for chunk in chunks if chunk), None)
    if first is not None:
        pipeline.run(itertools.chain([first], chunks), table_name=S.PUSH_TABLE)


def log_outcomes(warehouse: dlt.Pipeline, journal: PushJournal) -> int:
    """Merges every outcome not yet logged into ``rackwave_push_log``, read from the journal and
    written chunk by chunk in one load; returns how many."""
    claimed = journal.claim_unlogged()
    if claimed:
        warehouse.run(push_log_chunks(journal.claimed(S.PUSH_LOG_CHUNK_SIZE)))
        journal.mark_claimed_logged()
    return claimed


def dry_run_plan(journal: PushJournal, stream: RowStream) -> Dict[str, Any]:
    """What a push of the stream's rows would do now."""
    would_send = would_reject = unchanged = 0
    rejects: List[Dict[str, Any]] = []
    for rows in stream.planned():
        standing = settled_rows(journal, rows)
        unchanged += len(standing)
        for row in rows:
            if row.key in standing:
                continue
            if row.valid:
                would_send += 1
                continue
            would_reject += 1
            if len(rejects) < S.PUSH_SHOWN_REJECTS:
                rejects.append({"row": row.key, "errors": row.errors})
    return {"would_send": would_send, "would_reject": would_reject, "unchanged": unchanged,
            "rejects": rejects}


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
