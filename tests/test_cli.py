"""The command a person types: `rackwave --sandbox`, then again, then mistakes."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import duckdb

from support import command_environment


def rackwave(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = command_environment(cwd / "dlt", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "pipelines.rackwave_pipeline", *args],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=300,
    )


def test_sandbox_demo_loads_then_runs_incrementally(tmp_path):
    first = rackwave(tmp_path, "--sandbox", "--sandbox-leads", "300", "--sandbox-contacts", "120")
    assert first.returncode == 0, first.stderr
    assert "leads     full scan" in first.stdout
    assert "300" in first.stdout and "120" in first.stdout
    with duckdb.connect(str(tmp_path / "rackwave_data.duckdb"), read_only=True) as con:
        assert con.execute("SELECT COUNT(*) FROM rackwave.leads").fetchone() == (300,)
        assert con.execute("SELECT COUNT(*) FROM rackwave.contacts").fetchone() == (120,)

    second = rackwave(tmp_path, "--sandbox", "--sandbox-leads", "300", "--sandbox-contacts", "120",
                      "--progress")
    assert second.returncode == 0, second.stderr
    assert "leads     incremental" in second.stdout


def test_unknown_resource_exits_2_with_the_choices(tmp_path):
    run = rackwave(tmp_path, "--sandbox", "--resources", "deals")
    assert run.returncode == 2
    assert "Available resources: leads, contacts" in run.stderr


def test_missing_credentials_exit_2_and_say_where_to_put_them(tmp_path):
    run = rackwave(tmp_path, "--base-url", "http://127.0.0.1:9/v1")
    assert run.returncode == 2
    assert "SOURCES__RACKWAVE__CLIENT_SECRET" in run.stderr
    assert "Traceback" not in run.stderr


def test_unreachable_api_exits_75_so_a_scheduler_can_retry(tmp_path):
    run = rackwave(tmp_path, "--base-url", "http://127.0.0.1:9/v1", env={
        "SOURCES__RACKWAVE__CLIENT_ID": "id", "SOURCES__RACKWAVE__CLIENT_SECRET": "sk_cli_hidden_value",
        "RUNTIME__REQUEST_MAX_ATTEMPTS": "2", "RUNTIME__REQUEST_BACKOFF_FACTOR": "0.01",
    })
    assert run.returncode == 75, run.stderr
    assert "Could not reach the Rackwave token endpoint http://127.0.0.1:9/v1/auth/token" in run.stderr
    assert "sk_cli_hidden_value" not in run.stderr + run.stdout


def test_a_warehouse_without_credentials_exits_2_before_any_request(tmp_path, sandbox):
    sandbox.admin.reset_stats()
    run = rackwave(tmp_path, "--destination", "postgres", "--base-url", sandbox.base_url, env={
        "SOURCES__RACKWAVE__CLIENT_ID": "rw_test_sandbox",
        "SOURCES__RACKWAVE__CLIENT_SECRET": "sk_test_sandbox"})
    assert run.returncode == 2, run.stderr
    assert "the postgres destination is missing credentials" in run.stderr
    assert "DESTINATION__POSTGRES__CREDENTIALS" in run.stderr
    assert "Traceback" not in run.stderr
    assert sandbox.admin.stats()["requests"] == {}  # not even the token


def test_postgres_from_the_command_line(tmp_path, sandbox, postgres_server):
    with postgres_server.database() as dsn:
        env = {"SOURCES__RACKWAVE__CLIENT_ID": "rw_test_sandbox",
               "SOURCES__RACKWAVE__CLIENT_SECRET": "sk_test_sandbox",
               "DESTINATION__POSTGRES__CREDENTIALS": dsn}
        run = rackwave(tmp_path, "--destination", "postgres", "--base-url", sandbox.base_url,
                       env=env)
        assert run.returncode == 0, run.stderr
        assert "Rackwave -> postgres" in run.stdout
        assert "leads     full scan" in run.stdout and "250" in run.stdout

        import psycopg2

        with psycopg2.connect(dsn) as con, con.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM rackwave.leads")
            assert cur.fetchone() == (250,)
            cur.execute("SELECT data_type FROM information_schema.columns WHERE "
                        "table_schema = 'rackwave' AND table_name = 'leads' AND column_name = 'tags'")
            assert cur.fetchone() == ("jsonb",)


def test_plain_parquet_needs_full_scans_and_an_unknown_destination_is_refused(tmp_path):
    lake = {"DESTINATION__FILESYSTEM__BUCKET_URL": (tmp_path / "lake").as_uri()}
    plain_files = ("--sandbox", "--destination", "filesystem", "--lake-format", "parquet")
    first = rackwave(tmp_path, *plain_files, env=lake)  # a first load is a full scan: it works
    assert first.returncode == 0, first.stderr
    files = sorted((tmp_path / "lake").rglob("*.parquet"))

    run = rackwave(tmp_path, *plain_files, env=lake)  # incremental: it would append duplicates

    assert run.returncode == 2
    assert "is plain parquet files on the filesystem destination, which cannot merge" in run.stderr
    assert "--full-scan" in run.stderr
    assert sorted((tmp_path / "lake").rglob("*.parquet")) == files

    run = rackwave(tmp_path, "--sandbox", "--destination", "oracle")
    assert run.returncode == 2
    assert "invalid choice: 'oracle'" in run.stderr and "postgres" in run.stderr


def test_an_unreachable_warehouse_exits_75_without_its_password(tmp_path, sandbox):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    run = rackwave(tmp_path, "--destination", "postgres", "--base-url", sandbox.base_url, env={
        "SOURCES__RACKWAVE__CLIENT_ID": "rw_test_sandbox",
        "SOURCES__RACKWAVE__CLIENT_SECRET": "sk_test_sandbox",
        "DESTINATION__POSTGRES__CREDENTIALS": f"postgresql://loader:pw_hidden_9@127.0.0.1:{port}/x"})
    assert run.returncode == 75, run.stderr
    assert "Could not reach the postgres warehouse" in run.stderr
    assert "run again" in run.stderr and "Traceback" not in run.stderr
    assert "pw_hidden_9" not in run.stderr + run.stdout


def test_help_names_every_command_and_version_says_what_is_installed(tmp_path):
    from importlib.metadata import version

    shown = rackwave(tmp_path, "--help")

    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    for command in ("check", "push", "dbt", "sql"):
        described = [line for line in lines if line.split()[:1] == [command]]
        assert len(described) == 1, f"`{command}` is not one line of --help:\n{shown.stdout}"
        assert "--help" in rackwave(tmp_path, command, "--help").stdout  # and it has its own
    told = rackwave(tmp_path, "--version")
    assert told.returncode == 0
    assert told.stdout.strip() == (f"rackwave {version('rackwave-source')} "
                                   f"(dlt {version('dlt')})")


def test_a_destination_whose_driver_is_missing_names_this_packages_extra(tmp_path):
    hidden = tmp_path / "hidden"  # the Snowflake driver, as if its extra were not installed
    (hidden / "snowflake").mkdir(parents=True)
    (hidden / "snowflake" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'snowflake'\", name='snowflake')\n")
    from support import REPO

    run = rackwave(tmp_path, "--sandbox", "--sandbox-leads", "5", "--sandbox-contacts", "5",
                   "--destination", "snowflake",
                   env={"PYTHONPATH": f"{hidden}:{REPO}",
                        "DESTINATION__SNOWFLAKE__CREDENTIALS": "snowflake://u:p@account/db"})

    assert run.returncode == 2, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert 'pip install "rackwave-source[snowflake]"' in last
    assert "Invalid Rackwave setting" not in last and 'pip install "dlt[' not in run.stderr


def test_an_api_that_cannot_be_reached_at_first_contact_fails_fast_naming_why(tmp_path):
    """With the shipped settings (8 attempts, up to 30 s apart) a wrong base URL took 93 s to
    fail and ended at "ConnectionError"; now within 15 s, exit 75, the cause on the last line."""
    import shutil
    import time

    from support import REPO

    (tmp_path / ".dlt").mkdir()
    shutil.copy(REPO / ".dlt" / "config.toml", tmp_path / ".dlt" / "config.toml")
    credentials = {"SOURCES__RACKWAVE__CLIENT_ID": "rw_test_x1", "SOURCES__RACKWAVE__CLIENT_SECRET":
                   "sk_test_y2"}
    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind(("127.0.0.1", 0))
        refused_url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
    for command, url, cause in (
            ([], refused_url, "the connection was refused"),
            (["check"], "https://no-such-host.invalid/v1", "the host name does not resolve")):
        started = time.monotonic()
        run = rackwave(tmp_path, *command, "--base-url", url, env=credentials)

        assert time.monotonic() - started < 15, run.stderr
        assert run.returncode == 75, run.stderr
        assert cause in run.stderr.strip().splitlines()[-1]


def test_the_explore_hint_runs_as_written_in_a_new_shell(tmp_path):
    """The summary's "Explore:" line once named `duckdb` (not installed) and `python` (not the
    virtualenv's): in a new shell, with only the system's PATH, it must print the counts."""
    run = rackwave(tmp_path, "--sandbox", "--sandbox-leads", "40", "--sandbox-contacts", "5")
    assert run.returncode == 0, run.stderr
    hint = next(line for line in run.stdout.splitlines() if line.startswith("Explore: "))

    shell = subprocess.run(["bash", "-c", hint.split(": ", 1)[1]], cwd=tmp_path,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                           capture_output=True, text=True, timeout=60)

    assert shell.returncode == 0, shell.stderr
    assert "status" in shell.stdout and "count_star()" in shell.stdout


USER_CODE = """
import os, sys

