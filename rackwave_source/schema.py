"""The declared shape of every table, identical on every destination.

Nested ``address`` objects are flattened into ``address__*`` columns by dlt; ``tags`` is one JSON
column (an array of strings) rather than a child table, so a merge that shrinks a lead's tags
leaves exactly its current tags on every destination (child tables keep stale rows on some).
Undocumented fields the API adds later become new columns through dlt's schema inference.
"""

from __future__ import annotations

from typing import Dict

from dlt.common.schema.typing import TColumnSchema

TColumns = Dict[str, TColumnSchema]


def _text(nullable: bool = True) -> TColumnSchema:
    return {"data_type": "text", "nullable": nullable}


def _timestamp(nullable: bool = True) -> TColumnSchema:
    return {"data_type": "timestamp", "nullable": nullable}


_ID: TColumnSchema = {"data_type": "text", "nullable": False, "primary_key": True}
# A run keeps each id once (see coverage.py: repeats), so no dedup_sort hint is needed: dlt
# would also warn about it on every full scan, which replaces instead of merging.
_UPDATED_AT: TColumnSchema = {"data_type": "timestamp", "nullable": True}
_TAGS: TColumnSchema = {"data_type": "json", "nullable": True}

LEAD_COLUMNS: TColumns = {
    "id": _ID,
    "name": _text(),
    "email": _text(),
    "phone": _text(),
    "company": _text(),
    "status": _text(),
    "source": _text(),
    "tags": _TAGS,
    "created_at": _timestamp(nullable=False),
    "updated_at": _UPDATED_AT,
}

CONTACT_COLUMNS: TColumns = {
    "id": _ID,
    "first_name": _text(),
    "last_name": _text(),
    "email": _text(),
    "phone": _text(),
    "company": _text(),
    "title": _text(),
    "lead_id": _text(),
    "tags": _TAGS,
    "address__street": _text(),
    "address__city": _text(),
    "address__postcode": _text(),
    "address__country": _text(),
    "created_at": _timestamp(nullable=False),
    "updated_at": _UPDATED_AT,
}

# The load that brought each row (resources.py stamps it on every Arrow table, as dlt does for
# dicts); declared after the API's columns, where dlt puts it.
LOAD_ID = "_dlt_load_id"
LOAD_ID_COLUMN: TColumns = {LOAD_ID: {
    "data_type": "text", "nullable": False, "precision": 64,
    "description": "Load identifier linking this row to its load operation"}}

# bad_records = "quarantine": one row per record that broke the API contract, with the reason.
QUARANTINE_COLUMNS: TColumns = {
    "resource": _text(nullable=False),
    "page": {"data_type": "bigint", "nullable": False},
    "record_index": {"data_type": "bigint", "nullable": False},
    "record_id": _text(),
    "reason": _text(nullable=False),
    "record": _text(),
    # Columns added after the table's first version are nullable (NULL in rows loaded before
    # them): DuckDB cannot add a column with a NOT NULL constraint to an existing table.
    "record_key": _text(),  # the resource and the record's content, hashed (merge key)
    "first_seen_at": _timestamp(),
    "last_seen_at": _timestamp(),
}

# One row per resource per completed run (warehouse/runs_table.py), written in the load it describes.
# Keyed on (load_id, resource) and merged, so a package loaded twice (dlt resuming a killed load,
# a job run again) still leaves one row per run on every destination.


def _count() -> TColumnSchema:
    return {"data_type": "bigint", "nullable": False}


RUN_COLUMNS: TColumns = {
    "load_id": {"data_type": "text", "nullable": False, "primary_key": True},
    "resource": {"data_type": "text", "nullable": False, "primary_key": True},
    "mode": _text(nullable=False),
    "reason": _text(),
    "started_at": _timestamp(nullable=False),
    "finished_at": _timestamp(nullable=False),
    "cursor": _timestamp(),
    "pages": _count(),
    "rereads": _count(),
    "requests": _count(),
    "rate_limited": _count(),
    "retries": _count(),
    "token_renewals": _count(),
    "rows_new": _count(),
    "rows_updated": _count(),
    "rows_removed": _count(),
    "rows_flagged": _count(),
    "rows_quarantined": _count(),
    "api_total": {"data_type": "bigint", "nullable": True},
    # Added after the table's first version: nullable (NULL in rows of earlier runs), since DuckDB
    # cannot add a column with a NOT NULL constraint to an existing table.
    "rows_future": {"data_type": "bigint", "nullable": True},
    "rows_held": {"data_type": "bigint", "nullable": True},
    "quarantine_held": {"data_type": "bigint", "nullable": True},
    "count_offset": {"data_type": "bigint", "nullable": True},
    "churn": {"data_type": "bigint", "nullable": True},
    "verdict": _text(),
}
