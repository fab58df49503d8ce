"""The end-of-run summary: what a person wants to know at a glance after a scheduled load."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from rackwave_source import settings as S
from rackwave_source.cursor import from_iso
from rackwave_source.lake import is_lake, lake_table


@dataclass
class TableSummary:
    """One resource's outcome of one run."""

    table: str
    mode: str
    pages: int
    rows_read: int
    rows_before: Optional[int]
    rows_after: int
    new: int
    updated: int
    removed: Optional[int]
    requests: int
    rate_limited: int


def _count(
    pipeline: dlt.Pipeline, tables: List[str], newer_than: Mapping[str, Optional[str]]
) -> Dict[str, Tuple[int, Optional[int]]]:
    """Per table: rows now, and rows created after ``newer_than[table]`` (None when not asked).

    One connection and one query per table (opening a DuckDB connection costs ~60 ms). Lake
    tables are counted from their own metadata and files (``rackwave_source/lake.py``).
    """
    counts: Dict[str, Tuple[int, Optional[int]]] = {}
    try:
        if is_lake(pipeline):
            counts = _count_lake(pipeline, tables, newer_than)
        else:
            counts = _count_sql(pipeline, tables, newer_than)
    except Exception:  # noqa: BLE001 - a summary must never fail a load (e.g. no SQL client)
        pass
    for table in tables:
        counts.setdefault(table, (0, None))
    return counts


def _count_sql(
    pipeline: dlt.Pipeline, tables: List[str], newer_than: Mapping[str, Optional[str]]
) -> Dict[str, Tuple[int, Optional[int]]]:
    counts: Dict[str, Tuple[int, Optional[int]]] = {}
    with pipeline.sql_client() as client:
        column = client.escape_column_name(S.CURSOR_FIELD)
        for table in tables:
            name = client.make_qualified_table_name(table)
            cursor = newer_than.get(table)
            try:
                if cursor is None:
                    rows = client.execute_sql(f"SELECT COUNT(*) FROM {name}")
                    assert rows is not None  # a SELECT returns rows; dlt types them Optional
                    counts[table] = (int(rows[0][0]), None)
                else:
                    rows = client.execute_sql(
                        f"SELECT COUNT(*), SUM(CASE WHEN {column} > %s THEN 1 ELSE 0 END) "
                        f"FROM {name}", cursor)
                    assert rows is not None
                    counts[table] = (int(rows[0][0]), int(rows[0][1] or 0))
            except DatabaseUndefinedRelation:
                counts[table] = (0, None if cursor is None else 0)
    return counts


def _count_lake(
    pipeline: dlt.Pipeline, tables: List[str], newer_than: Mapping[str, Optional[str]]
) -> Dict[str, Tuple[int, Optional[int]]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    counts: Dict[str, Tuple[int, Optional[int]]] = {}
    for table in tables:
        cursor = newer_than.get(table)
        data = lake_table(pipeline, table)
        if data is None:
            counts[table] = (0, None if cursor is None else 0)
            continue
        newer = None
        if cursor is not None:
            bound = pa.scalar(from_iso(cursor), pa.timestamp("us", tz="UTC"))
            newer = data.count_rows(filter=pc.field(S.CURSOR_FIELD) > bound)
        counts[table] = (data.count_rows(), newer)
    return counts


def count_rows(pipeline: dlt.Pipeline, tables: List[str]) -> Dict[str, int]:
    """Rows per table in the destination now (0 for a table not created yet)."""
    return {table: total for table, (total, _) in _count(pipeline, tables, {}).items()}


def resource_state(pipeline: dlt.Pipeline, resource: str) -> Mapping[str, Any]:
    sources = pipeline.state.get("sources", {})
    state: Mapping[str, Any] = (
        sources.get(S.SOURCE_NAME, {}).get("resources", {}).get(resource, {}))
    return state


def summarize(
    pipeline: dlt.Pipeline,
    resources: List[str],
    before: Optional[Mapping[str, int]],
) -> List[TableSummary]:
    """What each resource read, and the destination after the run.

    Records are never created in the past, so the rows created after the cursor the run started
    from are the new ones (``last_run.previous_cursor``, kept by the source). ``before`` (row
    counts before the run, when known) gives what a full scan removed.
    """
    runs = {name: resource_state(pipeline, name).get("last_run", {}) for name in resources}
    # Records are never created in the past: rows newer than the run's starting cursor are new.
    counts = _count(pipeline, resources,
                    {name: run.get("previous_cursor") for name, run in runs.items()})
    out: List[TableSummary] = []
    for name in resources:
        run = runs[name]
        mode = run.get("mode", "not run")
        read = int(run.get("rows", 0))
        rows_after, newer = counts[name]
        rows_before = None if before is None else before.get(name, 0)
        new = min(read, rows_after if newer is None else newer)
        removed: Optional[int] = 0
        if mode == "full_scan":
            # deleted_records = "flag" keeps the rows: count those newly flagged instead.
            flagged = int(run.get("flagged_deleted", 0))
            if flagged:
                removed = flagged
            elif rows_before is not None:
                removed = max(0, rows_before + new - rows_after)
            else:
                removed = None
        out.append(
            TableSummary(
                table=name,
                mode=mode.replace("_", " "),
                pages=int(run.get("pages", 0)),
                rows_read=read,
                rows_before=rows_before,
                rows_after=rows_after,
                new=new,
                updated=max(0, read - new),
                removed=removed,
                requests=int(run.get("requests", 0)),
                rate_limited=int(run.get("rate_limited", 0)),
            )
        )
    return out


def render(
    rows: List[TableSummary],
    destination: str,
    dataset: str,
    seconds: float,
) -> str:
    """A small fixed-width table plus one line on requests."""
    headers = ["table", "mode", "pages", "read", "new", "updated*", "removed", "rows now"]
    body = [
        [
            r.table,
            r.mode,
            str(r.pages),
            str(r.rows_read),
            str(r.new),
            str(r.updated),
            "?" if r.removed is None else str(r.removed),
            str(r.rows_after),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in body)) if body else len(h)
              for i, h in enumerate(headers)]

    def fmt(cells: List[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    lines = [
        f"Rackwave -> {destination}, dataset `{dataset}`: done in {seconds:.1f} s",
        fmt(headers),
        fmt(["-" * w for w in widths]),
        *(fmt(line) for line in body),
        "* updated: existing records read again and merged (changed or not).",
        "  removed: gone from the API (dropped, or flagged if deleted_records = \"flag\"); "
        "? = not known on this machine.",
        f"Requests: {sum(r.requests for r in rows)} list requests, "
        f"{sum(r.rate_limited for r in rows)} of them answered 429 and retried.",
    ]
    return "\n".join(lines)
