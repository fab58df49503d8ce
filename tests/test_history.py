"""``history = "scd2"``: ``leads_history`` and ``contacts_history`` keep every observed version.

End to end against the sandbox (records changed and deleted through its admin API), on DuckDB and
on the suite's Postgres: a lead through several status changes, full scans between, then its
deletion; an incremental run that adds new records and closes nothing; a run that changes
nothing; ``deleted_records = "flag"``; the filesystem destination refused before anything is
read (``rackwave_source/warehouse/versions.py``). Runs killed while loading history are in
``test_kills.py``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

import doc_pages
from support import DATASET, assert_equals_api
from warehouses import DeltaWarehouse, DuckDBWarehouse, PostgresWarehouse

Version = Tuple[str, str, datetime, Any]  # id, status, valid from, valid to


def versions(loader: Any, table: str = "leads_history") -> Dict[str, List[Version]]:
    """Each id's versions, oldest first."""
    rows = loader.query(
        f"SELECT id, {'status' if table == 'leads_history' else 'email'}, _dlt_valid_from, "
        f"_dlt_valid_to FROM {DATASET}.{table} ORDER BY id, _dlt_valid_from")
    found: Dict[str, List[Version]] = {}
    for row in rows:
        found.setdefault(row[0], []).append(tuple(row))  # type: ignore[arg-type]
    return found


def assert_intervals_chain(history: Dict[str, List[Version]]) -> None:
    """Each version ends where the next begins; at most one is current (valid_to NULL), the
    last one."""
    for record, kept in history.items():
        for older, newer in zip(kept, kept[1:]):
            assert older[3] == newer[2], f"{record}: {older} does not end where {newer} begins"
        assert all(v[3] is not None for v in kept[:-1]), f"{record}: an old version is open"


def current(history: Dict[str, List[Version]]) -> Dict[str, str]:
    return {record: kept[-1][1] for record, kept in history.items() if kept[-1][3] is None}


