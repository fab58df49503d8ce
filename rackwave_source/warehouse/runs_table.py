"""``rackwave_runs``: one row per resource per completed run, loaded with the data it describes.

The row is the last item a resource's generator yields, into a table variant of the resource
(like the quarantine table), so it travels in the same load package as the run's records and its
state: a run that fails (while reading, or in any other resource of the same extract) leaves no
row, a run that loaded leaves its row, and freshness and volume can be queried where the data is.

Exactly once. The table is keyed on ``(load_id, resource)`` and merged rather than appended:
dlt runs a load job again when it resumes a package whose job was killed after the destination
committed it (and before dlt recorded it done), and an append would then keep the row twice on
every destination. A merge is idempotent, on every destination and with nothing to repair
(``recovery.py`` repairs DuckDB's staged rows of the resources' own tables only). It costs one
staged row and one merge statement per run.

New or updated. The source knows the ids it read, not which of them the warehouse had. Records
are created at the top of the list with an immutable ``created_at`` (docs/api-assumptions.md),
so the records created after the cursor the run started from are the new ones; every other
record read is an existing one read again and merged (changed or not). Counted on the pages as
they are read (one Arrow comparison per page: no measurable cost, see benchmarks/README.md),
with no read-back of the warehouse, which an incremental run would otherwise pay for. Exact under
the documented assumptions; two cases it counts as updated although the warehouse did not have
the row: a record created in the very microsecond of the previous cursor after that run read
it, and a record inserted with a past ``created_at`` (a full scan loads it).
"""

from __future__ import annotations

from dataclasses import dataclass

from datetime import datetime
from typing import Any, Dict, Iterable, Optional

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.extract.resource import DltResource

from rackwave_source import settings as S
from rackwave_source.timestamps import from_iso
from rackwave_source.schema import RUN_COLUMNS
from rackwave_source.warehouse.target import merged_variant_hints

RUN_KEY = ("load_id", "resource")
_ARROW_TYPES = {"text": pa.string(), "bigint": pa.int64(), "timestamp": pa.timestamp("us", "UTC")}
#: The row travels as an Arrow table, like the data: dlt then adds no ``_dlt_id`` row key, whose
#: unique constraint (Postgres) failed the job that a resumed load runs again.
_ARROW_SCHEMA = pa.schema([
    pa.field(name, _ARROW_TYPES[str(column["data_type"])], nullable=column.get("nullable", True))
    for name, column in RUN_COLUMNS.items()
])


def declare(resource: DltResource) -> None:
    """Makes the ``rackwave_runs`` variant of ``resource``: merged on ``RUN_KEY``, its columns
    declared. Call it before the resource's own hints, which a variant would otherwise copy."""
    resource.apply_hints(table_name=S.RUNS_TABLE, create_table_variant=True,
                         write_disposition="merge", primary_key=RUN_KEY, columns=RUN_COLUMNS)


class NewRows:
    """Counts the records read that were created after the cursor the run started from, but for
    those an earlier run loaded above it (``ahead``: dated after the API's clock, ``read/cursor.py``)."""

    def __init__(self, previous_cursor: Optional[str], ahead: Iterable[str] = ()) -> None:
        self.count = 0
        self._after: Optional[datetime] = None if previous_cursor is None else from_iso(
            previous_cursor)
        listed = sorted(ahead)
        self._ahead = pa.array(listed, pa.string()) if listed else None

    def add(self, records: pa.Table) -> None:
        if not records.num_rows:
            return
        if self._after is None:  # a first load: everything is new
            self.count += records.num_rows
            return
        column = records.column(S.CURSOR_FIELD)
        bound = pa.scalar(self._after, pa.timestamp("us", tz="UTC")).cast(column.type)
        after = pc.greater(column, bound)
        if self._ahead is not None:
            after = pc.and_(after, pc.invert(pc.is_in(records.column(S.PRIMARY_KEY),
                                                      value_set=self._ahead)))
        self.count += int(pc.sum(after).as_py() or 0)


