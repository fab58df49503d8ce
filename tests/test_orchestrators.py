"""The orchestrator recipes in `recipes/`, each run by its orchestrator against the sandbox.

* `recipes/airflow/rackwave_dag.py`: copied into an Airflow DAGs folder (Airflow 3, SQLite
  metadata database in the test's folder) and run with `airflow dags test rackwave`, into Postgres.
* `recipes/dagster/rackwave_assets.py`: its job (the one its schedule starts) run in process by
  Dagster, into a DuckDB file.

Each runs twice: a first load, then, after the API gained records, an incremental run. The
warehouse must equal the API after each. Airflow's second run reads the credentials from the
Airflow Variable `dlt_secrets_toml` instead of the environment: both ways the recipe documents.

Each orchestrator is installed as a user installs the recipe (`pip install -e ".[airflow]"`,
`".[dagster]"`), in an environment of its own under `.venv-recipes/`, built on first use and
built again when pyproject.toml changes. Not in `.venv`: with Airflow installed, every dlt process
imports Airflow (dlt looks for Airflow's secrets) and creates ~/airflow, which would slow down and
change every other test of the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import dlt
import pytest

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from support import Loader, assert_equals_api, command_environment, page_requests
from emulators.venv import INSTALL_AND_RUN_TIMEOUT, recipe_venv
from warehouses import DuckDBWarehouse, PostgresWarehouse

REPO = Path(__file__).resolve().parents[1]
KINDS = ("leads", "contacts")


def orchestrator_environment(tmp_path: Path, bin_dir: Path, sandbox: Any,
                             **extra: str) -> Dict[str, str]:
    """A worker's environment: the recipe's venv first on PATH, the source's settings as the
    recipes document them (the base URL is the one thing that is not production), nothing of
    this process's dlt, Airflow or Dagster settings, temporary files in the test's folder."""
    environment = {k: v for k, v in command_environment(tmp_path / "dlt").items()
                   if not k.startswith(("AIRFLOW", "DAGSTER"))}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    environment.update(
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", TMPDIR=str(tmp_path / "tmp"),
        SOURCES__RACKWAVE__CLIENT_ID=DEMO_CLIENT_ID,
        SOURCES__RACKWAVE__CLIENT_SECRET=DEMO_CLIENT_SECRET,
        SOURCES__RACKWAVE__BASE_URL=sandbox.base_url, **extra)
    environment.pop("PYTHONPATH", None)  # the recipe's venv has the project installed
    # installed without compiling (faster); the first import writes the bytecode, kept in
    # the venv for every later process, even where PYTHONDONTWRITEBYTECODE is set
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    environment["PYTHONPYCACHEPREFIX"] = str(bin_dir.parent / "pycache")
    return environment


def run(command: List[str], environment: Dict[str, str], cwd: Path) -> str:
    done = subprocess.run(command, env=environment, cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, (
        f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-4000:]}\n"
        f"{done.stderr[-4000:]}")
    return done.stdout


def last_run_modes(destination: Any, folder: Path) -> Dict[str, str]:
    """What the last run of each table was (``full_scan`` or ``incremental``), from the pipeline
    state the run left in the destination: a new local pipeline restores it from there."""
    pipeline = dlt.pipeline("rackwave", destination=destination, dataset_name="rackwave",
                            pipelines_dir=str(folder))
    pipeline.sync_destination()
    resources = pipeline.state["sources"]["rackwave"]["resources"]
    return {kind: str(resources[kind]["last_run"]["mode"]) for kind in KINDS}


def more_records_arrive(sandbox: Any) -> None:
    """Between two scheduled runs: new leads and contacts."""
    sandbox.admin.insert("leads", count=7)
    sandbox.admin.insert("contacts", count=3)


@pytest.mark.timeout(INSTALL_AND_RUN_TIMEOUT)
def test_the_airflow_dag_loads_postgres_and_then_only_what_is_new(sandbox, postgres_server,
                                                                   tmp_path):
    bin_dir = recipe_venv("airflow")
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO / "recipes" / "airflow" / "rackwave_dag.py", dags)  # "copy it to your DAGs"

    with postgres_server.database() as dsn:
        environment = orchestrator_environment(
            tmp_path, bin_dir, sandbox, DESTINATION__POSTGRES__CREDENTIALS=dsn,
            AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False")
        run(["airflow", "db", "migrate"], environment, tmp_path)  # SQLite in AIRFLOW_HOME
        loader = Loader(server=sandbox, workdir=tmp_path, warehouse=PostgresWarehouse(dsn))
        requests: Dict[str, List[int]] = {kind: [] for kind in KINDS}

        for attempt in ("first", "next"):
            if attempt == "next":
                more_records_arrive(sandbox)
                # the other way the recipe documents: the credentials in the Airflow Variable
                # that dlt reads as a secrets.toml document, none in the environment
                run(["airflow", "variables", "set", "dlt_secrets_toml",
                     f'[sources.rackwave]\nclient_id = "{DEMO_CLIENT_ID}"\n'
                     f'client_secret = "{DEMO_CLIENT_SECRET}"\n'], environment, tmp_path)
                del environment["SOURCES__RACKWAVE__CLIENT_ID"]
                del environment["SOURCES__RACKWAVE__CLIENT_SECRET"]
            sandbox.admin.reset_stats()
            run(["airflow", "dags", "test", "rackwave"], environment, tmp_path)  # exit 1 if failed
            assert_equals_api(loader, sandbox)
            modes = last_run_modes(dlt.destinations.postgres(credentials=dsn),
                                   tmp_path / f"inspect-{attempt}")
            assert set(modes.values()) == {"full_scan" if attempt == "first" else "incremental"}
            for kind in KINDS:
                requests[kind].append(page_requests(sandbox, kind))

        # the next slot read the newest pages of each list, not the whole list again
        assert all(1 <= r[1] < r[0] for r in requests.values()), requests

        details = json.loads(next(
            line for line in run(["airflow", "dags", "details", "rackwave", "-o", "json"],
                                 environment, tmp_path).splitlines() if line.startswith("[")))[0]
    assert details["timetable_summary"] == "*/30 * * * *"
    assert details["has_import_errors"] == "False" and details["max_active_runs"] == "1"


DAGSTER_RUN = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("rackwave_assets", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
schedule = module.defs.resolve_schedule_def("rackwave_every_30_minutes")
result = module.defs.resolve_job_def(schedule.job_name).execute_in_process()
print(json.dumps({
    "success": result.success, "cron": schedule.cron_schedule, "job": schedule.job_name,
    "materialized": sorted(event.asset_key.to_user_string()
                           for event in result.get_asset_materialization_events()),
}))
"""


