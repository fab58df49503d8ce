"""``rackwave check``: what the next run would do, asked of the API and the destination, with
nothing loaded and no state changed.

It validates the settings and the credentials exactly as a run does (``rackwave_source(...)``
checks every setting and builds the client; the same errors, the same exit codes), then asks the
API for a token and for page 1 of each resource, and nothing more. From page 1 (``meta.total``,
``meta.last_page``, the ``created_at`` values, the time it took) and the resource's state it
tells, per resource, whether the next run is incremental or a full scan and why (the source's own
``cursor.plan_scan``, fed with that state and with the full scan still owed), the pages and
requests to expect, and how long they should take.

Reading the state without running, the least invasive way: a run's pipeline restores the state
from the destination (``sync_destination``), which rewrites the pipeline's working folder, and
even ``dlt.pipeline(...)`` creates that folder. So no pipeline is made here. The local state is
read as the file dlt keeps (``<pipelines dir>/<name>/state.json``); the destination's is read
with dlt's own query for it (``load_pipeline_state_from_destination``, on a job client made from
the destination alone: the one query a run's restore makes), a DuckDB file opened read-only and
not opened at all when it does not exist (opening would create it). Of the two, the one the run
would use is chosen by dlt's rule: the destination's when its version is the same or newer; none
when the destination lost the dataset (dlt then wipes the local state: the run is a first run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.common.schema import Schema
from dlt.common.schema.utils import normalize_schema_name
from dlt.destinations.dataset import get_destination_clients
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.pipeline.state_sync import load_pipeline_state_from_destination

from rackwave_source import RESOURCES
from rackwave_source import settings as S
from rackwave_source.dlt_internals import read_local_state
from rackwave_source.read.cursor import STATE_CURSOR, STATE_LAST_FULL_SCAN, ScanPlan, plan_scan
from rackwave_source.timestamps import from_iso, utc_now
from rackwave_source.api.decode import Page
from rackwave_source.api.endpoint import ListEndpoint
from rackwave_source.exceptions import ConfigurationError, RackwaveError, RackwaveTransientError
from rackwave_source.options import ValidatedOptions, validate_resources
from rackwave_source.read.paging import plan_blocks
from rackwave_source.read.scan_requests import RequestedScans
from rackwave_source.resources import reading_of
from rackwave_source.warehouse.verdicts import STATE_COUNT_OFFSET

from pipelines.run_report import EXIT_CONFIG, EXIT_FATAL, EXIT_TEMPORARY
from pipelines.destinations import (
    DESTINATIONS,
    is_unreachable,
    make_destination,
    missing_destination_setting,
    unreachable_warehouse,
    validate_destination,
)
from pipelines.cli import Command
from pipelines.common import (
    DEFAULT_DATASET,
    DEFAULT_PIPELINE,
    add_shared_arguments,
    own_duckdb_file,
    sandbox_server,
    validated_source,
)

EXIT_OK = 0
#: ``status`` of the ``--json`` document per exit code (the run's words for its failures)
STATUSES = {EXIT_OK: "ok", EXIT_FATAL: "failed", EXIT_CONFIG: "bad_settings",
            EXIT_TEMPORARY: "temporary_failure"}
FULL_SCAN = "full scan"
#: raised when the --json document changes incompatibly (as ``rackwave --json``'s)
JSON_FORMAT_VERSION = 1
USAGE_ERROR = "UsageError"
STATE_VERSION = "_state_version"


@dataclass
class ResourceCheck:
    """What the next run would do with one resource (``--json`` prints these fields)."""

    table: str  # the resource
    total: int  # meta.total of page 1
    per_page: int
    last_page: int  # meta.last_page of page 1, at per_page
    mode: str  # "full scan" or "incremental" (as in the run's summary and its --json)
    reason: str  # why, as the run's record will say it
    cursor: Optional[str]  # the stored cursor the run starts from (None: none stored)
    last_full_scan_at: Optional[str]
    records: int  # records the next run would read
    records_estimated: bool  # incremental beyond page 1: extrapolated from page 1's created_at
    pages: int  # pages of its main pass
    requests: int  # page requests: the main pass, plus page 1 again after a full scan
    seconds: float
    seconds_basis: str  # "rate" (max_requests_per_second) or "latency" (page 1's, measured)
    seconds_estimated: bool
    page1_latency_ms: float  # the API's latency the time rests on: the fastest page 1
    #: records the API counts and does not list in this view, as the last full scan measured
    #: them (a count steadily off, or records older than start_date): rackwave_source/warehouse/verdicts.py
    count_offset: int = 0
    asked_per_page: int = 0  # the page size asked for (per_page above is the API's own)


@dataclass
class CheckReport:
    """The whole check: what ``rackwave check`` prints."""

    destination: str
    dataset: str
    pipeline: str
    base_url: str
    resources: List[ResourceCheck]
    concurrency: int
    rate: Optional[float]


# -- the check -------------------------------------------------------------------------------------
def check(
    *,
    destination: str = "duckdb",
    dataset: str = DEFAULT_DATASET,
    pipeline_name: str = DEFAULT_PIPELINE,
    resources: Optional[Sequence[str]] = None,
    full_scan: bool = False,
    base_url: Optional[str] = None,
    client_id: Optional[str] = None,
    client_secret: Optional[str] = None,
    duckdb_path: Optional[str] = None,
    pipelines_dir: Optional[str] = None,
    source_options: Optional[Dict[str, Any]] = None,
) -> CheckReport:
    """Plans the next run of each resource without running it. Raises our errors, like a run:
    settings first, then the destination's state, then the API (a token, page 1 of each)."""
    selected = list(validate_resources(list(resources or RESOURCES), RESOURCES))
    destination = validate_destination(destination)
    kwargs: Dict[str, Any] = dict(source_options or {})
    kwargs.update({k: v for k, v in (("base_url", base_url), ("client_id", client_id),
                                     ("client_secret", client_secret)) if v})
    if full_scan:
        kwargs["full_scan"] = True
    source = validated_source(kwargs, selected)
    folder = os.path.join(pipelines_dir or get_dlt_pipelines_dir(), pipeline_name)
    state = run_state(destination, own_duckdb_file(destination, duckdb_path), dataset,
                      pipeline_name, folder)
    owed = RequestedScans(folder)
    firsts: List[Tuple[ListEndpoint, ScanPlan, Page, Mapping[str, Any]]] = []
    for name in selected:
        endpoint, options = reading_of(source.resources[name])
        if not firsts:
            endpoint.client.auth.obtain_token()  # first: page 1's latency is then the page's
        stored = resource_state(state, name)
        plan = plan_scan(dict(stored), options, utc_now(), owed=owed_scan(owed, name, stored))
        firsts.append((endpoint, plan, endpoint.page(1), stored))
    # The API's latency: the fastest page 1 (a later one may have waited for the known rate).
    latency = min(max(0.0, page.received_at - page.sent_at) for _, _, page, _ in firsts)
    checks = [describe(endpoint, options, plan, page, stored, latency)
              for endpoint, plan, page, stored in firsts]
    return CheckReport(destination, dataset, pipeline_name, endpoint.client.base_url, checks,
                       options.concurrency, options.max_requests_per_second)


