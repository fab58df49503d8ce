"""A page body becomes checked rows exactly as the API reference documents a list page
(``rackwave_source/api/decode.py``): the ``{"data": [...], "meta": {...}}`` envelope is checked and
a broken one refused naming the resource, the page and the problem; every record lands once, in
the API's order, in the declared column types; a record without ``id``/``created_at`` or a page out
of ``created_at`` order stops the run naming it; a body that is not JSON is fetched again. Canned
bodies only: no HTTP, no server."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Sequence

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackwave_source.api.decode import Page, PageReader, check_page
from rackwave_source.exceptions import UnexpectedResponseError
from rackwave_source.schema import CONTACT_COLUMNS, LEAD_COLUMNS

URL = "https://api.rackwave.io/v1/leads"
NEWEST = datetime(2026, 3, 27, 10, 0, tzinfo=timezone.utc)


def stamp(minutes_before: int) -> str:
    """``created_at`` as the API writes it, ``minutes_before`` the newest record."""
    return (NEWEST - timedelta(minutes=minutes_before)).strftime("%Y-%m-%dT%H:%M:%SZ")


def leads(count: int, start: int = 0, **fields: Any) -> List[Dict[str, Any]]:
    """``count`` leads, newest first, as the reference's example lead."""
    return [{"id": f"lead_{i:04d}", "name": f"Lead {i}", "email": f"l{i}@example.com",
             "status": "new", "source": "website", "tags": ["uk"], "created_at": stamp(i),
             **fields} for i in range(start, start + count)]


def body(records: Sequence[Any], *, total: Optional[int] = None, per_page: Optional[int] = 20,
         page: int = 1, last_page: int = 1, indent: Optional[int] = None) -> bytes:
    """A page body of the documented envelope."""
    meta: Dict[str, Any] = {"total": len(records) if total is None else total,
                            "current_page": page, "last_page": last_page}
    if per_page is not None:
        meta["per_page"] = per_page
    return json.dumps({"data": list(records), "meta": meta}, indent=indent).encode()


def read(content: bytes, number: int = 1, reader: Optional[PageReader] = None) -> Page:
    reader = reader or PageReader("leads", LEAD_COLUMNS)
    return reader.page(URL, number, reader.decode(content))


def test_a_documented_page_becomes_typed_rows_in_the_declared_columns_and_the_apis_order():
    page = read(body(leads(3)))

    assert page.records.column_names == list(LEAD_COLUMNS)
    assert page.records.column("id").to_pylist() == ["lead_0000", "lead_0001", "lead_0002"]
    assert page.records.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert page.records.column("created_at").to_pylist()[1] == NEWEST - timedelta(minutes=1)
    assert page.records.column("tags").to_pylist() == [["uk"]] * 3
    assert page.records.column("phone").to_pylist() == [None] * 3  # documented, not sent


def test_a_pretty_printed_body_gives_the_same_rows_as_a_compact_one():
    compact = read(body(leads(4)))
    pretty = read(body(leads(4), indent=2))

    assert pretty.records.equals(compact.records)


def test_the_meta_of_a_page_is_kept_and_a_missing_per_page_reads_as_not_said():
    page = read(body(leads(2), total=142, per_page=20, page=8, last_page=8), number=8)
    unsaid = read(body(leads(2), total=142, per_page=None, page=8, last_page=8), number=8)

    assert (page.number, page.total, page.last_page, page.served_per_page) == (8, 142, 8, 20)
    assert (unsaid.total, unsaid.last_page, unsaid.served_per_page) == (142, 8, 0)


