"""Schema drift: a field whose values change type lands in a variant column, never dropped.

dlt does this for Python dicts: a ``phone`` column holding text that receives a number stores
it in ``phone__v_bigint``. Records travel here as Arrow tables, for which dlt does not: a column
whose Arrow type differs from the one already in the destination fails the *load* (a terminal
job, after the extract has finished). So the same rule is applied while pages are shaped: each
column keeps the type it had first (in the destination's schema, or else on the first page that
carried it); a value of another type goes to ``<column>__v_<type>``, named as dlt names variants.

``id`` and ``created_at`` are exempt: they are the merge key and the cursor, and a record whose
``id`` or ``created_at`` is not what the reference documents is bad data (``bad_records``).
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Mapping, Optional, Tuple

import pyarrow as pa
from dlt.common.libs.pyarrow import get_column_type_from_py_arrow

from rackwave_source.exceptions import SchemaContractError

VARIANT_INFIX = "__v_"


def variant_column(name: str, data_type: str) -> str:
    """The column that holds ``name``'s values of ``data_type`` (dlt's naming)."""
    return f"{name}{VARIANT_INFIX}{data_type}"


def split_variant(column: str) -> Optional[Tuple[str, str]]:
    """``("phone", "bigint")`` for ``phone__v_bigint``; None for an ordinary column."""
    name, sep, data_type = column.rpartition(VARIANT_INFIX)
    return (name, data_type) if sep and name else None


def python_type(value: Any) -> str:
    """The dlt data type of one JSON value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double"
    if isinstance(value, (dict, list)):
        return "json"
    return "text"


def arrow_type(dtype: pa.DataType) -> str:
    """The dlt data type dlt gives an Arrow column of this type."""
    if pa.types.is_struct(dtype) or pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return "json"
    try:
        return str(get_column_type_from_py_arrow(dtype)["data_type"])
    except (TypeError, ValueError, KeyError):
        return "text"


class ColumnTypes:
    """The data type each column of one table settled on; shared by the fetching threads."""

    def __init__(self, known: Optional[Mapping[str, str]] = None) -> None:
        self._types: Dict[str, str] = dict(known or {})
        self._lock = threading.Lock()

    def column_for(self, name: str, data_type: str) -> str:
        """``name`` if ``data_type`` is its type (or it has none yet), else its variant."""
        with self._lock:
            settled = self._types.setdefault(name, data_type)
        return name if settled == data_type else variant_column(name, data_type)


def contract_error(exc: Any) -> SchemaContractError:
    """Our error for dlt's ``DataValidationError`` (a frozen schema met a new column or type).

    dlt names the table and column; the value's type comes from the variant column's name or from
    the columns dlt inferred for the data (an Arrow table's schema).
    """
    table = str(getattr(exc, "table_name", "") or "?")
    column = str(getattr(exc, "column_name", "") or "?")
    variant = split_variant(column)
    if variant is not None:
        return SchemaContractError(table, variant[0], variant[1], new_type=True)
    data_type: Optional[str] = None
    columns = (getattr(exc, "table_schema", None) or {}).get("columns", {})
    if isinstance(columns, Mapping) and column in columns:
        data_type = columns[column].get("data_type")
    items = getattr(exc, "data_item", None)
    for item in items if isinstance(items, list) else [items]:  # dlt passes the item batch
        if data_type is None and isinstance(item, (pa.Table, pa.RecordBatch)):
            if column in item.schema.names:
                data_type = arrow_type(item.schema.field(column).type)
    return SchemaContractError(table, column, data_type, new_type=False)