def describe(endpoint: ListEndpoint, options: ValidatedOptions, plan: ScanPlan, page: Page,
             state: Mapping[str, Any], latency: float) -> ResourceCheck:
    """What the planned run of one resource costs, from its page 1 and the API's latency."""
    records, estimated = records_to_read(page, plan, endpoint.per_page)
    pages = pages_to_read(records, page, endpoint.per_page)
    again = 1 if plan.full_scan and pages > 1 else 0  # page 1 read again (scan.py, _top)
    seconds, basis = expected_seconds(pages, again, plan.full_scan, latency, options)
    return ResourceCheck(
        table=endpoint.resource, total=page.total, per_page=endpoint.per_page,
        last_page=page.last_page,
        mode=FULL_SCAN if plan.full_scan else "incremental", reason=plan.reason,
        cursor=state.get(STATE_CURSOR), last_full_scan_at=state.get(STATE_LAST_FULL_SCAN),
        records=records, records_estimated=estimated, pages=pages, requests=pages + again,
        seconds=round(seconds, 3), seconds_basis=basis, seconds_estimated=basis == "latency",
        page1_latency_ms=round(latency * 1000, 1),
        count_offset=int(state.get(STATE_COUNT_OFFSET) or 0),
        asked_per_page=endpoint.asked_per_page,
    )