@pytest.mark.parametrize("content, problem", [
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"meta": {"total": 1, "last_page": 1}}', "`data` is missing or not a list"),
    (b'{"data": null, "meta": {"total": 1, "last_page": 1}}', "`data` is missing or not a list"),
    (b'{"data": {"id": "x"}, "meta": {"total": 1, "last_page": 1}}',
     "`data` is missing or not a list"),
    (b'{"data": []}', "`meta` is missing or not an object"),
    (b'{"data": [], "meta": [1]}', "`meta` is missing or not an object"),
    (b'{"data": [], "meta": {"total": "142", "last_page": 8}}',
     "`meta.total` and `meta.last_page` must be integers"),
    (b'{"data": [], "meta": {"total": 142, "last_page": true}}',
     "`meta.total` and `meta.last_page` must be integers"),
    (b'{"data": [], "meta": {"total": 142, "last_page": 8, "per_page": 0}}',
     "`meta.per_page` must be a positive integer, not 0"),
    (b'{"data": [], "meta": {"total": 142, "last_page": 8, "per_page": "20"}}',
     "`meta.per_page` must be a positive integer, not '20'"),
])
def test_an_envelope_other_than_the_documented_one_is_refused_naming_resource_page_and_problem(
        content, problem):
    with pytest.raises(UnexpectedResponseError) as caught:
        read(content, number=5)

    message = str(caught.value)
    assert message.startswith(f"Rackwave `leads` page 5 from {URL} is not the documented list")
    assert problem in message
    assert "base_url" in message  # what to check


def test_a_record_that_is_not_an_object_stops_the_page_naming_its_index():
    with pytest.raises(UnexpectedResponseError, match=r"page 2 .* record 1 is a str, not an "
                                                      r"object"):
        read(body([leads(1)[0], "lead_0001", leads(1, start=2)[0]]), number=2)


def test_an_empty_page_has_every_declared_column_no_row_and_no_time_anchor():
    page = check_page("contacts", read(body([], total=0),
                                       reader=PageReader("contacts", CONTACT_COLUMNS)))

    assert page.records.num_rows == 0 and page.size == 0
    assert page.records.column_names == list(CONTACT_COLUMNS)
    assert not page.timed
    assert page.total == 0


@pytest.mark.parametrize("missing", ["id", "created_at"])
def test_a_record_without_its_key_or_cursor_stops_the_run_naming_page_and_record(missing):
    records = leads(3)
    del records[1][missing]
    page = read(body(records), number=4)

    with pytest.raises(UnexpectedResponseError) as caught:
        check_page("leads", page)

    assert str(caught.value).startswith(f"Rackwave `leads` page 4, record 1: it has no `{missing}`")


def test_a_page_out_of_created_at_order_is_refused_naming_the_first_record_out_of_place():
    records = leads(3)
    records[1]["created_at"], records[2]["created_at"] = stamp(5), stamp(1)

    with pytest.raises(UnexpectedResponseError) as caught:
        check_page("leads", read(body(records), number=3))

    assert "page 3 is not ordered by `created_at` descending" in str(caught.value)
    assert "(record lead_0002)" in str(caught.value)


def test_records_created_at_the_same_instant_are_in_order():
    records = leads(3)
    for record in records:
        record["created_at"] = stamp(0)

    page = check_page("leads", read(body(records)))

    assert page.ids == ["lead_0000", "lead_0001", "lead_0002"]


def test_a_timestamp_with_an_offset_or_fraction_is_stored_as_the_same_instant_in_utc():
    records = leads(1, created_at="2026-03-27T12:00:00.250000+02:00",
                    updated_at="2026-03-27T10:30:00Z")

    row = read(body(records)).records.to_pylist()[0]

    assert row["created_at"] == NEWEST + timedelta(milliseconds=250)
    assert row["updated_at"] == NEWEST + timedelta(minutes=30)


def test_a_created_at_that_is_not_a_timestamp_stops_the_page_naming_the_field():
    records = leads(2)
    records[1]["created_at"] = "yesterday"

    with pytest.raises(UnexpectedResponseError,
                       match=r"`leads` page 6: field `created_at` holds a value that is not "
                             r"timestamp"):
        read(body(records), number=6)


def test_an_updated_at_that_is_not_a_timestamp_is_kept_as_text_beside_the_others():
    records = leads(3, updated_at="2026-03-28T09:00:00Z")
    records[1]["updated_at"] = "soon"

    table = read(body(records)).records

    assert table.column("updated_at").to_pylist()[1] is None
    assert table.column("updated_at").null_count == 1
    assert table.column("updated_at__v_text").to_pylist() == [None, "soon", None]
    assert table.column("id").to_pylist() == ["lead_0000", "lead_0001", "lead_0002"]