@pytest.mark.timeout(INSTALL_AND_RUN_TIMEOUT)
def test_the_dagster_assets_load_duckdb_and_then_only_what_is_new(sandbox, tmp_path):
    bin_dir = recipe_venv("dagster")
    database = tmp_path / "rackwave_data.duckdb"
    environment = orchestrator_environment(tmp_path, bin_dir, sandbox,
                                           DESTINATION__DUCKDB__CREDENTIALS=str(database))
    loader = Loader(server=sandbox, workdir=tmp_path, warehouse=DuckDBWarehouse(database))
    requests: Dict[str, List[int]] = {kind: [] for kind in KINDS}
    recipe = REPO / "recipes" / "dagster" / "rackwave_assets.py"

    for attempt in ("first", "next"):  # each run a new process, as Dagster's run launcher does
        if attempt == "next":
            more_records_arrive(sandbox)
        sandbox.admin.reset_stats()
        output = run([str(bin_dir / "python"), "-c", DAGSTER_RUN, str(recipe)], environment,
                     tmp_path)
        outcome = json.loads(output.strip().splitlines()[-1])
        assert outcome["success"] and outcome["cron"] == "*/30 * * * *"
        assert outcome["job"] == "rackwave"
        assert outcome["materialized"] == ["dlt_rackwave_contacts", "dlt_rackwave_leads"]
        assert_equals_api(loader, sandbox)
        modes = last_run_modes(dlt.destinations.duckdb(str(database)),
                               tmp_path / f"inspect-{attempt}")
        assert set(modes.values()) == {"full_scan" if attempt == "first" else "incremental"}
        for kind in KINDS:
            requests[kind].append(page_requests(sandbox, kind))

    assert all(1 <= r[1] < r[0] for r in requests.values()), requests
