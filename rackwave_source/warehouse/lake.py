"""Tables the ``filesystem`` destination wrote, read back as Arrow datasets, without SQL.

dlt's SQL view of a lake (``pipeline.dataset()``) reads Delta tables through a DuckDB extension
that is downloaded on first use, which a locked-down runner cannot do. Delta tables are read here
through their own log (``deltalake``), plain parquet tables as the files dlt lists for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from rackwave_source import settings as S

if TYPE_CHECKING:  # imported when a lake is read: pyarrow.dataset imports pandas, off a run's path
    import pyarrow.dataset as ds


def is_lake(pipeline: Any) -> bool:
    return pipeline.destination is not None and (
        pipeline.destination.destination_name == "filesystem")


def lake_table(pipeline: Any, table: str) -> Optional["ds.Dataset"]:
    """The loaded table, or None when it has no data yet."""
    import pyarrow.dataset as ds

    schema = pipeline.schemas[S.SOURCE_NAME] if S.SOURCE_NAME in pipeline.schemas else None
    if schema is None or table not in schema.tables:
        return None
    if schema.tables[table].get("table_format") == "delta":
        from dlt.common.libs.deltalake import get_delta_tables

        found = get_delta_tables(pipeline, table, schema_name=S.SOURCE_NAME)
        return found[table].to_pyarrow_dataset() if table in found else None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    with pipeline.destination_client(S.SOURCE_NAME) as client:
        files = [f for f in client.list_table_files(table) if f.endswith(".parquet")]
        if not files:
            return None
        return ds.dataset(files, format="parquet",
                          filesystem=PyFileSystem(FSSpecHandler(client.fs_client)))
