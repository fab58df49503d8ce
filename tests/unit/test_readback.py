"""Rows read back from a warehouse come back in the shape they were loaded in, whatever shape
the warehouse hands them over in (``rackwave_source/warehouse/readback.py``; no warehouse needed)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pytest

from rackwave_source.warehouse.readback import ReadBackError, conform, conformed, gathered
from rackwave_source.schema import LEAD_COLUMNS

COLUMNS = {**LEAD_COLUMNS, "score": {"data_type": "bigint"}, "_dlt_id": {"data_type": "text"},
           "_rackwave_deleted_at": {"data_type": "timestamp"}}
WHEN = datetime(2026, 11, 3, 9, 30, 15, 123456, tzinfo=timezone.utc)
US_UTC = pa.timestamp("us", "UTC")


def duckdb_shape(n: int = 2) -> pa.Table:
    """What DuckDB and Postgres hand back: one table, JSON as text, dlt's columns included."""
    return pa.table({
        "id": [f"L{i}" for i in range(n)],
        "created_at": pa.array([WHEN] * n, US_UTC),
        "tags": [json.dumps(["vip", "b2b"])] * n,
        "score": pa.array(range(n), pa.int64()),
        "_dlt_id": [f"x{i}" for i in range(n)],
    })


def test_duckdbs_json_text_becomes_the_list_it_was_loaded_as_and_dlts_columns_go():
    table = conform(duckdb_shape(), COLUMNS)

    assert table.column_names == ["id", "created_at", "tags", "score"]
    assert table.schema.field("tags").type == pa.list_(pa.string())
    assert table.column("tags").to_pylist() == [["vip", "b2b"]] * 2


def test_bigquerys_record_batches_are_read_page_by_page_an_empty_first_page_included():
    whole = duckdb_shape(5)
    pages = [whole.to_batches()[0].slice(0, 0), *whole.slice(0, 3).to_batches(),
             *whole.slice(3).to_batches()]
    assert isinstance(pages[0], pa.RecordBatch) and pages[0].num_rows == 0

    read = gathered(iter(pages), COLUMNS)

    assert read.column("id").to_pylist() == [f"L{i}" for i in range(5)]
    assert len(list(conformed(iter(pages), COLUMNS))) == 2  # the empty page yields nothing


def test_snowflakes_nanoseconds_decimals_and_upper_case_names_are_cast_back():
    snowflake = pa.table({
        "ID": ["L1"],
        "CREATED_AT": pa.array([WHEN], pa.timestamp("ns", "America/New_York")),
        "TAGS": ['[\n  "vip"\n]'],  # VARIANT: pretty-printed JSON text
        "SCORE": pa.array([Decimal(7)], pa.decimal128(19, 0)),
        "_RACKWAVE_DELETED_AT": pa.array([None], pa.timestamp("ns", "UTC")),
    })

    table = conform(snowflake, COLUMNS)

    assert table.column_names == ["id", "created_at", "tags", "score", "_rackwave_deleted_at"]
    assert table.schema.field("created_at").type == US_UTC
    assert table.column("created_at").to_pylist() == [WHEN]  # the same instant
    assert table.schema.field("score").type == pa.int64()
    assert table.column("score").to_pylist() == [7]
    assert table.column("tags").to_pylist() == [["vip"]]
    assert table.schema.field("_rackwave_deleted_at").type == US_UTC


def test_lake_files_string_views_and_lists_pass_as_they_are():
    lake = pa.table({"id": pa.array(["L1"], pa.large_string()),
                     "tags": pa.array([["a"]], pa.list_(pa.string()))})

    table = conform(lake, COLUMNS)

    assert table.schema.field("id").type == pa.string()
    assert table.column("tags").to_pylist() == [["a"]]


def test_many_pages_and_many_queries_come_back_whole_in_order():
    pages = [duckdb_shape(3).slice(i, 1) for i in range(3)] * 400

    read = gathered(iter(pages), COLUMNS)

    assert read.num_rows == 1200
    assert read.column("id").to_pylist()[:3] == ["L0", "L1", "L2"]


def test_no_rows_at_all_gives_an_empty_table_of_the_declared_columns_asked_for():
    read = gathered(iter([duckdb_shape().to_batches()[0].slice(0, 0)]), COLUMNS, ["id", "tags"])

    assert read.num_rows == 0
    assert read.schema == pa.schema([pa.field("id", pa.string(), nullable=False),
                                     ("tags", pa.list_(pa.string()))])


def test_a_json_field_added_later_as_objects_keeps_its_shape():
    columns = {"id": {"data_type": "text"}, "address": {"data_type": "json"}}
    table = conform(pa.table({"id": ["L1"], "address": ['{"city": "Oslo"}']}), columns)

    assert table.column("address").to_pylist() == [{"city": "Oslo"}]


def test_a_column_changed_outside_the_pipeline_is_named_with_what_to_do():
    with pytest.raises(ReadBackError, match="`created_at`.*--full-refresh"):
        conform(pa.table({"created_at": ["not a time"]}), COLUMNS)


def test_read_back_rows_keep_the_declared_nullability_so_dlt_sees_no_differing_hints():
    """Warehouses hand every column back nullable; yielded so, the id and created_at differed
    from the schema's hints and dlt warned at every full scan that loaded rows again."""
    table = conform(duckdb_shape(), COLUMNS)

    assert not table.schema.field("id").nullable
    assert not table.schema.field("created_at").nullable
    assert table.schema.field("tags").nullable and table.schema.field("score").nullable
    empty = gathered([], COLUMNS, ["id", "email"])
    assert not empty.schema.field("id").nullable and empty.schema.field("email").nullable
