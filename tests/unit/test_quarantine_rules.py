"""With ``bad_records = "quarantine"`` a record that breaks the API contract is set aside with where
it was and why, and every other record of its page still loads; with ``"fail"`` the same record
stops the run naming it (``rackwave_source/rows/quarantine.py``, through ``api/decode.py``'s page
reader). Each record ends up exactly once: loaded or quarantined. Canned pages only."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackwave_source.api.decode import PageReader, check_page
from rackwave_source.exceptions import UnexpectedResponseError
from rackwave_source.rows.arrow_shape import arrow_schema
from rackwave_source.rows.drift import ColumnTypes
from rackwave_source.rows.privacy import Privacy
from rackwave_source.rows.quarantine import quarantine_row, set_aside_keyless, sort_out
from rackwave_source.schema import LEAD_COLUMNS

URL = "https://api.rackwave.io/v1/leads"
US_UTC = pa.timestamp("us", tz="UTC")


def lead(i: int, **fields: Any) -> Dict[str, Any]:
    return {"id": f"lead_{i}", "name": f"Lead {i}", "email": f"l{i}@example.com",
            "created_at": f"2026-03-{27 - i:02d}T10:00:00Z", **fields}


def body(records: List[Any]) -> bytes:
    return json.dumps({"data": records, "meta": {"total": len(records), "per_page": 20,
                                                 "current_page": 1, "last_page": 1}}).encode()


def sorted_out(data: List[Any], privacy: Privacy = Privacy()):
    types = ColumnTypes({name: str(c["data_type"]) for name, c in LEAD_COLUMNS.items()})
    return sort_out("leads", 3, data, LEAD_COLUMNS, arrow_schema(LEAD_COLUMNS), types, privacy)


def test_a_quarantine_row_says_where_and_why_and_keeps_the_whole_record_as_json():
    record = lead(1, phone=447700900000)

    row = quarantine_row("leads", 7, 12, record, "a reason")

    assert {k: v for k, v in row.items() if k != "record"} == {
        "resource": "leads", "page": 7, "record_index": 12, "record_id": "lead_1",
        "reason": "a reason"}
    assert json.loads(row["record"]) == record


@pytest.mark.parametrize("record", [{"id": 42, "created_at": "2026-03-27T10:00:00Z"},
                                    ["lead_1", "2026-03-27T10:00:00Z"], "lead_1", None])
def test_a_record_id_that_is_not_text_is_not_copied_into_record_id_but_kept_in_the_record(record):
    row = quarantine_row("leads", 1, 0, record, "r")

    assert row["record_id"] is None
    assert json.loads(row["record"]) == record


def test_set_aside_keyless_splits_off_exactly_the_rows_without_id_or_created_at():
    table = pa.table({
        "id": pa.array(["a", None, "c", "d"], pa.string()),
        "created_at": pa.array([3, 2, None, 1], pa.int64()).cast(US_UTC),
        "name": ["A", "B", "C", "D"],
    })

    kept, rejected = set_aside_keyless("leads", 5, table)

    assert kept.column("id").to_pylist() == ["a", "d"]
    assert [(r["page"], r["record_index"], r["record_id"]) for r in rejected] == \
        [(5, 1, None), (5, 2, "c")]
    assert {r["reason"] for r in rejected} == {"no `id` or `created_at`"}
    assert [json.loads(r["record"])["name"] for r in rejected] == ["B", "C"]


def test_a_page_whose_records_all_have_their_keys_passes_set_aside_keyless_untouched():
    table = pa.table({"id": ["a", "b"],
                      "created_at": pa.array([2, 1], pa.int64()).cast(US_UTC)})

    kept, rejected = set_aside_keyless("leads", 1, table)

    assert kept is table and rejected == []


@pytest.mark.parametrize("bad, reason", [
    ("lead_1", "a str, not an object"),
    (["lead_1"], "a list, not an object"),
    ({"name": "No Id", "created_at": "2026-03-26T10:00:00Z"}, "no `id`"),
    (lead(1, id=""), "no `id`"),
    (lead(1, created_at=None), "no `created_at`"),
    (lead(1, created_at=1711533600), "no `created_at`"),
    (lead(1, created_at="last week"),
     "Rackwave `leads` page 3: field `created_at` holds a value that is not timestamp"),
])
def test_sort_out_sets_aside_a_record_that_breaks_the_contract_with_its_reason(bad, reason):
    kept, rejected = sorted_out([lead(0), bad, lead(2)])

    assert kept.column("id").to_pylist() == ["lead_0", "lead_2"]
    assert len(rejected) == 1
    assert rejected[0]["record_index"] == 1 and rejected[0]["page"] == 3
    assert rejected[0]["reason"].startswith(reason)
    assert json.loads(rejected[0]["record"]) == bad


def test_a_drifted_ordinary_field_is_kept_in_a_variant_not_quarantined():
    kept, rejected = sorted_out([lead(0, phone="+44 7700 900000"), lead(1, phone=447700900000)])

    assert rejected == []
    assert kept.column("phone__v_bigint").to_pylist() == [None, 447700900000]


def test_a_quarantined_record_keeps_no_excluded_column_and_only_hashes_of_hashed_ones():
    privacy = Privacy(hash_columns=("name",), exclude_columns=("email",), key=b"k" * 32)

    _, rejected = sorted_out([lead(0), lead(1, id=7)], privacy)

    record = json.loads(rejected[0]["record"])
    assert "email" not in record
    assert record["name"] != "Lead 1" and "Lead 1" not in rejected[0]["record"]
    assert "l1@example.com" not in json.dumps(rejected)


def test_with_quarantine_a_page_loads_its_good_records_and_sets_the_bad_ones_aside():
    reader = PageReader("leads", LEAD_COLUMNS, quarantine=True)
    keyless = lead(1)
    del keyless["created_at"]
    content = body([lead(0), keyless, "lead_2", lead(3)])

    page = check_page("leads", reader.page(URL, 1, reader.decode(content)))

    assert page.ids == ["lead_0", "lead_3"]
    assert [(r["record_index"], r["reason"]) for r in page.rejected] == [
        (1, "no `created_at`"), (2, "a str, not an object")]
    assert page.size == 4  # what says whether the page was full counts the set-aside records


def test_with_quarantine_a_keyless_record_of_a_well_formed_page_is_set_aside_by_position():
    reader = PageReader("leads", LEAD_COLUMNS, quarantine=True)
    keyless = lead(1)
    del keyless["id"]

    page = check_page("leads", reader.page(URL, 2, reader.decode(body([lead(0), keyless]))))

    assert page.ids == ["lead_0"]
    assert [(r["page"], r["record_index"], r["record_id"]) for r in page.rejected] == [(2, 1, None)]
    assert page.size == 2


@pytest.mark.parametrize("bad, message", [
    ("lead_1", "page 1 from .* record 1 is a str, not an object"),
    ({"name": "No Id", "created_at": "2026-03-26T10:00:00Z"}, "page 1, record 1: it has no `id`"),
    (lead(1, id=42), "page 1: field `id` holds a value that is not text"),
])
def test_with_bad_records_fail_the_same_record_stops_the_run_naming_it(bad, message):
    reader = PageReader("leads", LEAD_COLUMNS, quarantine=False)

    with pytest.raises(UnexpectedResponseError, match=message):
        check_page("leads", reader.page(URL, 1, reader.decode(body([lead(0), bad, lead(2)]))))


def test_a_record_with_an_empty_id_is_set_aside_whichever_path_decodes_its_page():
    records = [lead(0), lead(1, id="")]
    reader = PageReader("leads", LEAD_COLUMNS, quarantine=True)

    fast = reader.page(URL, 1, reader.decode(body(records)))
    slow = reader.page(URL, 1, json.loads(body(records)))

    assert [r["record_index"] for r in slow.rejected] == [1]
    assert fast.ids == slow.ids == ["lead_0"]


RECORD = st.one_of(
    st.builds(lambda i: lead(i), st.integers(0, 9)),
    st.builds(lambda i: lead(i, id=None), st.integers(0, 9)),
    st.builds(lambda i: lead(i, id=i), st.integers(0, 9)),
    st.builds(lambda i: lead(i, created_at="?"), st.integers(0, 9)),
    st.builds(lambda i: lead(i, phone=i), st.integers(0, 9)),
    st.sampled_from(["x", 1, None, [], True]),
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.lists(RECORD, max_size=8))
def test_every_record_is_either_loaded_or_quarantined_exactly_once_in_page_order(data):
    kept, rejected = sorted_out(data)

    indices = [r["record_index"] for r in rejected]
    assert indices == sorted(set(indices))
    assert kept.num_rows + len(rejected) == len(data)
    expected = [r["id"] for i, r in enumerate(data) if i not in set(indices)]
    assert kept.column("id").to_pylist() == expected
    assert all(isinstance(data[i], dict) and isinstance(data[i].get("id"), str)
               for i in range(len(data)) if i not in set(indices))
