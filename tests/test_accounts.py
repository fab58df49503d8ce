"""Several Rackwave accounts into one warehouse: one pipeline and one dataset per account.

dlt pipelines that share a dataset can collide in its staging tables (dlt#4297), so each account
gets its own pipeline name and dataset. Three accounts load at once into one Postgres database,
each as its own `rackwave` process, as three scheduled jobs would; then each loads again while
the accounts change. Every dataset must hold exactly its own account's records.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

from support import FIELDS, _loaded_value, api_value
from warehouses import PostgresWarehouse

REPO = Path(__file__).resolve().parents[1]


def start_load(cwd: Path, account: str, server: Any, dsn: str, *args: str) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("SOURCES__", "RUNTIME__", "DESTINATION__"))}
    environment.update({
        "DLT_DATA_DIR": str(cwd / "dlt"), "PYTHONPATH": str(REPO),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "SOURCES__RACKWAVE__CLIENT_ID": "rw_test_sandbox",
        "SOURCES__RACKWAVE__CLIENT_SECRET": "sk_test_sandbox",
        "DESTINATION__POSTGRES__CREDENTIALS": dsn,
    })
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.rackwave_pipeline", "--destination", "postgres",
         "--pipeline-name", f"rackwave_{account}", "--dataset", f"rackwave_{account}",
         "--base-url", server.base_url, *args],
        cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def load_all_at_once(tmp_path: Path, servers: Dict[str, Any], dsn: str, *args: str) -> None:
    running = {name: start_load(tmp_path, name, server, dsn, *args)
               for name, server in servers.items()}
    for name, process in running.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"{name}: {err}"


def assert_dataset_equals_account(warehouse: PostgresWarehouse, dataset: str, server: Any) -> None:
    for kind, fields in FIELDS.items():
        want = {r["id"]: tuple(api_value(r, f) for f in fields) for r in server.admin.records(kind)}
        _, rows = warehouse.query(f"SELECT id, {', '.join(fields)} FROM {dataset}.{kind}")
        ids: List[str] = [row[0] for row in rows]
        assert len(ids) == len(set(ids)), f"{dataset}.{kind}: ids loaded more than once"
        got = {row[0]: tuple(_loaded_value(f, v) for f, v in zip(fields, row[1:])) for row in rows}
        assert got == want, f"{dataset}.{kind} differs from its account"


def test_three_accounts_load_at_once_into_one_postgres_each_exactly(
        sandbox_factory, postgres_server, tmp_path):
    servers = {name: sandbox_factory(leads=leads, contacts=contacts, seed=seed)
               for name, leads, contacts, seed in
               (("north", 900, 300, 11), ("south", 450, 700, 12), ("east", 0, 260, 13))}

    with postgres_server.database() as dsn:
        warehouse = PostgresWarehouse(dsn)
        load_all_at_once(tmp_path, servers, dsn)
        for name, server in servers.items():
            assert_dataset_equals_account(warehouse, f"rackwave_{name}", server)

        servers["north"].admin.insert("leads", count=40)
        servers["south"].admin.delete("contacts", servers["south"].admin.ids("contacts")[7])
        servers["east"].admin.insert("leads", count=5)
        load_all_at_once(tmp_path, servers, dsn, "--full-scan")
        for name, server in servers.items():
            assert_dataset_equals_account(warehouse, f"rackwave_{name}", server)
