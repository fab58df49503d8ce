"""Full scans keep the warehouse equal to the API: updates merged, deleted records gone."""

from __future__ import annotations

import pytest

from support import page_requests, pages_for, sandbox_ids


def test_incremental_runs_miss_updates_and_deletes_that_a_full_scan_applies(sandbox, loader):
    loader.run(resources=["leads"])
    records = sandbox.admin.records("leads")
    updated, deleted = records[-1], records[len(records) // 2]
    new_status = "won" if updated["status"] != "won" else "lost"
    sandbox.admin.update("leads", updated["id"], status=new_status)
    sandbox.admin.delete("leads", deleted["id"])

    loader.run(resources=["leads"])  # incremental: created_at did not move
    assert loader.row("leads", updated["id"])["status"] == updated["status"]
    assert deleted["id"] in loader.ids("leads")

    result = loader.run(resources=["leads"], full_scan=True)

    assert loader.row("leads", updated["id"])["status"] == new_status
    assert deleted["id"] not in loader.ids("leads")
    assert loader.ids("leads") == sandbox_ids(sandbox, "leads")
    summary = loader.table(result, "leads")
    assert (summary.mode, summary.removed, summary.new) == ("full scan", 1, 0)


def test_full_scan_every_turns_a_due_run_into_a_full_scan(sandbox, make_loader):
    loader = make_loader(sandbox, full_scan_every="0s")
    loader.run(resources=["contacts"])
    victim = sandbox.admin.records("contacts")[3]["id"]
    sandbox.admin.delete("contacts", victim)
    sandbox.admin.reset_stats()

    result = loader.run(resources=["contacts"])

    assert loader.table(result, "contacts").mode == "full scan"
    assert page_requests(sandbox, "contacts") == pages_for(len(sandbox.admin.ids("contacts")))
    assert loader.ids("contacts") == sandbox_ids(sandbox, "contacts")


def test_full_scan_is_not_due_before_its_interval(sandbox, make_loader):
    loader = make_loader(sandbox, full_scan_every="24h")
    loader.run(resources=["contacts"])
    sandbox.admin.reset_stats()

    result = loader.run(resources=["contacts"])

    assert loader.table(result, "contacts").mode == "incremental"
    assert page_requests(sandbox, "contacts") == 1
    state = result.pipeline.state["sources"]["rackwave"]["resources"]["contacts"]
    assert state["last_full_scan_at"].endswith("Z")


def test_full_scan_of_an_emptied_account_empties_the_table(sandbox_factory, make_loader):
    server = sandbox_factory(leads=5, contacts=0)
    loader = make_loader(server)
    loader.run(resources=["leads"])
    for record_id in server.admin.ids("leads"):
        server.admin.delete("leads", record_id)

    loader.run(resources=["leads"], full_scan=True)

    assert loader.count("leads") == 0


def test_records_created_while_a_full_scan_pages_are_not_doubled(sandbox, loader):
    # Five leads appear right after page 1 is served: every later page shifts by five.
    sandbox.admin.add_trigger("/v1/leads", 1, {"insert": {"kind": "leads", "count": 5}})

    loader.run(resources=["leads"])
    assert loader.query("SELECT COUNT(*) - COUNT(DISTINCT id) FROM rackwave.leads") == [(0,)]
    assert set(loader.ids("leads")) <= set(sandbox.admin.ids("leads"))

    loader.run(resources=["leads"])  # the next run picks up what arrived meanwhile
    assert loader.ids("leads") == sandbox_ids(sandbox, "leads")


@pytest.mark.parametrize("value", ["never", "off"])
def test_full_scans_can_be_switched_off(sandbox, make_loader, value):
    loader = make_loader(sandbox, full_scan_every=value)
    loader.run(resources=["contacts"])
    result = loader.run(resources=["contacts"])
    assert loader.table(result, "contacts").mode == "incremental"


def test_flag_mode_keeps_deleted_records_marked_with_when_they_went(sandbox, make_loader):
    loader = make_loader(sandbox, deleted_records="flag")
    loader.run(resources=["contacts"])
    records = sandbox.admin.records("contacts")
    gone = [records[1], records[-1]]
    for record in gone:
        sandbox.admin.delete("contacts", record["id"])

    result = loader.run(resources=["contacts"], full_scan=True)

    live = loader.query(
        "SELECT id FROM rackwave.contacts WHERE _rackwave_deleted_at IS NULL ORDER BY id")
    assert [r[0] for r in live] == sandbox_ids(sandbox, "contacts")
    flagged = {r["id"]: r for r in (loader.row("contacts", g["id"]) for g in gone)}
    assert all(row["_rackwave_deleted_at"] is not None for row in flagged.values())
    # the flagged copy is the record as it was, tags still a JSON array of strings
    import json
    for record in gone:
        row = flagged[record["id"]]
        assert row["email"] == record["email"]
        assert json.loads(row["tags"]) == record["tags"]
        assert row["address__city"] == record["address"]["city"]
    assert loader.table(result, "contacts").removed == 2
    first_flag = {g["id"]: flagged[g["id"]]["_rackwave_deleted_at"] for g in gone}

    again = loader.run(resources=["contacts"], full_scan=True)

    assert loader.count("contacts") == len(records)
    assert {g["id"]: loader.row("contacts", g["id"])["_rackwave_deleted_at"] for g in gone} \
        == first_flag
    assert loader.table(again, "contacts").removed == 0


def test_full_refresh_drops_tables_and_state_then_reloads(sandbox, loader):
    loader.run()
    victim = sandbox.admin.ids("leads")[0]
    sandbox.admin.delete("leads", victim)

    result = loader.run(full_refresh=True)

    assert loader.ids("leads") == sandbox_ids(sandbox, "leads")
    assert loader.last_run("leads", result)["reason"] == "first run"


@pytest.mark.parametrize("concurrency", [1, 4])
def test_records_deleted_while_a_full_scan_pages_hide_no_other_record(
    sandbox_factory, make_loader, concurrency
):
    # Right after the 2nd page request is answered, the 3 newest leads are deleted: every later
    # page shifts up by 3, so 3 records slide onto pages already read.
    server = sandbox_factory(leads=200, contacts=0)
    deleted = server.admin.ids("leads")[:3]
    server.admin.add_trigger(
        "/v1/leads", 2, {"delete": {"kind": "leads", "count": 3, "position": "newest"}})
    loader = make_loader(server, per_page=10, concurrency=concurrency)

    result = loader.run(resources=["leads"])

    # every surviving record is there; the 3 deleted ones were read (page 1) before they went,
    # and the next full scan removes them
    assert set(loader.ids("leads")) == set(sandbox_ids(server, "leads")) | set(deleted)
    assert loader.query("SELECT COUNT(*) - COUNT(DISTINCT id) FROM rackwave.leads") == [(0,)]
    if concurrency == 1:
        assert loader.last_run("leads", result)["rows_recovered"] == 3
    loader.run(resources=["leads"], full_scan=True)
    assert loader.ids("leads") == sandbox_ids(server, "leads")


def test_records_deleted_below_the_read_position_cost_a_reread_only(sandbox_factory, make_loader):
    server = sandbox_factory(leads=120, contacts=0)
    server.admin.add_trigger(
        "/v1/leads", 2, {"delete": {"kind": "leads", "count": 2, "position": "oldest"}})
    loader = make_loader(server, per_page=10, concurrency=1)

    result = loader.run(resources=["leads"])

    assert loader.ids("leads") == sandbox_ids(server, "leads")
    assert loader.last_run("leads", result)["rows_recovered"] == 0


def test_a_page_the_api_cuts_short_removes_no_record_it_left_out(sandbox, make_loader):
    # Page 2 comes back with half its records (an API bug). Its meta says page 3 follows, so the
    # scan reads on; the 50 records page 2 left out are looked up before anything is removed:
    # all still there, they stay; the one really deleted goes.
    loader = make_loader(sandbox, concurrency=1)
    loader.run(resources=["leads"])
    records = sandbox.admin.records("leads")
    gone = records[5]["id"]
    sandbox.admin.delete("leads", gone)
    records = sandbox.admin.records("leads")
    half = {"data": records[100:150], "meta": {"total": len(records), "per_page": 100,
                                               "current_page": 2, "last_page": 3}}
    sandbox.admin.add_faults([{"kind": "body", "body": half, "path": "/v1/leads", "page": 2}])

    result = loader.run(resources=["leads"], full_scan=True)

    assert loader.ids("leads") == sandbox_ids(sandbox, "leads")
    run = loader.last_run("leads", result)
    assert run["quiet"] is False  # 150 records listed, the total says 249
    assert (run["deletion_candidates"], run["still_there"], run["deletions_confirmed"]) == (
        51, 50, 1)
