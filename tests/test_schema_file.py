"""The schema is reviewed like code: schemas/rackwave.schema.yaml is what a load produces.

A change to the tables (a column added, renamed, retyped, made nullable) fails this test until
`make schema` rewrites the file and the diff is committed with the change. The table of columns
in docs/tables-and-history.md is held to the same file.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Dict

import yaml

import doc_pages

REPO = Path(__file__).resolve().parent.parent
SCHEMA_FILE = REPO / "schemas" / "rackwave.schema.yaml"
TABLES = ("leads", "contacts")
#: what describes the tables; versions, hashes and which disposition the last run used do not
COLUMN_KEYS = ("data_type", "nullable", "primary_key", "merge_key", "precision", "scale",
               "timezone", "cluster", "partition", "unique")


def reviewed_shape(schema: Dict[str, Any]) -> str:
    """The tables' columns and their properties, as stable text for a readable diff."""
    lines = []
    for table in TABLES:
        columns = schema["tables"][table]["columns"]
        for name, column in columns.items():
            props = ", ".join(f"{k}={column[k]}" for k in COLUMN_KEYS if k in column)
            lines.append(f"{table}.{name}: {props}")
    return "\n".join(lines) + "\n"


def test_the_loaded_schema_is_the_reviewed_schema_file(sandbox, make_loader, tmp_path):
    exported = tmp_path / "schemas"
    make_loader(sandbox).run(export_schema_path=str(exported))

    got = reviewed_shape(yaml.safe_load((exported / "rackwave.schema.yaml").read_text()))
    want = reviewed_shape(yaml.safe_load(SCHEMA_FILE.read_text()))

    diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                        "schemas/rackwave.schema.yaml", "this load"))
    assert got == want, (
        "The tables a load produces differ from the reviewed schema file:\n" + diff +
        "If the change is intended, run `make schema` and commit schemas/rackwave.schema.yaml "
        "with it (and the table of columns in docs/tables-and-history.md).")


def test_the_docs_document_every_column_of_the_schema_file():
    schema = yaml.safe_load(SCHEMA_FILE.read_text())
    section = doc_pages.section("tables-and-history.md", "Tables")
    documented = set(re.findall(r"`([a-z_]+)`", section))
    for table in TABLES:
        missing = [c for c in schema["tables"][table]["columns"] if c not in documented]
        assert not missing, \
            f"docs/tables-and-history.md, Tables, does not mention {table}.{missing}"
