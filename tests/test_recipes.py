"""The scheduling recipes in `recipes/`, run as written against the sandbox.

Airflow and Dagster are run by tests/test_orchestrators.py, each in its own environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
import duckdb
import yaml

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from support import Loader, assert_equals_api, command_environment, sandbox_ids
from warehouses import PostgresWarehouse

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def test_the_crontab_line_loads_and_logs(sandbox, tmp_path):
    lines = [line for line in (REPO / "recipes" / "crontab").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0].startswith("RACKWAVE_HOME=")
    schedule, command = re.match(r"^((?:\S+\s+){5})(.*)$", lines[1]).groups()
    assert schedule.split() == ["*/30", "*", "*", "*", "*"]
    home = tmp_path / "home"
    (home / ".venv").mkdir(parents=True)
    (home / ".venv" / "bin").symlink_to(VENV_BIN)
    environment = command_environment(
        tmp_path / "dlt", RACKWAVE_HOME=str(home),
        SOURCES__RACKWAVE__CLIENT_ID=DEMO_CLIENT_ID,
        SOURCES__RACKWAVE__CLIENT_SECRET=DEMO_CLIENT_SECRET,
        SOURCES__RACKWAVE__BASE_URL=sandbox.base_url)

    for _ in range(2):  # a first load, then the next slot's incremental run
        done = subprocess.run(["bash", "-c", command], env=environment, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (home / "rackwave.log").read_text()

    log = (home / "rackwave.log").read_text()
    assert log.count("Rackwave -> duckdb") == 2 and "incremental" in log
    with duckdb.connect(str(home / "rackwave_data.duckdb"), read_only=True) as con:
        ids = sorted(r[0] for r in con.execute("SELECT id FROM rackwave.leads").fetchall())
    assert ids == sandbox_ids(sandbox, "leads")


def test_the_github_actions_workflow_names_both_secrets_and_its_load_step_runs(
        sandbox, postgres_server, tmp_path):
    workflow = yaml.safe_load((REPO / "recipes" / "github-actions" / "rackwave.yml").read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads on: as True
    assert triggers["schedule"][0]["cron"] == "*/30 * * * *"
    steps = workflow["jobs"]["load"]["steps"]
    assert any("rackwave-source" in str(step.get("run", "")) for step in steps)
    load = next(step for step in steps if step.get("name") == "Load")
    secrets = {"RACKWAVE_CLIENT_ID": DEMO_CLIENT_ID, "RACKWAVE_CLIENT_SECRET": DEMO_CLIENT_SECRET}

    with postgres_server.database() as dsn:
        secrets["POSTGRES_CREDENTIALS"] = dsn
        env = {}
        for name, value in load["env"].items():
            found = re.fullmatch(r"\$\{\{ secrets\.(\w+) \}\}", str(value))
            env[name] = secrets[found.group(1)] if found else str(value)
        assert {"SOURCES__RACKWAVE__CLIENT_ID", "SOURCES__RACKWAVE__CLIENT_SECRET"} <= set(env)
        environment = command_environment(
            tmp_path / "runner", **env,
            PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
            SOURCES__RACKWAVE__BASE_URL=sandbox.base_url)  # the one thing that is not production

        done = subprocess.run(["bash", "-c", load["run"]], env=environment, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

        assert done.returncode == 0, done.stderr
        loader = Loader(server=sandbox, workdir=tmp_path, warehouse=PostgresWarehouse(dsn))
        assert_equals_api(loader, sandbox)