@pytest.fixture(params=["duckdb", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "duckdb":
        yield DuckDBWarehouse(tmp_path / "rackwave_data.duckdb")
    else:
        with request.getfixturevalue("postgres_server").database() as dsn:
            yield PostgresWarehouse(dsn)


def test_a_lead_through_status_changes_and_a_deletion(sandbox_factory, make_loader, where):
    server = sandbox_factory(leads=40, contacts=15)
    loader = make_loader(server, warehouse=where, history="scd2")
    loader.run()
    first = versions(loader)
    assert len(first) == 40 and all(len(v) == 1 and v[0][3] is None for v in first.values())
    assert len(versions(loader, "contacts_history")) == 15

    lead = next(r["id"] for r in server.admin.records("leads")
                if r["status"] not in ("contacted", "qualified", "won"))
    for status in ("contacted", "qualified", "won"):
        server.admin.update("leads", lead, status=status)
        loader.run(full_scan=True)
    server.admin.delete("leads", lead)
    result = loader.run(full_scan=True)

    history = versions(loader)
    assert [v[1] for v in history[lead]][1:] == ["contacted", "qualified", "won"]
    assert all(v[3] is not None for v in history[lead]), "the deleted lead stays open"
    assert_intervals_chain(history)
    others = {i: v for i, v in history.items() if i != lead}
    assert all(len(v) == 1 and v[0][3] is None for v in others.values())  # unchanged: 1 version
    api = {r["id"]: r["status"] for r in server.admin.records("leads")}
    assert current(history) == api
    assert_equals_api(loader, server)  # the current state, as without history
    runs = loader.query(f"SELECT COUNT(*) FROM {DATASET}.rackwave_runs")[0][0]
    assert runs == 2 * 5
    assert {t.table for t in result.tables} >= {"leads", "contacts"}
    assert_readme_queries_answer(loader, lead, [v[1] for v in history[lead]])


def test_a_full_scan_that_finds_every_contact_gone_closes_every_version(sandbox_factory,
                                                                          make_loader, where):
    """Found by the randomized model: with every contact gone (or a server that shows the list
    empty), the full scan emptied `contacts` but its history load held no row, so dlt's scd2
    merge never ran and every version stayed current."""
    server = sandbox_factory(leads=20, contacts=6)
    loader = make_loader(server, warehouse=where, history="scd2")
    loader.run()
    for contact in server.admin.ids("contacts"):
        server.admin.delete("contacts", contact)

    loader.run(full_scan=True)

    assert loader.count("contacts") == 0
    history = versions(loader, "contacts_history")
    assert len(history) == 6 and all(v[-1][3] is not None for v in history.values())
    assert current(versions(loader)) == {r["id"]: r["status"]
                                         for r in server.admin.records("leads")}


def readme_queries() -> Dict[str, str]:
    """The SQL blocks of the History section of docs/tables-and-history.md, by their first
    comment line."""
    section = doc_pages.section("tables-and-history.md", "History")
    blocks = [b.split("```", 1)[0] for b in section.split("```sql\n")[1:]]
    return {b.splitlines()[0].lstrip("- ").strip(): b for b in blocks}


def assert_readme_queries_answer(loader: Any, lead: str, statuses: List[str]) -> None:
    """The documented example queries (docs/tables-and-history.md, History) run as printed and
    tell the lead's story."""
    queries = readme_queries()
    assert set(queries) == {"time in status per lead", "weekly status transitions",
                            "deleted leads"}
    times = {(r[0], r[1]): r[2] for r in loader.query(queries["time in status per lead"])
             if r[0] == lead}
    assert set(times) == {(lead, s) for s in statuses}
    assert all(float(hours) > 0 for hours in times.values())
    moves = loader.query(queries["weekly status transitions"])
    assert sorted((r[1], r[2], r[3]) for r in moves) == sorted(
        (a, b, 1) for a, b in zip(statuses, statuses[1:]))
    assert [r[0] for r in loader.query(queries["deleted leads"])] == [lead]


def test_an_incremental_run_adds_new_records_and_closes_nothing(sandbox_factory, make_loader):
    server = sandbox_factory(leads=30, contacts=10)
    loader = make_loader(server, history="scd2")
    loader.run()
    changed = server.admin.records("leads")[3]["id"]
    server.admin.update("leads", changed, status="lost")  # an incremental run does not see it
    server.admin.delete("leads", server.admin.records("leads")[4]["id"])
    new = [r["id"] for r in server.admin.insert("leads", count=3)]

    loader.run()

    history = versions(loader)
    assert len(history) == 33 and all(len(v) == 1 for v in history.values())
    assert all(v[0][3] is None for v in history.values()), "an incremental run closed a version"
    assert set(new) <= set(history)

    table = f"SELECT * FROM {DATASET}.leads_history ORDER BY id, _dlt_valid_from"
    before = loader.query(table)
    loader.run()  # nothing new: nothing changes
    assert loader.query(table) == before
    loader.run(full_scan=True)  # a full scan: the update and the deletion, nothing else
    history = versions(loader)
    assert len(history[changed]) == 2 and history[changed][-1][1] == "lost"
    assert sum(1 for v in history.values() for x in v if x[3] is not None) == 2
    assert len(loader.query(table)) == len(before) + 1
    after = loader.query(table)
    loader.run(full_scan=True)  # again: nothing changed, nothing changes
    assert loader.query(table) == after


def test_flagged_deletions_close_the_version_and_keep_the_current_row(sandbox_factory,
                                                                       make_loader):
    server = sandbox_factory(leads=20, contacts=5)
    loader = make_loader(server, history="scd2", deleted_records="flag")
    loader.run()
    gone = server.admin.records("leads")[2]["id"]
    server.admin.delete("leads", gone)

    loader.run(full_scan=True)
    loader.run(full_scan=True)

    assert loader.row("leads", gone)["_rackwave_deleted_at"] is not None
    history = versions(loader)
    assert len(history[gone]) == 1 and history[gone][0][3] is not None
    assert len(current(history)) == 19


def test_the_filesystem_destination_is_refused_before_anything_is_read(sandbox, make_loader,
                                                                       tmp_path):
    from rackwave_source.exceptions import ConfigurationError

    lake = tmp_path / "lake"
    loader = make_loader(sandbox, warehouse=DeltaWarehouse(lake), history="scd2")
    sandbox.admin.reset_stats()

    with pytest.raises(ConfigurationError) as refused:
        loader.run()

    assert "Invalid Rackwave setting `history`" in str(refused.value)
    assert "filesystem destination cannot keep history" in str(refused.value)
    assert 'history = "off"' in str(refused.value)
    assert sandbox.admin.requests("GET /v1/leads") == 0
    assert sandbox.admin.requests("GET /v1/contacts") == 0
    assert not list(lake.rglob("*.parquet")) and not list(lake.rglob("*.jsonl*"))


def test_a_record_a_full_scan_missed_and_could_not_look_up_stays_open(sandbox_factory,
                                                                      make_loader, where):
    # Page 2 comes back with half its records (an API bug, as in test_full_scan): the records
    # the scan missed are looked up; one has no field the search matches, so no lookup can tell
    # whether it is gone. The current table keeps it as loaded; its version must stay open too.
    server = sandbox_factory(leads=250, contacts=5)
    unsearchable = server.admin.records("leads")[160]["id"]
    server.admin.update("leads", unsearchable, name=None, email=None)
    loader = make_loader(server, warehouse=where, history="scd2", concurrency=1)
    loader.run(resources=["leads"])
    records = server.admin.records("leads")
    half = {"data": records[100:150], "meta": {"total": len(records), "per_page": 100,
                                               "current_page": 2, "last_page": 3}}
    server.admin.add_faults([{"kind": "body", "body": half, "path": "/v1/leads", "page": 2}])

    result = loader.run(resources=["leads"], full_scan=True)

    assert loader.last_run("leads", result)["undecided"] == 1
    history = versions(loader)
    assert len(history) == 250 and all(len(v) == 1 for v in history.values())
    assert history[unsearchable][0][3] is None, "a record no lookup could settle was closed"
    assert len(current(history)) == 250
