"""BigQuery and Snowflake, the warehouses the product names besides DuckDB, on local emulators:
the stories beyond ``test_warehouses.py``'s (which run there too).

* history (scd2), hashed columns and flagged deletions together, through plain dlt code and
  through the command;
* ``rackwave check`` on a fresh runner reading its state from the warehouse, then ``rackwave
  push`` from a query on that warehouse, its log written there.

Runs killed on these warehouses are in ``test_kills.py``.

Each warehouse is one local emulator the suite starts (``tests/emulators/``); the ``cloud``
fixture gives each test a project or database of its own on it.
"""

from __future__ import annotations

import json
import subprocess
import sys

from pipelines.cli import main
from support import DATASET, command_environment
from test_history import assert_intervals_chain, versions
from rackwave_source.rows.privacy import hash_value
from test_privacy import KEY, PRIVATE, _assert_hashed, _person
from test_push import CREDENTIALS, leads_by_email, new_leads


def test_history_hashes_and_flags_stay_exact_through_changes_and_a_deletion(
        sandbox_factory, make_loader, cloud, via):
    server = sandbox_factory(leads=40, contacts=15)
    _person(server)
    loader = make_loader(server, warehouse=cloud, via=via, history="scd2",
                         deleted_records="flag", **PRIVATE)
    loader.run()
    _assert_hashed(loader, server)
    assert len(versions(loader)) == 40

    lead = next(r for r in server.admin.records("leads") if r["status"] != "won")
    server.admin.update("leads", lead["id"], status="won")
    gone = server.admin.records("leads")[0]
    server.admin.delete("leads", gone["id"])
    loader.run(full_scan=True)

    history = versions(loader)
    assert_intervals_chain(history)
    assert [v[1] for v in history[lead["id"]]] == [lead["status"], "won"]
    assert history[gone["id"]][-1][3] is not None  # its last version closed by the deletion
    flagged = loader.query(f"SELECT id, email FROM {DATASET}.leads "
                           "WHERE _rackwave_deleted_at IS NOT NULL")
    # read back and loaded again with its flag: its hash kept, not hashed a second time
    assert flagged == [(gone["id"], hash_value(KEY, gone["email"], "email"))]
    # the run's check of itself, in rackwave_runs on that warehouse: flagged rows aside
    ((held, verdict),) = loader.query(
        f"SELECT rows_held, verdict FROM {DATASET}.rackwave_runs WHERE resource = 'leads' "
        "ORDER BY finished_at DESC LIMIT 1")
    assert (held, verdict) == (39, "exact")


def test_check_reads_state_from_the_warehouse_and_push_writes_its_log_there(
        sandbox, make_loader, cloud, tmp_path, monkeypatch, capsys):
    loader = make_loader(sandbox, warehouse=cloud)
    loader.run()
    environment = command_environment(tmp_path / "fresh-runner", **CREDENTIALS,
                                      **cloud.settings())
    sandbox.admin.reset_stats()

    checked = subprocess.run(
        [sys.executable, "-m", "pipelines.rackwave_pipeline", "check", "--destination",
         cloud.name, "--dataset", cloud.dataset, "--base-url", sandbox.base_url, "--json"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)

    assert checked.returncode == 0, checked.stderr[-3000:]
    document = json.loads(checked.stdout)
    assert document["destination"] == cloud.name
    assert [r["mode"] for r in document["resources"]] == ["incremental", "incremental"]

    rows = new_leads(3, prefix=cloud.name)
    cloud.query(f"CREATE TABLE {DATASET}.to_push (name STRING, email STRING, phone STRING, "
                "source STRING, score INT64)" if cloud.name == "bigquery" else
                f"CREATE TABLE {DATASET}.to_push (name TEXT, email TEXT, phone TEXT, "
                "source TEXT, score BIGINT)")
    for row in rows:
        cloud.query(f"INSERT INTO {DATASET}.to_push VALUES (?, ?, ?, ?, ?)",
                    row["name"], row["email"], row["phone"], row["source"], row["score"])
    for name, value in {**CREDENTIALS, **cloud.settings()}.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()

    code = main(["push", "leads", "--base-url", sandbox.base_url, "--json", "--destination",
                 cloud.name, "--dataset", cloud.dataset, "--query",
                 f"SELECT name, email, phone, source, score FROM {cloud.dataset}.to_push"])

    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["outcomes"]["created"] == 3, report["error"]
    leads = leads_by_email(sandbox)
    logged = cloud.query(f"SELECT row_key, status, lead_id FROM {DATASET}.rackwave_push_log")[1]
    assert sorted(logged) == sorted((r["email"], "created", leads[r["email"]][0]["id"])
                                    for r in rows)