def owed_scan(requests: RequestedScans, resource: str, state: Mapping[str, Any]) -> Optional[str]:
    """When a full scan asked for earlier is still owed: the rule of ``ScanRun._owed``, read
    only (the run settles a request a later full scan fulfilled; this check just ignores it)."""
    asked = requests.pending(resource)
    last_full = state.get(STATE_LAST_FULL_SCAN)
    if asked is not None and last_full is not None and from_iso(last_full) >= from_iso(asked):
        return None
    return asked


# -- the cost ----------------------------------------------------------------------------------
def records_to_read(page: Page, plan: ScanPlan, per_page: int) -> Tuple[int, bool]:
    """Records at or after the plan's bound (``created_at >= since``), and whether that is an
    estimate: exact when page 1 is the last page or already reaches past the bound; otherwise
    extrapolated from page 1's span of ``created_at`` (records per second), at most the total."""
    since = plan.since_us
    newest_first = [t for t in page.created_us if t is not None]
    if since is None:
        return page.total, False
    newer = sum(1 for t in newest_first if t >= since)
    if newer < len(newest_first) or page.size < per_page or not newest_first:
        return newer, False
    span = newest_first[0] - newest_first[-1]
    if span <= 0:
        return page.total, True  # one second on the whole page: no rate to go by
    per_us = (len(newest_first) - 1) / span
    beyond = (newest_first[-1] - since) * per_us
    return min(page.total, len(newest_first) + int(round(beyond))), True


