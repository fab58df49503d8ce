"""A field whose values change type is kept in a variant column named as dlt names it, never
dropped, and a frozen schema that meets a new column or type stops the run naming the table, the
field and the type (``rackwave_source/rows/drift.py``). No destination: dlt's own validation
error is built by hand, as dlt raises it."""

from __future__ import annotations

import threading
from typing import Any, List

import pyarrow as pa
import pytest
from dlt.common.schema.exceptions import DataValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from rackwave_source.exceptions import SchemaContractError
from rackwave_source.rows.drift import (
    ColumnTypes, arrow_type, contract_error, python_type, split_variant, variant_column,
)


def test_a_variant_is_named_as_dlt_names_it_and_splits_back_into_column_and_type():
    assert variant_column("phone", "bigint") == "phone__v_bigint"
    assert split_variant("phone__v_bigint") == ("phone", "bigint")
    assert split_variant("address__city__v_bigint") == ("address__city", "bigint")


@pytest.mark.parametrize("column", ["phone", "address__city", "__v_bigint", "tags__value"])
def test_an_ordinary_column_or_a_bare_infix_is_not_a_variant(column):
    assert split_variant(column) is None


NAMES = st.text(alphabet="ab_v1", min_size=1, max_size=12)  # "__v_" inside names too
TYPES = st.sampled_from(["text", "bigint", "double", "bool", "json", "timestamp", "decimal"])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(name=NAMES, data_type=TYPES)
def test_every_variant_splits_back_into_the_column_and_type_it_was_named_from(name, data_type):
    assert split_variant(variant_column(name, data_type)) == (name, data_type)


@pytest.mark.parametrize("value, data_type", [
    (True, "bool"), (False, "bool"),  # a JSON boolean is not a number
    (0, "bigint"), (-(2 ** 63), "bigint"), (1.0, "double"), (2.5, "double"),
    ("2026-03-27T10:00:00Z", "text"), ("", "text"),
    ([], "json"), (["vip"], "json"), ({}, "json"), ({"city": "Leeds"}, "json"),
])
def test_each_json_value_has_the_data_type_dlt_would_give_it(value, data_type):
    assert python_type(value) == data_type


@pytest.mark.parametrize("dtype, data_type", [
    (pa.int64(), "bigint"), (pa.int32(), "bigint"), (pa.float64(), "double"),
    (pa.bool_(), "bool"), (pa.string(), "text"), (pa.large_string(), "text"),
    (pa.timestamp("us", tz="UTC"), "timestamp"),
    (pa.struct([("id", pa.int64())]), "json"), (pa.list_(pa.string()), "json"),
    (pa.large_list(pa.int64()), "json"),
])
def test_each_arrow_type_has_the_data_type_dlt_gives_its_column(dtype, data_type):
    assert arrow_type(dtype) == data_type


JSON_VALUES = st.one_of(
    st.booleans(), st.integers(-(2 ** 63), 2 ** 63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
    st.lists(st.text(max_size=3), min_size=1, max_size=3),
    st.dictionaries(NAMES, st.integers(0, 9), min_size=1, max_size=3),
)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(value=JSON_VALUES)
def test_a_value_read_by_arrow_or_by_python_gets_the_same_data_type(value):
    """The JSON reader's path and the value-by-value path must agree, or the same field would
    land in different columns depending on which path a page took."""
    assert arrow_type(pa.array([value]).type) == python_type(value)


def test_a_column_keeps_the_type_it_had_first_and_another_type_goes_to_its_variant():
    types = ColumnTypes()

    assert types.column_for("score", "bigint") == "score"
    assert types.column_for("score", "text") == "score__v_text"
    assert types.column_for("score", "bigint") == "score"  # the first type stays settled
    assert types.column_for("score", "text") == "score__v_text"


def test_the_type_the_destination_already_has_wins_over_the_first_page():
    types = ColumnTypes({"phone": "text"})

    assert types.column_for("phone", "bigint") == "phone__v_bigint"
    assert types.column_for("phone", "text") == "phone"


def test_fetching_threads_racing_on_a_new_column_all_agree_on_one_type():
    types = ColumnTypes()
    kinds = ["bigint", "text", "double", "bool"] * 8
    got: List[str] = [""] * len(kinds)
    start = threading.Barrier(len(kinds))

    def claim(i: int) -> None:
        start.wait()
        got[i] = types.column_for("score", kinds[i])

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(kinds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    settled = {k for k, column in zip(kinds, got) if column == "score"}
    assert len(settled) == 1  # one type owns the column ...
    assert all(column == ("score" if k in settled else f"score__v_{k}")
               for k, column in zip(kinds, got))  # ... every other type has its variant


def validation_error(column: str, table_schema: Any = None, data_item: Any = None
                     ) -> DataValidationError:
    """dlt's error for a frozen schema, as dlt's extract raises it."""
    return DataValidationError("rackwave", "leads", column, "columns", "freeze",
                               table_schema, {"columns": "freeze"}, data_item=data_item)


def test_a_frozen_schema_meeting_a_new_type_names_the_table_the_field_and_the_type():
    error = contract_error(validation_error("phone__v_bigint"))

    assert isinstance(error, SchemaContractError)
    assert (error.table, error.field, error.data_type) == ("leads", "phone", "bigint")
    assert str(error).startswith(
        "Rackwave `leads`: field `phone` arrived as bigint, which needs a new type for an "
        "existing column")
    assert 'schema_contract = "evolve"' in str(error)  # how to accept it


@pytest.mark.parametrize("table_schema, data_item, data_type", [
    (None, [pa.table({"id": ["L1"], "score": [1.5]})], "double"),
    ({"name": "leads", "columns": {"score": {"name": "score", "data_type": "bool"}}}, None,
     "bool"),
    (None, {"score": 1}, None),  # a dict item: the type is not known, the column still named
])
def test_a_frozen_schema_meeting_a_new_column_names_it_and_its_type_where_known(
        table_schema, data_item, data_type):
    error = contract_error(validation_error("score", table_schema, data_item))

    assert (error.table, error.field, error.data_type) == ("leads", "score", data_type)
    assert "which needs a new column" in str(error)
    kind = f"arrived as {data_type}," if data_type else "arrived, which"
    assert kind in str(error)
