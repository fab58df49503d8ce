"""The dbt project in `rackwave_dbt/`, built and tested on a sandbox load: through `rackwave dbt`
on DuckDB and Postgres, and with plain `dbt build` and the shipped profiles.yml, as an analytics
engineer runs it.

dbt and the connector are installed as a user installs them, from the wheel
(`pip install rackwave_source-*.whl[dbt]`), in an environment of their own (`.venv-recipes/dbt`,
built on first use): dbt-core 1.11 pins pathspec below what the suite's mypy needs, so it is not
in the dev extra.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple
from urllib.parse import urlsplit

import pytest

from emulators.venv import INSTALL_AND_RUN_TIMEOUT, installed_venv
from test_orchestrators import orchestrator_environment, run
from warehouses import DuckDBWarehouse, PostgresWarehouse

REPO = Path(__file__).resolve().parents[1]
STATUSES = ("new", "contacted", "qualified", "won", "lost")
FUNNEL = "rackwave__lead_funnel_daily"
pytestmark = pytest.mark.timeout(INSTALL_AND_RUN_TIMEOUT)


@pytest.fixture(scope="module")
def dbt_bin() -> Path:
    return installed_venv("dbt")


def dbt_environment(tmp_path: Path, bin_dir: Path, sandbox: Any, **extra: str) -> Dict[str, str]:
    """A user's shell with the dbt environment first on PATH; dbt's target/ and logs/ in the
    test's folder, no usage statistics sent."""
    return orchestrator_environment(
        tmp_path, bin_dir, sandbox, DBT_TARGET_PATH=str(tmp_path / "dbt-target"),
        DBT_LOG_PATH=str(tmp_path / "dbt-logs"), DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DO_NOT_TRACK="1", **extra)