def pages_to_read(records: int, page: Page, per_page: int) -> int:
    """Pages of the main pass: every page up to the one holding the first record past the bound,
    and, for the whole list, ``meta.last_page`` plus an empty page when the last one is exactly
    full (a pass stops only on a short or empty page: paging.py)."""
    whole = max(1, page.last_page) + (1 if page.total and page.total % per_page == 0 else 0)
    return min(whole, records // per_page + 1)


def expected_seconds(pages: int, again: int, full_scan: bool, latency: float,
                     options: ValidatedOptions) -> Tuple[float, str]:
    """How long the requests take: at the known rate (``max_requests_per_second``), unless the
    API's measured latency makes them slower; else from that latency alone (an estimate). A full
    scan reads page 1, then the other pages in contiguous blocks, one worker each, then page 1
    again; an incremental run reads one page at a time."""
    rounds = pages + again
    if full_scan and pages > 1 and options.concurrency > 1:
        blocks = plan_blocks(2, pages, options.concurrency)
        rounds = 1 + max(b.last - b.first + 1 for b in blocks) + again
    by_latency = rounds * latency
    rate = options.max_requests_per_second
    if rate and (pages + again) / rate >= by_latency:
        return (pages + again) / rate, "rate"
    return by_latency, "latency"


# -- the state a run would start from ----------------------------------------------------------
def resource_state(state: Mapping[str, Any], resource: str) -> Mapping[str, Any]:
    """``dlt.current.resource_state()`` of ``resource``, as the run would see it."""
    found = state.get("sources", {}).get(S.SOURCE_NAME, {}).get("resources", {}).get(resource)
    return found if isinstance(found, dict) else {}


def run_state(destination: str, duckdb_file: Optional[str], dataset: str, pipeline_name: str,
              folder: str) -> Mapping[str, Any]:
    """The pipeline state the next run would start from, by dlt's rule (``sync_destination``):
    the destination's when it is as new as the local one or newer; the local one when the
    destination has the dataset but no state; nothing when the destination lost the dataset."""
    local = local_state(folder)
    try:
        remote, initialized = stored_state(destination, duckdb_file, dataset, pipeline_name)
    except ConfigFieldMissingException as exc:
        raise missing_destination_setting(destination, exc) from None
    except Exception as exc:  # noqa: BLE001 - sorted out below, as a run sorts them
        if is_unreachable(exc) or type(exc).__name__ == "IOException":  # DuckDB: a run holds it
            raise unreachable_warehouse(destination, exc) from None
        raise
    if remote is not None and remote.get(STATE_VERSION, 0) >= local.get(STATE_VERSION, 0):
        return remote
    return local if initialized else {}


def local_state(folder: str) -> Mapping[str, Any]:
    """The state in the pipeline's working folder, read as a file (no pipeline is made)."""
    return read_local_state(folder)


def stored_state(destination: str, duckdb_file: Optional[str], dataset: str,
                 pipeline_name: str) -> Tuple[Optional[Dict[str, Any]], bool]:
    """The newest state the destination holds for the pipeline (dlt's own query), and whether
    the dataset exists there at all. A DuckDB file that does not exist is not opened (that would
    create it); one that does is opened read-only."""
    if duckdb_file is not None and not os.path.exists(duckdb_file):
        return None, False
    factory: Any = (dlt.destinations.duckdb(DuckDbCredentials(duckdb_file, read_only=True))
               if duckdb_file is not None else make_destination(destination, None))
    schema = Schema(normalize_schema_name(pipeline_name))
    client, _ = get_destination_clients(schema, factory, destination_dataset_name=dataset)
    with client:
        if not hasattr(client, "get_stored_state"):
            return None, True  # a destination that keeps no state: dlt restores none either
        try:
            with_state: Any = client  # a WithStateSync: it has get_stored_state
            state = load_pipeline_state_from_destination(pipeline_name, with_state)
        except DestinationUndefinedEntity:
            return None, bool(client.is_storage_initialized())
        return (dict(state) if state else None), True


# -- the command ---------------------------------------------------------------------------------
class CheckCommand(Command):
    """``rackwave check``: exit codes as a run's (0 fine, 2 settings, 1 fatal, 75 temporary)."""

    name = "check"
    description = ("Check settings, credentials and the API, and say what the next run would "
                   "do (incremental or full scan, pages, requests, time). Loads nothing and "
                   "changes no state: one token request and page 1 of each resource.")

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--destination", default="duckdb", choices=DESTINATIONS,
                            help="the warehouse whose stored state the next run starts from")
        add_shared_arguments(parser, "check")
        parser.add_argument("--full-scan", action="store_true",
                            help="plan the run as `rackwave --full-scan` would run")
        parser.add_argument("--json", action="store_true",
                            help="print one JSON document on stdout instead of the table")

    def execute(self, args: argparse.Namespace) -> int:
        started = time.monotonic()
        options: Dict[str, Any] = dict(
            destination=args.destination, dataset=args.dataset, pipeline_name=args.pipeline_name,
            resources=[r.strip() for r in args.resources.split(",") if r.strip()],
            full_scan=args.full_scan, base_url=args.base_url, duckdb_path=args.duckdb_file,
        )
        report: Optional[CheckReport] = None
        error: Optional[RackwaveError] = None
        try:
            with sandbox_if_asked(args, options):
                report = check(**options)
        except RackwaveError as exc:
            error = exc
            temporary = isinstance(exc, RackwaveTransientError)
            print(f"error{' (temporary, safe to run again)' if temporary else ''}: {exc}",
                  file=sys.stderr)
        code = exit_code(error)
        if args.json:
            document = as_document(args, report, code, error)
            print(json.dumps({**document, "seconds": round(time.monotonic() - started, 3)}))
        elif report is not None:
            print(render(report))
        return code

    def usage_document(self, text: str) -> Dict[str, Any]:
        """Arguments argparse refused, as the check's own ``--json`` document."""
        return {
            "format_version": JSON_FORMAT_VERSION, "command": "check", "destination": None,
            "dataset": None, "pipeline": None, "status": STATUSES[EXIT_CONFIG],
            "exit_code": EXIT_CONFIG, "base_url": None, "resources": [], "seconds": 0.0,
            "error": {"class": USAGE_ERROR, "message": "invalid arguments (see stderr)",
                      "exit_code": EXIT_CONFIG}}


def exit_code(error: Optional[RackwaveError]) -> int:
    """A run's exit code for the same error."""
    if error is None:
        return EXIT_OK
    if isinstance(error, ConfigurationError):
        return EXIT_CONFIG
    return EXIT_TEMPORARY if isinstance(error, RackwaveTransientError) else EXIT_FATAL


