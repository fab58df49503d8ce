"""Records become Arrow tables of the declared shape and nothing the API sent is lost on the way
(``rackwave_source/rows/arrow_shape.py``): declared types and nullability, nested ``address``
flattened into ``address__*`` columns, undocumented fields appended after the declared ones, a
value of another type kept in a variant column, batches that neither lose nor double a row, and
list or struct columns as JSON text for CSV loaders. Canned records only."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Dict, List

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackwave_source.exceptions import UnexpectedResponseError
from rackwave_source.rows.arrow_shape import (
    ArrowBatch, arrow_schema, empty_table, json_as_text, to_arrow,
)
from rackwave_source.rows.drift import ColumnTypes
from rackwave_source.schema import CONTACT_COLUMNS, LEAD_COLUMNS, LOAD_ID, LOAD_ID_COLUMN, TColumns

US_UTC = pa.timestamp("us", tz="UTC")
CREATED = datetime(2026, 3, 27, 10, 0, tzinfo=timezone.utc)
ADDRESS = ["address__street", "address__city", "address__postcode", "address__country"]


def contact(i: int, **fields: Any) -> Dict[str, Any]:
    return {"id": f"C{i}", "first_name": f"Ann {i}", "created_at": "2026-03-27T10:00:00Z",
            **fields}


def shape(records: List[Dict[str, Any]], columns: TColumns = CONTACT_COLUMNS,
          resource: str = "contacts", page: int = 1) -> pa.Table:
    """``to_arrow`` as the page reader calls it: the declared columns' types already settled."""
    types = ColumnTypes({name: str(column["data_type"]) for name, column in columns.items()})
    return to_arrow(resource, page, records, columns, arrow_schema(columns), types)


def test_the_declared_schema_types_every_column_and_requires_only_id_and_created_at():
    schema = arrow_schema(LEAD_COLUMNS)

    assert schema.names == list(LEAD_COLUMNS)
    assert schema.field("id").type == pa.string() and not schema.field("id").nullable
    assert schema.field("created_at").type == US_UTC and not schema.field("created_at").nullable
    assert schema.field("updated_at").type == US_UTC and schema.field("updated_at").nullable
    assert schema.field("tags").type == pa.list_(pa.string())
    assert [f.name for f in schema if not f.nullable] == ["id", "created_at"]


def test_an_empty_table_has_every_declared_column_then_the_extra_ones_and_no_row():
    table = empty_table(LEAD_COLUMNS, LOAD_ID_COLUMN)

    assert table.num_rows == 0
    assert table.column_names == [*LEAD_COLUMNS, LOAD_ID]
    assert table.schema.equals(arrow_schema({**LEAD_COLUMNS, **LOAD_ID_COLUMN}))


def test_a_nested_address_becomes_address_columns_and_a_missing_or_null_one_gives_nulls():
    table = shape([contact(1, address={"street": "1 Park Row", "city": "Leeds",
                                       "postcode": "LS1 5AB", "country": "GB"}),
                   contact(2, address=None),
                   contact(3)])

    assert [table.column(c).to_pylist() for c in ADDRESS] == [
        ["1 Park Row", None, None], ["Leeds", None, None], ["LS1 5AB", None, None],
        ["GB", None, None]]
    assert "address" not in table.column_names


def test_timestamps_become_utc_instants_and_records_keep_the_apis_order():
    table = shape([contact(3, created_at="2026-03-27T12:00:00+02:00"),
                   contact(1, created_at="2026-03-27T09:00:00Z"),
                   contact(2, created_at="2026-03-27T08:00:00.5Z")])

    assert table.column("id").to_pylist() == ["C3", "C1", "C2"]
    assert table.schema.field("created_at").type == US_UTC
    assert table.column("created_at").to_pylist()[0] == CREATED


def test_undocumented_fields_follow_the_declared_columns_in_the_order_first_seen():
    table = shape([contact(1, score=7), contact(2, vip=True, score=9)])

    assert table.column_names == [*CONTACT_COLUMNS, "score", "vip"]
    assert table.column("score").to_pylist() == [7, 9]
    assert table.column("vip").to_pylist() == [None, True]


def test_an_undocumented_object_is_flattened_one_level_like_dlt_does_for_dicts():
    table = shape([contact(1, owner={"name": "Bo", "team": {"id": 4}}), contact(2, owner=None)])

    assert table.column("owner__name").to_pylist() == ["Bo", None]
    assert table.column("owner__team").to_pylist() == [{"id": 4}, None]
    assert "owner" not in table.column_names


def test_an_undocumented_field_null_on_the_whole_page_is_not_a_column():
    table = shape([contact(1, fax=None), contact(2, fax=None)])

    assert table.column_names == list(CONTACT_COLUMNS)


