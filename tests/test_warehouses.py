"""The same pipeline, the same tables and the same rows on DuckDB, Postgres, Delta lake files and
Snowflake (a local emulator, tests/emulators/fake_snowflake.py).

Each story runs once per warehouse (the ``warehouse`` fixture): a first load, an incremental run,
a full scan with updates and deletes, and a lead whose tags shrink. After each run the warehouse
must hold exactly the API's records: every id once, every documented field current.
"""

from __future__ import annotations

from typing import Dict

import pytest

from rackwave_source import ConfigurationError
from support import FIELDS, Loader, _loaded_value, assert_equals_api, sandbox_ids
from warehouses import (
    BigQueryWarehouse,
    DeltaWarehouse,
    DuckDBWarehouse,
    ParquetWarehouse,
    PostgresWarehouse,
    SnowflakeWarehouse,
    shim_quick_load_job_polls,
)



def test_first_load_holds_exactly_the_api_records(sandbox, make_loader, warehouse, via):
    loader = make_loader(sandbox, via=via, warehouse=warehouse)

    result = loader.run()

    assert_equals_api(loader, sandbox)
    assert [t.rows_after for t in result.tables] == [250, 120]  # the summary counts right there too


def test_incremental_run_adds_what_is_new(sandbox, make_loader, warehouse, via):
    loader = make_loader(sandbox, via=via, warehouse=warehouse)
    loader.run()
    sandbox.admin.insert("leads", count=7)
    sandbox.admin.insert("contacts", count=3)
    sandbox.admin.reset_stats()

    result = loader.run()

    assert [t.mode for t in result.tables] == ["incremental", "incremental"]
    assert sandbox.admin.requests("GET /v1/leads") == 1
    assert [t.new for t in result.tables] == [7, 3]
    assert_equals_api(loader, sandbox)


def test_full_scan_applies_updates_and_deletes_and_shrinks_tags(sandbox, make_loader, warehouse, via,
                                                               dlt_log):
    loader = make_loader(sandbox, via=via, warehouse=warehouse)
    leads = sandbox.admin.records("leads")
    tagged = leads[40]
    sandbox.admin.update("leads", tagged["id"], tags=["enterprise", "vip", "renewal"])
    loader.run()
    assert _loaded_value("tags", loader.row("leads", tagged["id"])["tags"]) == [
        "enterprise", "vip", "renewal"]

    sandbox.admin.update("leads", tagged["id"], tags=["enterprise", "renewal"], status="won")
    sandbox.admin.update("contacts", sandbox.admin.records("contacts")[5]["id"], title="CFO")
    sandbox.admin.delete("leads", leads[3]["id"])
    sandbox.admin.delete("contacts", sandbox.admin.records("contacts")[-1]["id"])
    sandbox.admin.insert("leads", count=2)

    result = loader.run(full_scan=True)

    assert [t.mode for t in result.tables] == ["full scan", "full scan"]
    row = loader.row("leads", tagged["id"])
    assert _loaded_value("tags", row["tags"]) == ["enterprise", "renewal"]  # exactly two now
    assert row["status"] == "won"
    assert_equals_api(loader, sandbox)
    assert loader.ids("leads") == sandbox_ids(sandbox, "leads")
    assert dlt_log == []  # the rows loaded again as deleted are shaped as declared, quietly


def test_every_warehouse_has_the_same_columns_and_types(sandbox, make_loader, tmp_path,
                                                        postgres_server, snowflake_emulator):
    kinds: Dict[str, Dict[str, Dict[str, str]]] = {}
    with postgres_server.database() as dsn, snowflake_emulator.database() as database:
        for name, warehouse in (("duckdb", DuckDBWarehouse(tmp_path / "duckdb" / "rackwave_data.duckdb")),
                                ("postgres", PostgresWarehouse(dsn)),
                                ("delta", DeltaWarehouse(tmp_path / "lake")),
                                ("snowflake", SnowflakeWarehouse(snowflake_emulator, database))):
            loader = make_loader(sandbox, pipeline_name=f"rw_{name}", warehouse=warehouse)
            loader.workdir = tmp_path / name
            loader.workdir.mkdir()
            loader.run()
            kinds[name] = {table: warehouse.columns(table) for table in FIELDS}

    assert kinds["postgres"] == kinds["duckdb"]
    assert kinds["delta"] == kinds["duckdb"]
    assert kinds["snowflake"] == kinds["duckdb"]
    leads = kinds["duckdb"]["leads"]
    assert {c: leads[c] for c in ("id", "tags", "created_at", "score", "_dlt_load_id")} == {
        "id": "text", "tags": "json", "created_at": "timestamp", "score": "bigint",
        "_dlt_load_id": "text"}


