"""The ``leads`` and ``contacts`` resources: one generic list reader, two declarations."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.extract.resource import DltResource

from . import settings as S
from .client import RackwaveClient
from .config import RackwaveSettings
from .deletions import DELETED_AT, DELETED_AT_COLUMN, missing_rows
from .gaps import GapWatch, recover
from .incremental import STATE_LAST_RUN, RowFilter, plan_scan, remember, utc_now
from .paging import iter_pages, iter_pages_concurrent
from .records import QUARANTINE_TABLE, ArrowBatch, PageReader
from .schema import CONTACT_COLUMNS, LEAD_COLUMNS, QUARANTINE_COLUMNS, TColumns


def read_records(
    client: RackwaveClient,
    resource: str,
    path: str,
    config: RackwaveSettings,
    columns: TColumns,
    filters: Optional[Mapping[str, str]] = None,
) -> Iterator[Any]:
    """Yields one Arrow table per page: every record on a full scan, new ones on an incremental run.

    The first yield carries the write disposition of this run: ``replace`` for a full scan (so
    records deleted from the API leave the table, or, with ``deleted_records = "flag"``, come
    back flagged), ``merge`` otherwise. It is yielded even when the
    API has no records, so that a full scan of an emptied account empties the table, and a new
    account's tables exist (with every declared column) before its first record.
    """
    state = dlt.current.resource_state()
    started_at = utc_now()
    plan = plan_scan(state, config, started_at)
    rows = RowFilter(resource, plan.since)
    flagging = config.deleted_records == "flag"
    hints = dlt.mark.make_hints(
        write_disposition="replace" if plan.full_scan else "merge",
        columns=DELETED_AT_COLUMN if flagging else None,
    )
    # materialize_table_schema: the table exists with its declared columns even while empty.
    yield dlt.mark.with_hints(dlt.mark.materialize_table_schema(), hints)
    pages = 0
    http_before = client.stats(path)
    reader = PageReader(resource, columns, quarantine=config.bad_records == "quarantine",
                        known_types=_destination_types(resource))
    quarantined = 0
    if plan.full_scan:
        page_source = iter_pages_concurrent(
            client, reader, path, config.per_page, filters, config.concurrency
        )
    else:  # newest first: read one page at a time and stop as soon as the cursor is passed
        page_source = iter_pages(client, reader, path, config.per_page, filters)
    batch = ArrowBatch()
    watch = GapWatch()
    for page in page_source:
        pages += 1
        watch.page(page)
        if page.rejected:
            quarantined += len(page.rejected)
            yield _to_quarantine(page.rejected, started_at)
        kept, ids = rows.accept(page)
        if kept.num_rows:
            watch.keep(ids)
            table = batch.add(kept)
            if table is not None:
                yield table
        if rows.reached_bound:
            break
    since_us = None if plan.since is None else int(plan.since.timestamp() * 1_000_000)
    for found in recover(client, reader, path, config.per_page, filters, watch, since_us):
        pages += 1
        rows.recovered += found.num_rows
        table = batch.add(found)
        if table is not None:
            yield table
    table = batch.flush()
    if table is not None:
        yield table
    flagged = 0
    if flagging and plan.full_scan:
        when = pa.scalar(started_at, pa.timestamp("us", tz="UTC"))
        for table in missing_rows(resource, watch.kept_sorted(), started_at):
            flagged += pc.sum(pc.equal(table.column(DELETED_AT), when)).as_py() or 0
            yield table
    http_after = client.stats(path)
    http = {key: http_after[key] - http_before[key] for key in http_after}
    remember(state, plan, rows, started_at, pages, http, flagged)
    state[STATE_LAST_RUN]["quarantined"] = quarantined


def _destination_types(table: str) -> Dict[str, str]:
    """The data type of each column the table already has (dlt's schema, restored with the state
    from the destination), so a field whose type changed since is loaded as a variant."""
    try:
        schema = dlt.current.source_schema()
    except Exception:  # noqa: BLE001 - outside a pipeline (e.g. iterating the resource directly)
        return {}
    columns = schema.tables.get(table, {}).get("columns", {})
    return {name: str(c["data_type"]) for name, c in columns.items() if c.get("data_type")}


def _to_quarantine(rows: List[Dict[str, Any]], when: Any) -> Any:
    """Rejected records go to their own append-only table, beside the resource's."""
    for row in rows:
        row["quarantined_at"] = when
    return dlt.mark.with_hints(
        rows, dlt.mark.make_hints(table_name=QUARANTINE_TABLE), create_table_variant=True
    )


def _resource(
    client: RackwaveClient,
    name: str,
    path: str,
    columns: TColumns,
    config: RackwaveSettings,
    filters: Optional[Dict[str, str]] = None,
) -> DltResource:
    resource = dlt.resource(read_records(client, name, path, config, columns, filters), name=name)
    # The quarantine table is a variant of the resource's table. A variant starts as a copy of the
    # resource's hints at the time it is made, so it is made first, while they are still empty:
    # it must not inherit the resource's columns, primary key or merge.
    resource.apply_hints(table_name=QUARANTINE_TABLE, create_table_variant=True,
                         write_disposition="append", columns=QUARANTINE_COLUMNS)
    resource.apply_hints(primary_key=S.PRIMARY_KEY, write_disposition="merge", columns=columns)
    return resource


def leads_resource(client: RackwaveClient, config: RackwaveSettings) -> DltResource:
    """Leads, optionally narrowed by the API's own ``status`` and ``search`` filters."""
    filters: Dict[str, str] = {}
    if config.lead_status:
        filters["status"] = config.lead_status
    if config.lead_search:
        filters["search"] = config.lead_search
    return _resource(client, "leads", S.LEADS_PATH, LEAD_COLUMNS, config, filters)


def contacts_resource(client: RackwaveClient, config: RackwaveSettings) -> DltResource:
    return _resource(client, "contacts", S.CONTACTS_PATH, CONTACT_COLUMNS, config)
