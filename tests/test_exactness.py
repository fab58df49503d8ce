"""Exit 0 means exact: servers that behave a little differently from our sandbox's defaults.

Each story here is one that once ended in exit 0 over a wrong warehouse: a server serving fewer
records per page than asked, a record dated in the future, a page of records that all break the
contract. Arrange the sandbox that way, run as a user would (the command and plain dlt code), and
compare the warehouse with the API.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List

import pytest

from support import assert_equals_api


def test_a_server_that_serves_fewer_records_per_page_than_asked_loses_none(
        sandbox_factory, make_loader, via):
    # The account's server caps pages at 50 and says so (meta.per_page 50, last_page to match).
    server = sandbox_factory(leads=730, contacts=260, page_cap=50)
    loader = make_loader(server, via=via, per_page=100)

    loader.run()
    assert_equals_api(loader, server)

    server.admin.insert("leads", count=75)
    server.admin.insert("contacts", count=3)
    loader.run()
    assert_equals_api(loader, server)
    assert loader.count("leads") == 805


def test_a_page_cap_on_a_full_scan_read_by_many_workers_loses_none(sandbox_factory, make_loader):
    server = sandbox_factory(leads=1210, contacts=40, page_cap=30)
    loader = make_loader(server, per_page=100, concurrency=6)
    loader.run(full_scan=True)
    assert_equals_api(loader, server)
    server.admin.delete("leads", server.admin.ids("leads")[700])
    loader.run(full_scan=True)
    assert_equals_api(loader, server)


def _bad_page(server: Any, number: int) -> List[Dict[str, Any]]:
    """Page ``number`` of leads served, on every read, with each record's created_at broken
    (as a migration might leave them); returns the records it hides."""
    records = server.admin.records("leads")
    hidden: List[Dict[str, Any]] = records[(number - 1) * 100:number * 100]
    bad = [{**record, "created_at": "not a timestamp"} for record in hidden]
    body = {"data": bad, "meta": {"total": len(records), "per_page": 100,
                                  "current_page": number, "last_page": -(-len(records) // 100)}}
    server.admin.add_faults([{"kind": "body", "body": body, "path": "/v1/leads",
                              "page": number, "count": 1000}])
    return hidden


@pytest.mark.parametrize("bad_page", [1, 2])
def test_a_page_whose_records_all_break_the_contract_is_set_aside_once(
        sandbox_factory, make_loader, via, bad_page):
    # 100 leads whose created_at is not a timestamp fill one whole page (the top of the list, or
    # between good pages), on every read of it.
    server = sandbox_factory(leads=350, contacts=20)
    records = server.admin.records("leads")
    hidden = _bad_page(server, bad_page)
    loader = make_loader(server, via=via, bad_records="quarantine")
    expected = sorted({r["id"] for r in records} - {r["id"] for r in hidden})

    loader.run()  # the first load: a full scan
    assert loader.ids("leads") == expected
    loader.run()  # incremental: reads the top page again
    loader.run(full_scan=True)

    assert loader.ids("leads") == expected
    rows = loader.query("SELECT record_id, first_seen_at, last_seen_at "
                        "FROM rackwave.rackwave_quarantine ORDER BY record_id")
    assert [r[0] for r in rows] == sorted(r["id"] for r in hidden)  # each once
    runs = [row[0] for row in loader.query(
        "SELECT started_at FROM rackwave.rackwave_runs WHERE resource = 'leads' "
        "ORDER BY started_at")]
    assert len(runs) == 3
    assert {r[1] for r in rows} == {runs[0]}
    assert {r[2] for r in rows} == {runs[-1]}


def test_bad_records_are_set_aside_once_on_every_warehouse(sandbox_factory, make_loader, warehouse):
    server = sandbox_factory(leads=250, contacts=20)
    hidden = _bad_page(server, 2)
    loader = make_loader(server, warehouse=warehouse, bad_records="quarantine")
    loader.run()
    loader.run(full_scan=True)
    rows = loader.query("SELECT record_id FROM rackwave.rackwave_quarantine")
    assert sorted(r[0] for r in rows) == sorted(r["id"] for r in hidden)
    assert loader.count("leads") == 150