def run_row(resource: str, record: RunRecord) -> Dict[str, Any]:
    """The ``rackwave_runs`` row of one run (the columns of ``schema.RUN_COLUMNS``)."""
    return {
        "load_id": record.load_id,
        "resource": resource,
        "mode": record.mode,
        "reason": record.reason,
        "started_at": from_iso(record.started_at),
        "finished_at": from_iso(record.finished_at),
        "cursor": None if record.cursor is None else from_iso(record.cursor),
        "pages": record.pages,
        "rereads": record.rereads,
        "requests": record.requests,
        "rate_limited": record.rate_limited,
        "retries": record.retries,
        "token_renewals": record.token_renewals,
        "rows_new": record.rows_new,
        "rows_updated": record.rows_updated,
        "rows_removed": record.deletions_confirmed - record.flagged_deleted,
        "rows_flagged": record.flagged_deleted,
        "rows_quarantined": record.quarantined,
        "api_total": record.api_total,
        "rows_future": record.rows_future,
        "rows_held": record.rows_held,
        "quarantine_held": record.quarantine_held,
        "count_offset": record.count_offset,
        "churn": record.churn,
        "verdict": record.verdict,
    }


def history_item(resource: str, record: RunRecord) -> Any:
    """The run's row as an item for ``rackwave_runs``, beside the resource's table (nothing when
    there is no load to name, i.e. the resource iterated on its own)."""
    rows = [run_row(resource, record)] if record.load_id is not None else []
    hints = dlt.mark.make_hints(table_name=S.RUNS_TABLE, **merged_variant_hints(resource))
    return dlt.mark.with_hints(pa.Table.from_pylist(rows, schema=_ARROW_SCHEMA), hints,
                               create_table_variant=True)


@dataclass(frozen=True)
class RunRecord:
    """What one run of one resource did: ``state["last_run"]``, read by the summary."""

    started_at: str
    finished_at: str
    mode: str  # "full_scan" or "incremental"
    reason: str
    previous_cursor: Optional[str]
    cursor: Optional[str]
    pages: int  # pages of the main pass
    rereads: int  # pages read again: the top after a full scan, and holes
    requests: int  # every request of this resource, retries and lookups included
    rate_limited: int  # 429 answers
    rows: int  # records loaded from the pages read
    rows_repeated: int  # records pages showed twice because pages shifted (loaded once)
    rows_recovered: int  # records found by re-reading holes
    holes: int  # created_at ranges the main pass left unproven (each read again)
    quiet: bool  # a full scan proven undisturbed: nothing created or deleted while it paged
    deletion_candidates: int  # loaded rows a full scan did not see
    deletions_confirmed: int  # of those, gone from the API (removed, or flagged)
    still_there: int  # of those, found by a lookup and reloaded
    undecided: int  # of those, kept as loaded: no lookup could tell
    lookups: int  # records looked up through the API's search
    flagged_deleted: int  # rows newly flagged deleted (deleted_records = "flag")
    quarantined: int  # records set aside (bad_records = "quarantine")
    retries: int = 0  # attempts retried after a 5xx, a network error or a bad body (token too)
    token_renewals: int = 0  # tokens obtained again (expired, or refused with a 401)
    rows_new: int = 0  # of ``rows``, records created after ``previous_cursor`` (see runs_table.py)
    api_total: Optional[int] = None  # the API's meta.total on the run's last read of page 1
    load_id: Optional[str] = None  # the load package that carries this run
    rows_future: int = 0  # records dated after the server's clock (the cursor stops at it)
    rows_held: Optional[int] = None  # rows of the table after this run, flagged ones aside
    quarantine_held: int = 0  # records set aside for quarantine that the API lists
    count_offset: int = 0  # records the API counts and does not list (verdicts.py)
    churn: int = 0  # changes the run saw while it read
    verdict: Optional[str] = None  # exact, churn, short or over (verdicts.py)

    @property
    def rows_updated(self) -> int:
        """Records read again and merged (changed or not): every row read that is not new."""
        return self.rows - self.rows_new
