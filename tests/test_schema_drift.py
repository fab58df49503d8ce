"""The API changes its data: new fields become columns, changed types variant columns, or, with a
frozen schema, the run stops naming the table, the field and the type."""

from __future__ import annotations

import pytest

from rackwave_source import SchemaContractError
from support import sandbox_ids

NEWEST = {"path": "/v1/leads", "page": 1, "count": 1}


def columns(loader, table: str) -> dict:
    rows = loader.query(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'rackwave' AND table_name = ?", table)
    return dict(rows)


def test_new_fields_become_columns_and_changed_types_variant_columns(sandbox, loader):
    loader.run(resources=["leads"])
    assert columns(loader, "leads")["score"] == "BIGINT"  # an undocumented field, inferred
    (new,) = sandbox.admin.insert("leads", count=1)
    sandbox.admin.add_faults([{"kind": "tamper", **NEWEST, "tamper": {"record": 0, "set": {
        "phone": 5551234,          # documented as text
        "tags": "vip",             # documented as an array of strings
        "score": "high",           # was a number in the first load
        "lead_grade": "A",         # never seen before
    }}}])

    loader.run(resources=["leads"])  # incremental: merged into the loaded table

    row = loader.row("leads", new["id"])
    assert (row["phone"], row["phone__v_bigint"]) == (None, 5551234)
    assert (row["tags"], row["tags__v_text"]) == (None, "vip")
    assert (row["score"], row["score__v_text"]) == (None, "high")
    assert row["lead_grade"] == "A"
    found = columns(loader, "leads")
    assert (found["phone"], found["phone__v_bigint"], found["score__v_text"]) == (
        "VARCHAR", "BIGINT", "VARCHAR")
    # every other row keeps its values in the original columns
    assert loader.query(
        "SELECT COUNT(*) FROM rackwave.leads WHERE phone__v_bigint IS NOT NULL "
        "OR tags__v_text IS NOT NULL OR score__v_text IS NOT NULL") == [(1,)]
    assert loader.query("SELECT COUNT(*) FROM rackwave.leads WHERE score IS NOT NULL") == [
        (len(sandbox_ids(sandbox, "leads")) - 1,)]
    assert loader.ids("leads") == sandbox_ids(sandbox, "leads")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"lead_grade": "A"},
         "Rackwave `leads`: field `lead_grade` arrived as text, which needs a new column, and "
         'schema_contract = "freeze" allows none'),
        ({"score": "high"},
         "Rackwave `leads`: field `score` arrived as text, which needs a new type for an "
         "existing column"),
        ({"phone": 5551234},
         "Rackwave `leads`: field `phone` arrived as bigint, which needs a new type"),
    ],
)
def test_a_frozen_schema_stops_the_run_naming_table_field_and_type(
    sandbox, make_loader, change, expected
):
    loader = make_loader(sandbox, schema_contract="freeze")
    loader.run(resources=["leads"])  # the first load creates the tables
    before = loader.query("SELECT * FROM rackwave.leads ORDER BY id")
    known = columns(loader, "leads")
    sandbox.admin.insert("leads", count=1)
    sandbox.admin.add_faults([{"kind": "tamper", **NEWEST,
                               "tamper": {"record": 0, "set": change}}])

    with pytest.raises(SchemaContractError) as raised:
        loader.run(resources=["leads"])

    assert expected in str(raised.value)
    assert "Nothing of this run was loaded" in str(raised.value)
    assert columns(loader, "leads") == known
    assert loader.query("SELECT * FROM rackwave.leads ORDER BY id") == before

    loader.run(resources=["leads"])  # the API is back to its old shape: the next run loads
    assert loader.ids("leads") == sandbox_ids(sandbox, "leads")


def test_an_unknown_schema_contract_is_refused_before_any_request(sandbox, make_loader):
    from rackwave_source import ConfigurationError

    loader = make_loader(sandbox, schema_contract="strict")
    with pytest.raises(ConfigurationError) as raised:
        loader.run()
    assert "schema_contract" in str(raised.value) and "evolve, freeze" in str(raised.value)
    assert sandbox.admin.stats()["requests"] == {}