def test_values_of_different_shapes_under_one_undocumented_name_are_all_kept_as_json_text():
    table = shape([contact(1, history=[1, "a"]), contact(2, history=[{"b": 1}])])

    assert table.schema.field("history").type == pa.string()
    assert [json.loads(v) for v in table.column("history").to_pylist()] == [[1, "a"], [{"b": 1}]]


def test_a_value_of_another_type_in_a_declared_column_lands_in_a_variant_beside_it():
    table = shape([contact(1, phone="+44 7700 900000", tags=["vip"]),
                   contact(2, phone=447700900000, tags="vip"),
                   contact(3, tags=[1, 2], address={"city": 5})])

    assert table.column("phone").to_pylist() == ["+44 7700 900000", None, None]
    assert table.column("phone__v_bigint").to_pylist() == [None, 447700900000, None]
    assert table.column("tags").to_pylist() == [["vip"], None, None]
    # a string, and a list that is not of strings, are kept as text
    assert table.column("tags__v_text").to_pylist() == [None, "vip", "[1,2]"]
    assert table.column("address__city__v_bigint").to_pylist() == [None, None, 5]


@pytest.mark.parametrize("field, value, kind", [
    ("id", 42, "text"), ("created_at", 1711533600, "timestamp"),
    ("created_at", "not a date", "timestamp"),
])
def test_a_key_field_of_another_type_stops_the_page_naming_resource_page_and_field(
        field, value, kind):
    with pytest.raises(UnexpectedResponseError) as caught:
        shape([contact(1), contact(2, **{field: value})], page=9)

    assert str(caught.value).startswith(
        f"Rackwave `contacts` page 9: field `{field}` holds a value that is not {kind}")


def test_a_field_the_api_adds_inside_address_is_kept_as_an_address_column():
    table = shape([contact(1, address={"city": "Leeds", "floor": 3})])

    assert table.column("address__floor").to_pylist() == [3]


def test_an_address_sent_as_text_is_kept_in_a_variant_column():
    table = shape([contact(1, address="1 Park Row, Leeds"), contact(2)])

    assert table.column("address__v_text").to_pylist() == ["1 Park Row, Leeds", None]
    assert table.column("address__city").to_pylist()[0] is None


def test_a_batch_is_handed_over_once_it_reaches_its_row_count_and_flush_hands_the_rest():
    batch = ArrowBatch(rows=4)
    page = pa.table({"id": ["a", "b", "c"]})

    assert batch.add(page) is None
    full = batch.add(pa.table({"id": ["d", "e"]}))
    assert full is not None and full.column("id").to_pylist() == ["a", "b", "c", "d", "e"]
    assert batch.flush() is None  # nothing gathered since
    batch.add(pa.table({"id": ["f"]}))
    rest = batch.flush()
    assert rest is not None and rest.column("id").to_pylist() == ["f"]


def test_pages_that_differ_in_undocumented_columns_batch_together_with_nulls_where_absent():
    batch = ArrowBatch(rows=100)
    batch.add(pa.table({"id": ["a", "b"], "score": [1, 2]}))
    batch.add(pa.table({"id": ["c"], "vip": [True]}))

    table = batch.flush()

    assert table is not None
    assert table.to_pylist() == [{"id": "a", "score": 1, "vip": None},
                                 {"id": "b", "score": 2, "vip": None},
                                 {"id": "c", "score": None, "vip": True}]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(sizes=st.lists(st.integers(min_value=0, max_value=9), max_size=12),
       rows=st.integers(min_value=1, max_value=15))
def test_batching_pages_neither_loses_nor_doubles_a_row_and_keeps_their_order(sizes, rows):
    batch = ArrowBatch(rows=rows)
    full: List[pa.Table] = []
    sent = 0
    for size in sizes:
        handed = batch.add(pa.table({"id": [f"r{sent + i}" for i in range(size)]},
                                    schema=pa.schema([("id", pa.string())])))
        sent += size
        if handed is not None:
            full.append(handed)
    rest = batch.flush()
    batches = full + ([] if rest is None else [rest])

    assert [i for t in batches for i in t.column("id").to_pylist()] == \
        [f"r{i}" for i in range(sent)]
    assert all(t.num_rows >= rows for t in full)  # only the last, flushed batch may be short


def test_list_and_struct_columns_become_json_text_with_json_hints_and_nulls_stay_null():
    table = shape([contact(1, tags=["vip", "uk"], owner={"team": {"id": 4}}), contact(2)])

    text, hints = json_as_text(table)

    assert hints == {"tags": {"data_type": "json"}, "owner__team": {"data_type": "json"}}
    assert text.column("tags").to_pylist() == ['["vip","uk"]', None]
    assert text.column("owner__team").to_pylist() == ['{"id":4}', None]
    assert text.schema.field("tags").type == pa.string()
    assert text.column("created_at").equals(table.column("created_at"))  # others untouched
    assert text.column_names == table.column_names
