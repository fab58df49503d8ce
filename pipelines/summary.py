"""The end-of-run summary: what a person wants to know at a glance after a scheduled load.

Its figures are the run's rows in ``rackwave_runs`` (``rackwave_source/warehouse/runs_table.py``), which
the run loaded with its data; only the rows each table has now are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from rackwave_source import settings as S
from rackwave_source.warehouse.lake import is_lake, lake_table
from rackwave_source.warehouse.runs_table import run_row
from rackwave_source.warehouse.runs_table import RunRecord
from rackwave_source.schema import RUN_COLUMNS


@dataclass
class TableSummary:
    """One resource's outcome of one run: its ``rackwave_runs`` row, and the table's rows now."""

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
    retries: int = 0
    token_renewals: int = 0
    api_total: Optional[int] = None
    load_id: Optional[str] = None
    #: the run's check of itself (rackwave_source/warehouse/verdicts.py): exact, churn, short, over
    verdict: Optional[str] = None
    rows_held: Optional[int] = None
    count_offset: Optional[int] = None


def _read_back(pipeline: dlt.Pipeline, load_ids: Mapping[str, str],
               tables: List[str]) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, int]]:
    """Each resource's ``rackwave_runs`` row of the load that carried its last run (``load_ids``:
    resource -> load id; a row that cannot be read is left out), and the rows each table has now
    (0 for a table not created yet, or when it cannot be counted).

    On SQL destinations, one client and one connection for both: opening a connection and
    resolving a client's configuration cost more than the queries. Lake tables are read from
    their own metadata and files (``rackwave_source/warehouse/lake.py``).
    """
    rows: List[Dict[str, Any]] = []
    counts: Dict[str, int] = {}
    wanted = sorted(set(load_ids.values()))
    try:
        if is_lake(pipeline):
            rows = _read_runs_lake(pipeline, wanted) if wanted else []
            for table in tables:
                data = lake_table(pipeline, table)
                counts[table] = 0 if data is None else data.count_rows()
        else:
            with pipeline.sql_client() as client:
                rows = _read_runs_sql(client, wanted) if wanted else []
                counts = {table: _sql_count(client, table) for table in tables}
    except Exception:  # noqa: BLE001 - a summary must never fail a load (e.g. no SQL client)
        pass
    loaded = {row["resource"]: row for row in rows
              if load_ids.get(row["resource"]) == row["load_id"]}
    return loaded, {table: counts.get(table, 0) for table in tables}


def _sql_count(client: Any, table: str) -> int:
    try:
        rows = client.execute_sql(f"SELECT COUNT(*) FROM {client.make_qualified_table_name(table)}")
    except DatabaseUndefinedRelation:
        return 0
    assert rows is not None  # a SELECT returns rows; dlt types them Optional
    return int(rows[0][0])


def resource_state(pipeline: dlt.Pipeline, resource: str) -> Mapping[str, Any]:
    sources = pipeline.state.get("sources", {})
    state: Mapping[str, Any] = (
        sources.get(S.SOURCE_NAME, {}).get("resources", {}).get(resource, {}))
    return state


def _read_runs_sql(client: Any, load_ids: List[str]) -> List[Dict[str, Any]]:
    """The ``rackwave_runs`` rows of these loads; none when the table cannot be read (the
    table counts that follow on the same client still run)."""
    columns = ", ".join(client.escape_column_name(c) for c in RUN_COLUMNS)
    marks = ", ".join(["%s"] * len(load_ids))
    try:
        rows = client.execute_sql(
            f"SELECT {columns} FROM {client.make_qualified_table_name(S.RUNS_TABLE)} "
            f"WHERE {client.escape_column_name('load_id')} IN ({marks})", *load_ids)
    except Exception:  # noqa: BLE001 - a summary must never fail a load
        return []
    return [dict(zip(RUN_COLUMNS, row)) for row in rows or []]


def _read_runs_lake(pipeline: dlt.Pipeline, load_ids: List[str]) -> List[Dict[str, Any]]:
    """As ``_read_runs_sql``, from the lake's ``rackwave_runs`` table."""
    import pyarrow.compute as pc

    try:
        data = lake_table(pipeline, S.RUNS_TABLE)
        if data is None:
            return []
        found = data.to_table(columns=list(RUN_COLUMNS),
                              filter=pc.field("load_id").isin(load_ids))
    except Exception:  # noqa: BLE001 - a summary must never fail a load
        return []
    rows: List[Dict[str, Any]] = found.to_pylist()
    return rows


def _from_state(resource: str, last_run: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The same figures from the state's ``last_run``, when the table could not be read."""
    try:
        return run_row(resource, RunRecord(**last_run))
    except TypeError:  # no run recorded, or one recorded by another version
        return None


def summarize(
    pipeline: dlt.Pipeline,
    resources: List[str],
    before: Optional[Mapping[str, int]],
) -> List[TableSummary]:
    """What each resource's last run did, as its ``rackwave_runs`` row says (written in the load
    that carried the run, so it is the load just finished), and the rows each table has now.

    The row's figures are the source's own counts (new: created after the run's starting cursor;
    removed: confirmed gone, or flagged): exact on every destination, with nothing to compare
    before and after. ``before`` (row counts before the run, when known) is only reported.
    """
    last_runs = {name: resource_state(pipeline, name).get("last_run") or {} for name in resources}
    load_ids = {name: run["load_id"] for name, run in last_runs.items() if run.get("load_id")}
    loaded, counts = _read_back(pipeline, load_ids, resources)
    return [_summary(name, loaded.get(name) or _from_state(name, last_runs[name]), counts[name],
                     None if before is None else before.get(name, 0))
            for name in resources]


def _summary(name: str, run: Optional[Mapping[str, Any]], rows_after: int,
             rows_before: Optional[int]) -> TableSummary:
    if run is None:
        return TableSummary(name, "not run", 0, 0, rows_before, rows_after, 0, 0, None, 0, 0)
    new, updated = int(run["rows_new"]), int(run["rows_updated"])
    return TableSummary(
        table=name,
        mode=str(run["mode"]).replace("_", " "),
        pages=int(run["pages"]),
        rows_read=new + updated,
        rows_before=rows_before,
        rows_after=rows_after,
        new=new,
        updated=updated,
        removed=int(run["rows_removed"]) + int(run["rows_flagged"]),
        requests=int(run["requests"]),
        rate_limited=int(run["rate_limited"]),
        retries=int(run["retries"]),
        token_renewals=int(run["token_renewals"]),
        api_total=_int(run.get("api_total")),
        load_id=None if run["load_id"] is None else str(run["load_id"]),
        verdict=None if run.get("verdict") is None else str(run["verdict"]),
        rows_held=_int(run.get("rows_held")),
        count_offset=_int(run.get("count_offset")),
    )


def _int(value: Any) -> Optional[int]:
    return None if value is None else int(value)


def checked(rows: List[TableSummary]) -> str:
    """One line: each table's rows against the API's count, and the verdict."""
    parts = []
    for r in rows:
        if r.verdict is None or r.api_total is None or r.rows_held is None:
            continue
        counted = r.api_total - (r.count_offset or 0)
        detail = {"exact": "", "churn": " (changes during the run)",
                  "over": " (deleted since the last full scan, or undecided)",
                  "short": ""}.get(r.verdict, "")
        parts.append(f"{r.table} {r.verdict}: {r.rows_held:,} rows, the API counts "
                     f"{counted:,}{detail}")
    return "Checked: " + "; ".join(parts) + "." if parts else ""


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
    line = checked(rows)
    return "\n".join(lines + ([line] if line else []))
