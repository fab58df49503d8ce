"""A busy account: records created at the top and deleted anywhere while the connector pages.

Each story arranges a sandbox whose every list request first creates and deletes records (the
sandbox's ``churn_*`` settings), runs the pipeline, then compares the warehouse with the sandbox
record by record. What must hold after a full scan under churn:

* every record that existed for the whole run is in the warehouse, once;
* no record the API still holds was removed (or flagged deleted);
* records created during the run are there after it or after the next incremental run;
* records deleted during the run are gone after the next full scan.
"""

from __future__ import annotations

from typing import Any, Set

import pytest

from support import assert_equals_api, sandbox_ids

SEEDS = (1, 2, 3)


def ids(server: Any, kind: str = "leads") -> Set[str]:
    return set(server.admin.ids(kind))


def churn(server: Any, creates: float, deletes: float) -> None:
    server.admin.configure(churn_creates=creates, churn_deletes=deletes)


def assert_no_doubles(loader: Any, kind: str = "leads") -> None:
    assert loader.query(f"SELECT COUNT(*) - COUNT(DISTINCT id) FROM rackwave.{kind}") == [(0,)]


CHURNS = {"balanced": (2, 2), "deletes-only": (0, 3), "growing": (3, 1)}
#: a Latin square: every concurrency meets every churn and every seed once (9 runs, not 27)
SCANS_UNDER_CHURN = [
    pytest.param(creates, deletes, concurrency, SEEDS[(row + column) % len(SEEDS)],
                 id=f"{name}-{concurrency}-{SEEDS[(row + column) % len(SEEDS)]}")
    for row, concurrency in enumerate((1, 4, 16))
    for column, (name, (creates, deletes)) in enumerate(CHURNS.items())
]


@pytest.mark.parametrize("creates, deletes, concurrency, seed", SCANS_UNDER_CHURN)
def test_a_full_scan_under_churn_loses_nothing_and_removes_nothing_alive(
        sandbox_factory, make_loader, seed, concurrency, creates, deletes):
    server = sandbox_factory(leads=1500, contacts=0, seed=seed)
    loader = make_loader(server, per_page=20, concurrency=concurrency)
    loader.run(resources=["leads"])
    loaded_before = set(loader.ids("leads"))
    before = ids(server)

    churn(server, creates, deletes)
    result = loader.run(resources=["leads"], full_scan=True)
    churn(server, 0, 0)
    after = ids(server)

    loaded = set(loader.ids("leads"))
    assert_no_doubles(loader)
    assert before & after <= loaded, f"lost {sorted((before & after) - loaded)[:5]}"
    assert (after & loaded_before) <= loaded, "a record the API still holds was removed"
    run = loader.last_run("leads", result)
    assert run["quiet"] is False
    assert run["lookups"] <= run["deletion_candidates"]

    loader.run(resources=["leads"])  # incremental: what was created during the scan arrives
    assert after <= set(loader.ids("leads"))
    loader.run(resources=["leads"], full_scan=True)  # quiet: what was deleted meanwhile goes
    assert_equals_api(loader, server, kinds=("leads",))


@pytest.mark.parametrize("seed", SEEDS)
def test_flag_mode_under_churn_flags_only_records_the_api_no_longer_holds(
        sandbox_factory, make_loader, seed):
    server = sandbox_factory(leads=600, contacts=300, seed=seed)
    loader = make_loader(server, per_page=20, concurrency=4, deleted_records="flag")
    loader.run(resources=["contacts"])

    churn(server, 2, 2)
    loader.run(resources=["contacts"], full_scan=True)
    churn(server, 0, 0)

    after = ids(server, "contacts")
    flagged = {r[0] for r in loader.query(
        "SELECT id FROM rackwave.contacts WHERE _rackwave_deleted_at IS NOT NULL")}
    assert not flagged & after, f"flagged but alive: {sorted(flagged & after)[:5]}"
    assert_no_doubles(loader, "contacts")
    loader.run(resources=["contacts"], full_scan=True)
    live = {r[0] for r in loader.query(
        "SELECT id FROM rackwave.contacts WHERE _rackwave_deleted_at IS NULL")}
    assert live == ids(server, "contacts")


@pytest.mark.parametrize("seed", SEEDS)
def test_incremental_runs_under_churn_never_skip_a_new_record(sandbox_factory, make_loader, seed):
    server = sandbox_factory(leads=400, contacts=0, seed=seed)
    loader = make_loader(server, per_page=10, full_scan_every="never")
    loader.run(resources=["leads"])
    before = ids(server)

    churn(server, 3, 2)
    for _ in range(3):
        loader.run(resources=["leads"])
    churn(server, 0, 0)
    loader.run(resources=["leads"])

    created = ids(server) - before
    assert created and created <= set(loader.ids("leads"))
    assert_no_doubles(loader)


def test_a_quiet_full_scan_costs_one_request_over_its_pages(sandbox_factory, make_loader):
    server = sandbox_factory(leads=1000, contacts=0)
    loader = make_loader(server, per_page=20, concurrency=8)
    loader.run(resources=["leads"])
    server.admin.reset_stats()

    result = loader.run(resources=["leads"], full_scan=True)

    run = loader.last_run("leads", result)
    assert run["quiet"] is True
    # 50 full pages, the empty 51st (the count is not trusted alone), and page 1 again
    assert server.admin.requests("GET /v1/leads") == 52
    assert (run["lookups"], run["holes"], run["rows_repeated"]) == (0, 0, 0)


@pytest.mark.parametrize("leads", [201, 200, 199])
def test_a_count_that_trails_the_data_loses_no_record(sandbox_factory, make_loader, leads):
    # meta.total says one record fewer than the list holds: with 201 records it says 200, so
    # last_page says 2 while the oldest record sits alone on page 3
    server = sandbox_factory(leads=leads, contacts=leads, count_lag=1)
    loader = make_loader(server)

    loader.run()
    assert_equals_api(loader, server)

    server.admin.insert("leads", count=150)
    server.admin.insert("contacts", count=150)
    loader.run()  # incremental: two pages and a half of new records
    assert_equals_api(loader, server)


def test_a_resource_empty_at_its_first_load_loads_once_it_has_records(
        sandbox_factory, make_loader, warehouse):
    server = sandbox_factory(leads=30, contacts=0)
    loader = make_loader(server, warehouse=warehouse)
    loader.run()
    assert loader.count("contacts") == 0

    server.admin.insert("contacts", count=12)
    loader.run()
    assert_equals_api(loader, server)
    loader.run(full_scan=True)
    assert_equals_api(loader, server)

    for record_id in server.admin.ids("contacts"):  # the account empties out...
        server.admin.delete("contacts", record_id)
    loader.run(full_scan=True)
    assert loader.count("contacts") == 0
    server.admin.insert("contacts", count=5)  # ...and fills again
    loader.run()
    assert_equals_api(loader, server)
    assert sorted(loader.ids("contacts")) == sandbox_ids(server, "contacts")