def attempt(command: List[str], environment: Dict[str, str],
            cwd: Path) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(command, env=environment, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def api_funnel(sandbox: Any) -> Dict[Tuple[str, str], int]:
    """Leads per (created UTC day, status), as the API holds them now."""
    return dict(Counter((r["created_at"][:10], r["status"])
                        for r in sandbox.admin.records("leads")))


def model_funnel(warehouse: Any, dataset: str) -> Dict[Tuple[str, str], int]:
    rows = warehouse.query(f"SELECT day, status, leads_entered FROM {dataset}.{FUNNEL}")[1]
    return {(str(day), status): int(entered) for day, status, entered in rows}


def end_of_day(warehouse: Any, dataset: str) -> Dict[str, int]:
    """leads_at_end_of_day of each status's last row: the leads in that status now."""
    rows = warehouse.query(
        f"SELECT status, leads_at_end_of_day FROM {dataset}.{FUNNEL} f WHERE day = "
        f"(SELECT max(day) FROM {dataset}.{FUNNEL} g WHERE g.status = f.status)")[1]
    return {status: int(count) for status, count in rows}


def ids(warehouse: Any, relation: str, column: str) -> List[str]:
    return sorted(r[0] for r in warehouse.query(f"SELECT {column} FROM {relation}")[1])


def assert_models_equal_api(warehouse: Any, sandbox: Any, dataset: str) -> None:
    """The staging models hold exactly the API's live records, and the funnel counts each lead
    once, on its created day, in its current status."""
    assert ids(warehouse, f"{dataset}.stg_rackwave__leads", "lead_id") == \
        sorted(sandbox.admin.ids("leads"))
    assert ids(warehouse, f"{dataset}.stg_rackwave__contacts", "contact_id") == \
        sorted(sandbox.admin.ids("contacts"))
    assert model_funnel(warehouse, dataset) == api_funnel(sandbox)
    assert end_of_day(warehouse, dataset) == dict(
        Counter(r["status"] for r in sandbox.admin.records("leads")))
    basis = warehouse.query(f"SELECT DISTINCT funnel_basis FROM {dataset}.{FUNNEL}")[1]
    assert basis == [("current_status_by_created_day",)]


def delete_a_referenced_lead_and_a_contact(sandbox: Any) -> str:
    """The API loses a lead that contacts point at (their lead_id stays), and a contact.
    Returns the lead's id."""
    contacts = sandbox.admin.records("contacts")
    referencing = next(c for c in contacts if c["lead_id"])
    sandbox.admin.delete("leads", referencing["lead_id"])
    sandbox.admin.delete("contacts", next(c for c in contacts if c is not referencing)["id"])
    return str(referencing["lead_id"])


def test_rackwave_dbt_on_duckdb_models_the_live_records_of_a_flag_mode_load(
        sandbox, tmp_path, dbt_bin):
    environment = dbt_environment(tmp_path, dbt_bin, sandbox,
                                  SOURCES__RACKWAVE__DELETED_RECORDS="flag")
    warehouse = DuckDBWarehouse(tmp_path / "rackwave_data.duckdb")
    run(["rackwave"], environment, tmp_path)
    gone_lead = delete_a_referenced_lead_and_a_contact(sandbox)
    run(["rackwave", "--full-scan"], environment, tmp_path)  # flags both, keeps their rows

    output = run(["rackwave", "dbt"], environment, tmp_path)

    assert "dbt build passed: 3 models, 18 tests." in output
    assert "\x1b[" not in output  # not a terminal: no colour codes in a log file
    # contacts still point at the deleted lead: reported, and the build passes
    assert "warning: test relationships_stg_rackwave__contacts_lead_id" in output
    assert warehouse.query("SELECT count(*) FROM rackwave.leads WHERE id = ? AND "
                           "_rackwave_deleted_at IS NOT NULL", gone_lead)[1] == [(1,)]
    assert_models_equal_api(warehouse, sandbox, "rackwave")
    # source freshness ran: the sandbox's seeded records are months old
    assert "warning: source leads: warn: the newest created_at is" in output


def test_plain_dbt_build_with_the_shipped_profile_reads_the_demo_file(sandbox, tmp_path, dbt_bin):
    """docs/integrations.md, dbt: load, then `cd rackwave_dbt && dbt build`; ../rackwave_data.duckdb, schema rackwave. The
    load left columns out (exclude_columns): the models keep them, NULL."""
    environment = dbt_environment(tmp_path, dbt_bin, sandbox,
                                  SOURCES__RACKWAVE__EXCLUDE_COLUMNS='["phone", "address"]')
    shutil.copytree(REPO / "rackwave_dbt", tmp_path / "rackwave_dbt",
                    ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
    run(["rackwave"], environment, tmp_path)

    output = run(["dbt", "build"], environment, tmp_path / "rackwave_dbt")

    assert "Completed successfully" in output and "ERROR=0" in output
    warehouse = DuckDBWarehouse(tmp_path / "rackwave_data.duckdb")
    assert_models_equal_api(warehouse, sandbox, "rackwave")
    assert warehouse.query("SELECT count(phone), count(address_city), count(email) "
                           "FROM rackwave.stg_rackwave__contacts")[1] == \
        [(0, 0, len(sandbox.admin.ids("contacts")))]


def test_a_failing_dbt_test_fails_rackwave_dbt_and_names_it(sandbox, tmp_path, dbt_bin):
    environment = dbt_environment(tmp_path, dbt_bin, sandbox)
    lead = sandbox.admin.ids("leads")[3]
    sandbox.admin.update("leads", lead, status="archived")  # a status the project does not know
    run(["rackwave"], environment, tmp_path)

    done = attempt(["rackwave", "dbt"], environment, tmp_path)

    assert done.returncode == 1, done.stderr
    assert "dbt build failed: 1 failed" in done.stderr
    assert "accepted_values_stg_rackwave__leads_status" in done.stderr
    assert "fix the data or the model" in done.stderr
    # the funnel, downstream of the failed test, was not built
    tables = DuckDBWarehouse(tmp_path / "rackwave_data.duckdb").query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'rackwave'")[1]
    assert (FUNNEL,) not in tables


def test_rackwave_dbt_refuses_clearly_before_a_load_and_without_dbt(sandbox, tmp_path, dbt_bin):
    environment = dbt_environment(tmp_path, dbt_bin, sandbox)

    before_load = attempt(["rackwave", "dbt"], environment, tmp_path)
    without_dbt = attempt([sys.executable, "-m",  # the suite's environment has no dbt
                           "pipelines.rackwave_pipeline", "dbt", "--duckdb-file",
                           str(tmp_path / "missing.duckdb")], environment, REPO)
    elsewhere = attempt(["rackwave", "dbt", "--destination", "bigquery"], environment, tmp_path)

    assert before_load.returncode == 2
    assert "rackwave_data.duckdb does not exist, so nothing was loaded there yet" in \
        before_load.stderr
    assert not (tmp_path / "rackwave_data.duckdb").exists()  # dbt did not create an empty one
    assert without_dbt.returncode == 2
    assert 'pip install "rackwave-source[dbt]"' in without_dbt.stderr
    assert "Invalid Rackwave setting" not in without_dbt.stderr  # no setting is wrong
    assert elsewhere.returncode == 2 and "runs on duckdb and postgres" in elsewhere.stderr


def postgres_profile(dsn: str) -> Dict[str, str]:
    """The profiles.yml variables for the Postgres at ``dsn``, as a user sets them."""
    parts = urlsplit(dsn)
    return {"RACKWAVE_DBT_PG_HOST": str(parts.hostname), "RACKWAVE_DBT_PG_PORT": str(parts.port),
            "RACKWAVE_DBT_PG_USER": str(parts.username),
            "DBT_ENV_SECRET_RACKWAVE_PG_PASSWORD": str(parts.password or ""),
            "RACKWAVE_DBT_PG_DATABASE": parts.path.lstrip("/"), "RACKWAVE_DBT_DATASET": "crm"}


def test_rackwave_dbt_on_postgres_builds_in_the_loaded_dataset_then_plain_dbt_too(
        sandbox, postgres_server, tmp_path, dbt_bin):
    with postgres_server.database() as dsn:
        environment = dbt_environment(tmp_path, dbt_bin, sandbox,
                                      DESTINATION__POSTGRES__CREDENTIALS=dsn)
        warehouse = PostgresWarehouse(dsn)
        run(["rackwave", "--destination", "postgres", "--dataset", "crm"], environment, tmp_path)

        output = run(["rackwave", "dbt", "--destination", "postgres", "--dataset", "crm"],
                     environment, tmp_path)

        assert "dbt build passed: 3 models, 18 tests." in output
        assert_models_equal_api(warehouse, sandbox, "crm")
        assert urlsplit(dsn).password not in output  # the password reaches dbt, not the output

        # an analytics engineer's plain dbt, with the shipped profile's postgres target
        warehouse.query(f"DROP TABLE crm.{FUNNEL}; SELECT 1")
        plain = {**environment, **postgres_profile(dsn)}
        del plain["DESTINATION__POSTGRES__CREDENTIALS"]
        output = run(["dbt", "build", "--target", "postgres"], plain, REPO / "rackwave_dbt")
        assert "Completed successfully" in output
        assert model_funnel(warehouse, "crm") == api_funnel(sandbox)


@pytest.fixture(params=["duckdb", "postgres"])
def history_warehouse(request: pytest.FixtureRequest,
                      tmp_path: Path) -> Iterator[Tuple[Any, List[str]]]:
    """A warehouse for the history story and the options that point the command at it."""
    if request.param == "duckdb":
        yield DuckDBWarehouse(tmp_path / "rackwave_data.duckdb"), []
        return
    with request.getfixturevalue("postgres_server").database() as dsn:
        yield PostgresWarehouse(dsn), ["--destination", "postgres"]


def test_with_history_the_funnel_counts_status_transitions_and_deletions(
        sandbox, tmp_path, dbt_bin, history_warehouse):
    warehouse, options = history_warehouse
    environment = dbt_environment(tmp_path, dbt_bin, sandbox, SOURCES__RACKWAVE__HISTORY="scd2",
                                  **warehouse.settings())
    leads = sandbox.admin.records("leads")
    first_seen = Counter(lead["status"] for lead in leads)
    moved = next(lead for lead in leads if lead["status"] == "new")
    gone = next(lead for lead in leads if lead["status"] == "won")
    run(["rackwave", *options], environment, tmp_path)
    for status in ("contacted", "qualified"):  # new -> contacted -> qualified, a load each
        sandbox.admin.update("leads", moved["id"], status=status)
        run(["rackwave", "--full-scan", *options], environment, tmp_path)
    sandbox.admin.delete("leads", gone["id"])
    run(["rackwave", "--full-scan", *options], environment, tmp_path)

    output = run(["rackwave", "dbt", *options], environment, tmp_path)

    assert "dbt build passed: 3 models, 18 tests." in output
    rows = warehouse.query(f"SELECT status, sum(leads_entered), sum(leads_left) "
                           f"FROM rackwave.{FUNNEL} GROUP BY status")[1]
    entered = {status: int(n) for status, n, _ in rows}
    left = {status: int(n) for status, _, n in rows}
    # every lead entered its first status at the first load; then the moves and the deletion
    assert entered == {s: first_seen[s] + (s in ("contacted", "qualified")) for s in STATUSES}
    assert left == {s: int(s in ("new", "contacted", "won")) for s in STATUSES}
    assert end_of_day(warehouse, "rackwave") == dict(
        Counter(r["status"] for r in sandbox.admin.records("leads")))
    basis = warehouse.query(f"SELECT DISTINCT funnel_basis FROM rackwave.{FUNNEL}")[1]
    assert basis == [("status_history",)]