@contextlib.contextmanager
def sandbox_if_asked(args: argparse.Namespace, options: Dict[str, Any]) -> Iterator[None]:
    """``--sandbox``: the demo server and its credentials, for the check's duration."""
    if not args.sandbox:
        yield
        return
    from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

    with sandbox_server(args.sandbox_leads, args.sandbox_contacts) as server:
        print(f"Sandbox with {args.sandbox_leads} leads and {args.sandbox_contacts} contacts "
              f"listening at {server.base_url}", file=sys.stderr)
        options.update(base_url=server.base_url, client_id=DEMO_CLIENT_ID,
                       client_secret=DEMO_CLIENT_SECRET)
        yield


# -- output ----------------------------------------------------------------------------------------
def as_document(args: argparse.Namespace, report: Optional[CheckReport], code: int,
                error: Optional[RackwaveError]) -> Dict[str, Any]:
    """The ``--json`` document, on one line: the run's top-level keys (``rackwave --json``) and
    one entry per resource."""
    return {
        "format_version": JSON_FORMAT_VERSION,
        "command": "check",
        "destination": args.destination,
        "dataset": args.dataset,
        "pipeline": args.pipeline_name,
        "status": STATUSES.get(code, STATUSES[EXIT_FATAL]),
        "exit_code": code,
        "base_url": report.base_url if report else None,
        "resources": [asdict(r) for r in report.resources] if report else [],
        "error": None if error is None else {
            "class": type(error).__name__, "message": str(error), "exit_code": code},
    }


def render(report: CheckReport) -> str:
    """The table a person reads, then why each run is what it is, and what the ~ marks mean."""
    lines = [
        f"Rackwave check -> {report.destination}, dataset `{report.dataset}`, pipeline "
        f"`{report.pipeline}`: settings and credentials accepted by {report.base_url}",
        f"{'table':<10}{'API total':>9}  {'next run':<11}  {'reads':>7}  {'pages':>6}  "
        f"{'requests':>8}  time",
        f"{'-' * 8:<10}{'-' * 9}  {'-' * 11}  {'-' * 7}  {'-' * 6}  {'-' * 8}  {'-' * 8}",
    ]
    for r in report.resources:
        reads = f"~{r.records}" if r.records_estimated else str(r.records)
        seconds = f"{'~' if r.seconds_estimated else ''}{format_seconds(r.seconds)}"
        lines.append(f"{r.table:<10}{r.total:>9}  {r.mode:<11}  {reads:>7}  "
                     f"{r.pages:>6}  {r.requests:>8}  {seconds}")
    lines += [f"{r.table}: {r.mode}: {r.reason}" for r in report.resources]
    lines += [f"{r.table}: the API serves {r.per_page} records per page ({r.asked_per_page} asked); "
              "pages are read at its size" for r in report.resources
              if r.asked_per_page and r.per_page < r.asked_per_page]
    lines += [f"{r.table}: the API's count is off by {r.count_offset:+} (this view lists "
              f"{r.total - r.count_offset} of its {r.total}), as the last full scan measured; runs "
              "allow for it" for r in report.resources if r.count_offset]
    lines += notes(report)
    return "\n".join(lines)


def notes(report: CheckReport) -> List[str]:
    """What the estimates rest on, and the costs no page 1 can tell."""
    out: List[str] = []
    if any(r.records_estimated for r in report.resources):
        out.append("~ reads: records newer than the cursor, estimated from how far apart page "
                   "1's created_at values are (page 1 is all newer than the cursor).")
    if any(r.seconds_estimated for r in report.resources):
        latency = min(r.page1_latency_ms for r in report.resources)
        out.append(f"~ time: estimated from page 1's latency ({latency:.0f} ms), with "
                   f"{report.concurrency} workers for a full scan and one page at a time for an "
                   "incremental run: no request rate is known before a run "
                   "(max_requests_per_second sets one).")
    elif report.rate:
        out.append(f"time: at the known rate of {report.rate:g} requests/s "
                   "(max_requests_per_second).")
    if any(r.mode == FULL_SCAN for r in report.resources):
        out.append("A full scan also asks for one lookup per record deleted since the last full "
                   "scan, and re-reads pages that moved if the account changes while it pages.")
    out.append("Every run also asks for one token. Nothing was loaded and no state changed.")
    return out


def format_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