def test_bigquery_has_the_same_columns_and_types_as_duckdb(sandbox, make_loader, tmp_path,
                                                           bigquery_emulator, monkeypatch):
    # BigQuery (the local emulator) kept out of the test above: one warehouse's failure there
    # would hide the others' comparison.
    kinds: Dict[str, Dict[str, Dict[str, str]]] = {}
    duckdb = DuckDBWarehouse(tmp_path / "duckdb" / "rackwave_data.duckdb")
    bigquery = BigQueryWarehouse.fresh(bigquery_emulator, tmp_path / "bigquery-settings")
    shim_quick_load_job_polls(monkeypatch)
    try:
        for name, warehouse in (("duckdb", duckdb), ("bigquery", bigquery)):
            loader = make_loader(sandbox, pipeline_name=f"rw_{name}", warehouse=warehouse)
            loader.workdir = tmp_path / name
            loader.workdir.mkdir()
            loader.run()
            kinds[name] = {table: warehouse.columns(table) for table in FIELDS}
    finally:
        bigquery.drop()

    assert kinds["bigquery"] == kinds["duckdb"]


def test_plain_parquet_files_refuse_an_incremental_run_and_equal_the_api_after_full_scans(
    sandbox, make_loader, tmp_path
):
    loader = make_loader(sandbox, warehouse=ParquetWarehouse(tmp_path / "lake"))
    loader.run(lake_format_name="parquet")  # a first load is a full scan: it replaces the files
    assert_equals_api(loader, sandbox)
    leads = sandbox.admin.records("leads")
    sandbox.admin.update("leads", leads[5]["id"], status="lost", tags=["x"])
    sandbox.admin.delete("leads", leads[9]["id"])
    sandbox.admin.insert("leads", count=3)
    sandbox.admin.reset_stats()

    with pytest.raises(ConfigurationError) as raised:
        loader.run(lake_format_name="parquet")  # incremental: it would append duplicates
    assert "plain parquet files" in str(raised.value) and "--full-scan" in str(raised.value)
    assert "GET /v1/leads" not in sandbox.admin.stats()["requests"]  # refused before reading

    loader.run(lake_format_name="parquet", full_scan=True)
    assert_equals_api(loader, sandbox)  # files replaced, never appended to


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        # dlt's BigQuery loader writes PARTITION BY DATE(created_at) and CLUSTER BY status for these
        ("bigquery", {"leads": {"created_at": "partition", "status": "cluster"},
                      "contacts": {"created_at": "partition"}}),
        # dlt's Snowflake loader writes CLUSTER BY (status)
        ("snowflake", {"leads": {"status": "cluster"}, "contacts": {}}),
        ("postgres", {"leads": {}, "contacts": {}}),
    ],
)
def test_each_warehouse_gets_its_layout_hints(sandbox, tmp_path, destination, expected):
    import dlt

    from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
    from rackwave_source import rackwave_source

    source = rackwave_source(base_url=sandbox.base_url, client_id=DEMO_CLIENT_ID,
                             client_secret=DEMO_CLIENT_SECRET)
    pipeline = dlt.pipeline("layout", destination=destination, dataset_name="rackwave",
                            pipelines_dir=str(tmp_path / "pipelines"))

    pipeline.extract(source)  # no warehouse needed: the hints are part of the schema dlt builds

    for table, hints in expected.items():
        columns = pipeline.default_schema.get_table_columns(table)
        marked = {name: hint for name, column in columns.items()
                  for hint in ("partition", "cluster")
                  if column.get(hint) or column.get(f"x-bigquery-{hint}")}
        assert marked == hints, f"{destination} {table}"


def test_a_merge_that_shrinks_tags_leaves_exactly_the_current_tags(sandbox, make_loader, warehouse, via):
    # Incremental runs merge (a full scan replaces): a lead re-read within `lookback` after its
    # tags went from three to two must end with exactly those two, on every warehouse.
    loader = make_loader(sandbox, via=via, warehouse=warehouse, lookback="1d")
    loader.run(resources=["leads"])
    (lead,) = sandbox.admin.insert("leads", [{"name": "Tag Shrink", "email": "shrink@example.com",
                                              "tags": ["a", "b", "c"]}])
    loader.run(resources=["leads"])
    assert _loaded_value("tags", loader.row("leads", lead["id"])["tags"]) == ["a", "b", "c"]

    sandbox.admin.update("leads", lead["id"], tags=["a", "c"])
    result = loader.run(resources=["leads"])

    assert result.tables[0].mode == "incremental"
    assert _loaded_value("tags", loader.row("leads", lead["id"])["tags"]) == ["a", "c"]
    assert loader.ids("leads") == sandbox_ids(sandbox, "leads")


