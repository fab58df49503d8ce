"""API data that breaks the contract: a clear error before anything loads, or a quarantine."""

from __future__ import annotations

import json

import pytest

from rackwave_source import UnexpectedResponseError
from support import page_requests, pages_for, sandbox_ids

ON_PAGE_2 = {"path": "/v1/leads", "page": 2, "count": 1}


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ({"record": 4, "drop": ["id"]}, "page 2, record 4: it has no `id`"),
        ({"record": 4, "set": {"created_at": None}}, "page 2, record 4: it has no `created_at`"),
        ({"record": 4, "set": {"created_at": "yesterday"}},
         "page 2: field `created_at` holds a value that is not"),
    ],
)
def test_a_bad_record_stops_the_run_naming_resource_page_and_problem(
    sandbox, loader, tamper, expected
):
    loader.run(resources=["leads"])  # a good first load
    before = loader.ids("leads")
    sandbox.admin.add_faults([{"kind": "tamper", "tamper": tamper, **ON_PAGE_2}])

    with pytest.raises(UnexpectedResponseError) as raised:
        loader.run(resources=["leads"], full_scan=True)

    assert "Rackwave `leads` " + expected in str(raised.value)
    assert loader.ids("leads") == before  # nothing replaced, nothing lost


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([1, 2, 3], "expected a JSON object, got list"),
        ({"items": [], "meta": {"total": 0, "last_page": 1}}, "`data` is missing or not a list"),
        ({"data": [], "pagination": {}}, "`meta` is missing or not an object"),
        ({"data": [], "meta": {"total": "many", "last_page": 1}},
         "`meta.total` and `meta.last_page` must be integers"),
        ({"data": ["lead_1"], "meta": {"total": 1, "last_page": 1}},
         "record 0 is a str, not an object"),
    ],
)
def test_a_page_that_is_not_the_documented_envelope_is_named(sandbox, loader, body, problem):
    sandbox.admin.add_faults([{"kind": "body", "body": body, "path": "/v1/contacts"}])

    with pytest.raises(UnexpectedResponseError) as raised:
        loader.run(resources=["contacts"])

    text = str(raised.value)
    assert f"Rackwave `contacts` page 1 from {sandbox.base_url}/contacts" in text
    assert problem in text


def test_quarantine_keeps_bad_records_aside_and_loads_the_rest(sandbox, make_loader):
    loader = make_loader(sandbox, bad_records="quarantine")
    records = sandbox.admin.records("leads")
    bad_type, no_id = records[104], records[210]
    sandbox.admin.add_faults([
        {"kind": "tamper", "tamper": {"record": 4, "set": {"created_at": "yesterday"}},
         **ON_PAGE_2},
        {"kind": "tamper", "tamper": {"record": 10, "drop": ["id"]}, "path": "/v1/leads",
         "page": 3, "count": 1},
    ])

    result = loader.run(resources=["leads"])

    assert set(loader.ids("leads")) == set(sandbox_ids(sandbox, "leads")) - {bad_type["id"]} - {
        no_id["id"]}
    rows = loader.query(
        "SELECT resource, page, record_index, record_id, reason, record "
        "FROM rackwave.rackwave_quarantine ORDER BY page")
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("leads", 2, 4, bad_type["id"]), ("leads", 3, 10, None)]
    assert "created_at" in rows[0][4] and "no `id`" in rows[1][4]
    assert json.loads(rows[1][5])["email"] == no_id["email"]
    assert loader.last_run("leads", result)["quarantined"] == 2
    assert page_requests(sandbox, "leads") == pages_for(250)
