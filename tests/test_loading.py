"""A first load: every record lands once, with the values and types the API sent."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from support import DATASET, page_requests, pages_for, sandbox_ids


@pytest.mark.parametrize("rows", [0, 1, 100, 101])
def test_exact_row_counts_and_pages(sandbox_factory, make_loader, rows):
    server = sandbox_factory(leads=rows, contacts=rows)
    loader = make_loader(server)

    result = loader.run()

    for kind in ("leads", "contacts"):
        assert loader.ids(kind) == sandbox_ids(server, kind)
        assert page_requests(server, kind) == pages_for(rows)
        assert loader.table(result, kind).rows_after == rows


@pytest.mark.slow
def test_ten_thousand_leads_load_exactly_once(sandbox_factory, make_loader):
    server = sandbox_factory(leads=10_000, contacts=50)
    loader = make_loader(server)

    loader.run(resources=["leads"])

    assert loader.count("leads") == 10_000
    assert loader.ids("leads") == sandbox_ids(server, "leads")
    assert page_requests(server, "leads") == pages_for(10_000)
    # contacts were not selected: never requested, never created
    assert page_requests(server, "contacts") == 0
    assert loader.query(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'contacts'"
    ) == [(0,)]


def test_values_types_and_shape(sandbox, loader):
    loader.run()
    lead = sandbox.admin.records("leads")[0]
    contact = next(c for c in sandbox.admin.records("contacts") if c.get("address"))

    row = loader.row("leads", lead["id"])
    assert row["name"] == lead["name"]
    assert row["email"] == lead["email"]
    assert row["status"] == lead["status"]
    assert row["phone"] == lead["phone"]
    assert json.loads(row["tags"]) == lead["tags"]
    expected_created = datetime.fromisoformat(lead["created_at"].replace("Z", "+00:00"))
    assert row["created_at"] == expected_created.astimezone(row["created_at"].tzinfo)

    crow = loader.row("contacts", contact["id"])
    assert crow["address__city"] == contact["address"]["city"]
    assert crow["address__country"] == contact["address"]["country"]
    assert crow["lead_id"] == contact["lead_id"]

    types = dict(
        loader.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = 'leads'",
            DATASET,
        )
    )
    assert types["created_at"].startswith("TIMESTAMP")
    assert types["updated_at"].startswith("TIMESTAMP")
    assert types["tags"] == "JSON"
    # no child table for tags: they live in the JSON column
    tables = {r[0] for r in loader.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", DATASET)}
    assert {"leads", "contacts"} <= tables
    assert not any(t.startswith("leads__") or t.startswith("contacts__") for t in tables)


def test_unicode_nulls_and_undocumented_fields_survive(sandbox, loader):
    loader.run(resources=["leads"])
    records = sandbox.admin.records("leads")

    unicode_lead = next(r for r in records if any(ord(ch) > 127 for ch in r["name"]))
    assert loader.row("leads", unicode_lead["id"])["name"] == unicode_lead["name"]

    null_phone = next(r for r in records if r["phone"] is None)
    assert loader.row("leads", null_phone["id"])["phone"] is None

    documented = {"id", "name", "email", "phone", "company", "status", "source", "tags",
                  "created_at", "updated_at"}
    extra = sorted({k for r in records for k in r} - documented)
    assert extra, "the sandbox is expected to send undocumented fields"
    columns = {r[0] for r in loader.query(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
        "AND table_name = 'leads'", DATASET)}
    assert set(extra) <= columns


def test_per_page_sets_the_number_of_requests(sandbox_factory, make_loader):
    server = sandbox_factory(leads=7, contacts=0)
    loader = make_loader(server, per_page=3)

    loader.run(resources=["leads"])

    assert loader.count("leads") == 7
    assert page_requests(server, "leads") == pages_for(7, per_page=3)
    assert server.admin.stats()["pages"]["GET /v1/leads"] == [1, 2, 3, 1]  # page 1 again: the top


def test_lead_filters_pass_through_to_the_api(sandbox, make_loader):
    records = sandbox.admin.records("leads")
    won = sorted(r["id"] for r in records if r["status"] == "won")
    loader = make_loader(sandbox, lead_status="won")

    loader.run(resources=["leads"])

    assert loader.ids("leads") == won

    term = records[0]["email"].split("@")[1][:4].upper()
    expected = sorted(
        r["id"] for r in records
        if any(term.lower() in (r.get(f) or "").lower() for f in ("name", "email", "company"))
    )
    searcher = make_loader(sandbox, lead_search=term, pipeline_name="search")
    searcher.workdir = searcher.workdir / "search"
    searcher.workdir.mkdir()
    searcher.run(resources=["leads"])
    assert searcher.ids("leads") == expected


def test_each_row_carries_the_load_that_wrote_it(sandbox, loader):
    result = loader.run(resources=["leads"])
    load_ids = loader.query("SELECT DISTINCT _dlt_load_id FROM rackwave.leads")
    assert load_ids == [(result.pipeline.last_trace.last_load_info.loads_ids[0],)]
