"""Several Rackwave accounts into one warehouse: one pipeline and one dataset per account.

dlt pipelines that share a dataset can collide in its staging tables (dlt#4297), so each account
gets its own pipeline name and dataset. Three accounts load at once into one Postgres database,
each as its own `rackwave` process, as three scheduled jobs would; then each loads again while
the accounts change. Every dataset must hold exactly its own account's records.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

from support import assert_equals_api, command_environment
from warehouses import PostgresWarehouse


class _Rows:
    """A warehouse's rows, as ``assert_equals_api`` reads them."""

    def __init__(self, warehouse: PostgresWarehouse) -> None:
        self.warehouse = warehouse

    def query(self, sql: str) -> List[Tuple[Any, ...]]:
        return self.warehouse.query(sql)[1]


def start_load(cwd: Path, account: str, server: Any, dsn: str, *args: str) -> subprocess.Popen:
    environment = command_environment(
        cwd / "dlt", SOURCES__RACKWAVE__CLIENT_ID="rw_test_sandbox",
        SOURCES__RACKWAVE__CLIENT_SECRET="sk_test_sandbox",
        DESTINATION__POSTGRES__CREDENTIALS=dsn)
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


def test_three_accounts_load_at_once_into_one_postgres_each_exactly(
        sandbox_factory, postgres_server, tmp_path):
    servers = {name: sandbox_factory(leads=leads, contacts=contacts, seed=seed)
               for name, leads, contacts, seed in
               (("north", 900, 300, 11), ("south", 450, 700, 12), ("east", 0, 260, 13))}

    with postgres_server.database() as dsn:
        warehouse = PostgresWarehouse(dsn)
        load_all_at_once(tmp_path, servers, dsn)
        for name, server in servers.items():
            assert_equals_api(_Rows(warehouse), server, dataset=f"rackwave_{name}")

        servers["north"].admin.insert("leads", count=40)
        servers["south"].admin.delete("contacts", servers["south"].admin.ids("contacts")[7])
        servers["east"].admin.insert("leads", count=5)
        load_all_at_once(tmp_path, servers, dsn, "--full-scan")
        for name, server in servers.items():
            assert_equals_api(_Rows(warehouse), server, dataset=f"rackwave_{name}")