def test_deleted_records_can_be_flagged_on_every_warehouse(sandbox, make_loader, warehouse, via):
    loader = make_loader(sandbox, via=via, warehouse=warehouse, deleted_records="flag")
    loader.run()
    gone = sandbox.admin.records("leads")[12]
    sandbox.admin.delete("leads", gone["id"])

    loader.run(full_scan=True)

    kept = loader.row("leads", gone["id"])
    assert kept["_rackwave_deleted_at"] is not None
    assert _loaded_value("tags", kept["tags"]) == gone["tags"]  # kept as it was loaded
    assert loader.query(
        "SELECT COUNT(*) FROM rackwave.leads WHERE _rackwave_deleted_at IS NULL") == [
        (len(sandbox_ids(sandbox, "leads")),)]


def test_a_list_field_the_api_adds_later_is_json_on_every_warehouse(sandbox, make_loader,
                                                                    warehouse, via):
    loader = make_loader(sandbox, via=via, warehouse=warehouse)
    loader.run(resources=["leads"])
    (lead,) = sandbox.admin.insert("leads", count=1)
    sandbox.admin.add_faults([{"kind": "tamper", "path": "/v1/leads", "page": 1, "count": 1,
                               "tamper": {"record": 0, "set": {"segments": ["smb", "emea"]}}}])

    loader.run(resources=["leads"])

    assert warehouse.columns("leads")["segments"] == "json"
    assert _loaded_value("tags", loader.row("leads", lead["id"])["segments"]) == ["smb", "emea"]


def test_the_summary_counts_lake_tables(sandbox, make_loader, tmp_path):
    delta = make_loader(sandbox, warehouse=DeltaWarehouse(tmp_path / "delta"), pipeline_name="d")
    first = delta.run()
    sandbox.admin.insert("leads", count=2)
    second = delta.run()
    assert [(t.rows_after, t.new) for t in first.tables] == [(250, 250), (120, 120)]
    assert [(t.rows_after, t.new) for t in second.tables] == [(252, 2), (120, 0)]

    plain = make_loader(sandbox, warehouse=ParquetWarehouse(tmp_path / "plain"), pipeline_name="p")
    result = plain.run(lake_format_name="parquet", full_scan=True)
    assert [t.rows_after for t in result.tables] == [252, 120]


def test_deleted_records_can_be_flagged_in_plain_parquet_files(sandbox, make_loader, tmp_path):
    loader = make_loader(sandbox, warehouse=ParquetWarehouse(tmp_path / "lake"),
                         deleted_records="flag")
    loader.run(lake_format_name="parquet", full_scan=True)
    gone = sandbox.admin.records("leads")[12]
    sandbox.admin.delete("leads", gone["id"])

    loader.run(lake_format_name="parquet", full_scan=True)

    assert loader.row("leads", gone["id"])["_rackwave_deleted_at"] is not None
    assert loader.count("leads") == len(sandbox_ids(sandbox, "leads")) + 1


def test_plain_dlt_code_loads_postgres_with_dlts_defaults(sandbox, postgres_server, tmp_path):
    # A user's own pipeline, no settings of ours: Arrow items reach Postgres through dlt's CSV
    # writer, which cannot carry the `tags` list; the source hands it over as JSON text itself.
    import dlt

    from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
    from rackwave_source import rackwave_source

    with postgres_server.database() as dsn:
        warehouse = PostgresWarehouse(dsn)
        pipeline = dlt.pipeline("plain", destination=dlt.destinations.postgres(dsn),
                                dataset_name="rackwave", pipelines_dir=str(tmp_path / "p"))
        source = rackwave_source(base_url=sandbox.base_url, client_id=DEMO_CLIENT_ID,
                                 client_secret=DEMO_CLIENT_SECRET)

        pipeline.run(source)

        loader = Loader(server=sandbox, workdir=tmp_path, warehouse=warehouse)
        assert_equals_api(loader, sandbox)
        assert warehouse.columns("leads")["tags"] == "json"