def test_a_number_in_a_text_column_goes_to_its_variant_and_the_rest_of_the_page_loads():
    records = leads(3, phone="+44 7700 900000")
    records[2]["phone"] = 447700900000

    table = read(body(records)).records

    assert table.column("phone").to_pylist() == ["+44 7700 900000", "+44 7700 900000", None]
    assert table.column("phone__v_bigint").to_pylist() == [None, None, 447700900000]
    assert table.num_rows == 3


def test_an_undocumented_field_keeps_the_type_the_destination_has_for_it():
    reader = PageReader("leads", LEAD_COLUMNS, known_types={"score": "bigint"})
    records = leads(2, score="high")

    table = read(body(records), reader=reader).records

    assert "score" not in table.column_names
    assert table.column("score__v_text").to_pylist() == ["high", "high"]


def test_pages_read_at_once_give_each_page_its_own_records_and_meta():
    reader = PageReader("leads", LEAD_COLUMNS)
    bodies = [body(leads(3), total=7, per_page=3, page=1, last_page=3),
              body(leads(3, start=3), total=7, per_page=3, page=2, last_page=3),
              body(leads(1, start=6), total=7, per_page=3, page=3, last_page=3)]

    pages = reader.pages(URL, [1, 2, 3], bodies)

    assert [p.number for p in pages] == [1, 2, 3]
    assert [p.ids for p in pages] == [["lead_0000", "lead_0001", "lead_0002"],
                                      ["lead_0003", "lead_0004", "lead_0005"], ["lead_0006"]]
    assert [(p.total, p.last_page, p.served_per_page) for p in pages] == [(7, 3, 3)] * 3


def test_a_body_that_is_not_json_comes_back_as_none_to_fetch_again_and_its_neighbours_decode():
    reader = PageReader("leads", LEAD_COLUMNS)
    truncated = body(leads(3, start=3))[:40]

    first, second, third = reader.pages(
        URL, [1, 2, 3], [body(leads(3)), truncated, body(leads(3, start=6))])

    assert second is None
    assert first is not None and first.ids == ["lead_0000", "lead_0001", "lead_0002"]
    assert third is not None and third.ids == ["lead_0006", "lead_0007", "lead_0008"]


@pytest.mark.parametrize("listed, per_page, number, last_page, ends", [
    (7, 20, 3, 3, True),    # short, and meta says it is the last
    (20, 20, 3, 3, False),  # full: a count that trails the data must not hide older records
    (7, 20, 2, 3, False),   # short, but meta says more follow
    (0, 20, 1, 1, True),    # an empty list
    (7, 7, 1, 1, False),    # the server's own page size is 7: this page is full
])
def test_a_page_shorter_than_the_servers_page_size_ends_the_list_only_when_meta_agrees(
        listed, per_page, number, last_page, ends):
    page = read(body(leads(listed), per_page=per_page, page=number, last_page=last_page),
                number=number)
    page.per_page = page.served_per_page  # as the endpoint sets it

    assert page.ends_list is ends


RECORDS = st.integers(min_value=0, max_value=8)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(sizes=st.lists(RECORDS, min_size=1, max_size=4))
def test_pages_read_at_once_hold_every_record_once_exactly_as_pages_read_one_by_one(sizes):
    reader = PageReader("leads", LEAD_COLUMNS)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    bodies = [body(leads(n, start=s), total=sum(sizes), page=i + 1, last_page=len(sizes))
              for i, (n, s) in enumerate(zip(sizes, starts))]
    numbers = list(range(1, len(sizes) + 1))

    together = reader.pages(URL, numbers, bodies)
    alone = [read(b, number=n) for n, b in zip(numbers, bodies)]

    assert [p.ids for p in together] == [p.ids for p in alone]
    assert [i for p in together for i in p.ids] == [f"lead_{i:04d}" for i in range(sum(sizes))]
    for both in zip(together, alone):
        assert both[0].records.select(list(LEAD_COLUMNS)).equals(
            both[1].records.select(list(LEAD_COLUMNS)))
        check_page("leads", both[0])