import dlt
from rackwave_source import rackwave_source

pipeline = dlt.pipeline(
    "rackwave", destination=dlt.destinations.duckdb({path}), dataset_name="rackwave"
)
pipeline.run(rackwave_source(base_url=sys.argv[1]).with_resources("leads"))
"""


def test_the_readmes_dlt_code_in_a_second_folder_loads_that_folders_file(tmp_path,
                                                                          sandbox_factory):
    """The command in one folder, then the README's plain dlt code in another, same user: the
    code once loaded the first folder's file (exit 0) through the pipeline's shared state."""
    import hashlib

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    shared = {"DLT_DATA_DIR": str(tmp_path / "dlt"), "SOURCES__RACKWAVE__CLIENT_ID":
              "rw_test_sandbox", "SOURCES__RACKWAVE__CLIENT_SECRET": "sk_test_sandbox"}
    theirs, ours = sandbox_factory(leads=30, contacts=5), sandbox_factory(leads=12, contacts=3)
    assert rackwave(first, "--base-url", theirs.base_url, env=shared).returncode == 0
    loaded = first / "rackwave_data.duckdb"
    before = hashlib.sha256(loaded.read_bytes()).hexdigest()

    def user_code(path: str) -> subprocess.CompletedProcess:
        (second / "load.py").write_text(USER_CODE.format(path=path))
        environment = command_environment(tmp_path / "dlt", **shared)
        return subprocess.run([sys.executable, "load.py", ours.base_url], cwd=second,
                              env=environment, capture_output=True, text=True, timeout=300)

    relative = user_code('"rackwave_data.duckdb"')  # the trap: refused, naming both files
    assert relative.returncode != 0
    assert f"would load {loaded}, not {second / 'rackwave_data.duckdb'}" in relative.stderr
    assert not (second / "rackwave_data.duckdb").exists()

    documented = user_code('os.path.abspath("rackwave_data.duckdb")')  # the README's code

    assert documented.returncode == 0, documented.stderr[-3000:]
    assert hashlib.sha256(loaded.read_bytes()).hexdigest() == before  # untouched
    with duckdb.connect(str(second / "rackwave_data.duckdb"), read_only=True) as con:
        assert sorted(r[0] for r in con.execute("SELECT id FROM rackwave.leads").fetchall()) == \
            sorted(ours.admin.ids("leads"))
    again = rackwave(first, "--base-url", theirs.base_url, "--full-scan", env=shared)
    assert again.returncode == 0, again.stderr
    with duckdb.connect(str(loaded), read_only=True) as con:
        assert sorted(r[0] for r in con.execute("SELECT id FROM rackwave.leads").fetchall()) == \
            sorted(theirs.admin.ids("leads"))


def test_rackwave_sql_answers_from_the_loaded_warehouse_in_three_formats_and_as_a_shell(
        tmp_path, sandbox):
    import csv
    import io
    import json

    missing = rackwave(tmp_path, "sql", "SELECT 1")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not (tmp_path / "rackwave_data.duckdb").exists()  # no empty file made
    credentials = {"SOURCES__RACKWAVE__CLIENT_ID": "rw_test_sandbox",
                   "SOURCES__RACKWAVE__CLIENT_SECRET": "sk_test_sandbox"}
    assert rackwave(tmp_path, "--base-url", sandbox.base_url, env=credentials).returncode == 0
    query = "SELECT status, count(*) AS n FROM leads GROUP BY 1 ORDER BY 1"
    counts: dict = {}
    for lead in sandbox.admin.records("leads"):
        counts[lead["status"]] = counts.get(lead["status"], 0) + 1

    shown = rackwave(tmp_path, "sql", query)
    as_csv = rackwave(tmp_path, "sql", "--format", "csv", query)
    as_json = rackwave(tmp_path, "sql", "--format", "json", query)

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].split() == ["status", "n"]
    assert f"({len(counts)} rows)" in shown.stdout
    assert {r["status"]: int(r["n"]) for r in csv.DictReader(io.StringIO(as_csv.stdout))} == counts
    assert {r["status"]: r["n"] for r in json.loads(as_json.stdout)} == counts

    script = "SELECT count(*) AS n FROM contacts;\nSELEC 1;\nSELECT 1 AS one,\n  2 AS two;\n"
    shell = subprocess.run(
        [sys.executable, "-m", "pipelines.rackwave_pipeline", "sql", "--format", "json"],
        input=script, cwd=tmp_path, env=command_environment(tmp_path / "dlt"),
        capture_output=True, text=True, timeout=120)
    assert shell.returncode == 2  # one statement refused, named; the others answered
    assert "refused the query" in shell.stderr and "SELEC" in shell.stderr
    assert [json.loads(line) for line in shell.stdout.splitlines()] == [
        [{"n": len(sandbox.admin.ids("contacts"))}], [{"one": 1, "two": 2}]]
