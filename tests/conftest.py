"""Shared pytest fixtures: in-process Rackwave sandboxes on free ports."""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rackwave_sandbox import RunningServer, Sandbox, SandboxConfig

# Google's auth library, looking for default credentials (dlt asks it whenever BigQuery
# credentials are incomplete), ends by probing the GCE metadata server at 169.254.169.254: an
# address off this machine, which tests must never contact. Read once, when google.auth is first
# imported, so it is set here, before any test imports it (subprocesses inherit it).
os.environ.setdefault("NO_GCE_CHECK", "true")

SandboxFactory = Callable[..., RunningServer]


@pytest.fixture
def sandbox_factory() -> Iterator[SandboxFactory]:
    """Start sandboxes on demand: ``sandbox_factory(leads=10, token_ttl=1)``.

    Every server started through the factory is stopped at teardown.
    """
    servers: list[RunningServer] = []

    def start(leads: int = 250, contacts: int = 120, **config: Any) -> RunningServer:
        server = Sandbox(SandboxConfig(leads=leads, contacts=contacts, **config)).serve(port=0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sandbox(sandbox_factory: SandboxFactory) -> RunningServer:
    """A fresh running sandbox with 250 leads and 120 contacts (seed 42)."""
    return sandbox_factory(leads=250, contacts=120)


# --- the connector's side: isolated pipelines writing real DuckDB files --------------------------

from pathlib import Path  # noqa: E402

from support import Loader, reload_dlt_settings  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_dlt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in its own folder, with no Rackwave or dlt settings leaking in from outside.

    The working directory is the test's folder, so the repository's `.dlt/config.toml` is not read:
    tests state every setting they rely on.
    """
    import os

    for name in list(os.environ):
        if name.startswith(("SOURCES__", "RUNTIME__", "DESTINATION__", "NORMALIZE__", "LOAD__")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt-data"))
    monkeypatch.chdir(tmp_path)
    reload_dlt_settings()  # dlt read .dlt/*.toml of another folder (another test) before
    _forget_failed_google_credentials(monkeypatch)
    return tmp_path


def _forget_failed_google_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """dlt remembers, per process, that Google's default credentials were not found, and does
    not look again for 10 minutes: a test that ran without them must not fail a later BigQuery
    test that has them (``BigQueryWarehouse``'s credentials file)."""
    from dlt.common.configuration.specs.gcp_credentials import GcpDefaultCredentials

    monkeypatch.setattr(GcpDefaultCredentials, "_LAST_FAILED_DEFAULT", 0.0)


@pytest.fixture
def dlt_log() -> Iterator[list[str]]:
    """The WARNING and ERROR lines dlt's logger lets through while the test runs (after the
    filters the source and the command install): a normal run leaves none."""
    import logging

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.levelname}: {record.getMessage()}")

    handler, dlt_logger = Keep(logging.WARNING), logging.getLogger("dlt")
    dlt_logger.addHandler(handler)
    yield lines
    dlt_logger.removeHandler(handler)


LoaderFactory = Callable[..., Loader]


@pytest.fixture
def make_loader(tmp_path: Path) -> LoaderFactory:
    """``make_loader(server, per_page=3)``: a pipeline on ``server`` with source settings
    (into a DuckDB file, or into ``warehouse=``)."""

    def make(server: RunningServer, pipeline_name: str = "rackwave",
             warehouse: Any = None, via: str = "command", **options: Any) -> Loader:
        return Loader(server=server, workdir=tmp_path, pipeline_name=pipeline_name,
                      options=options, warehouse=warehouse, via=via)

    return make


@pytest.fixture
def loader(sandbox: RunningServer, make_loader: LoaderFactory) -> Loader:
    """The default user: the `sandbox` fixture loaded into `<tmp>/rackwave_data.duckdb`."""
    return make_loader(sandbox)


# --- warehouses other than DuckDB ---------------------------------------------------------------

from emulators.bigquery import BigQueryEmulator  # noqa: E402
from warehouses import (  # noqa: E402
    DATASET,
    BigQueryWarehouse,
    DeltaWarehouse,
    DuckDBWarehouse,
    LiveBigQueryWarehouse,
    LiveSnowflakeWarehouse,
    PostgresServer,
    PostgresWarehouse,
    SnowflakeWarehouse,
    Warehouse,
    shim_quick_load_job_polls,
    why_not_live,
)

#: The same stories on real accounts (``pytest -m live``): skipped, saying why, unless
#: RACKWAVE_LIVE_BIGQUERY=1 / RACKWAVE_LIVE_SNOWFLAKE=1 and their credentials are set.
LIVE = tuple(pytest.param(f"{name}-live", marks=[pytest.mark.live, pytest.mark.timeout(1800)])
             for name in ("bigquery", "snowflake"))
WAREHOUSES = ("duckdb", "postgres", "delta", "bigquery", "snowflake", *LIVE)
CLOUD_WAREHOUSES = ("bigquery", "snowflake", *LIVE)
#: Harness knob: the emulators' dataset, ``rackwave`` unless set (e.g. ``rackwave_live_x``, to
#: run the stories through the dataset plumbing the live tier uses, without an account).
EMULATOR_DATASET = os.environ.get("RACKWAVE_TEST_EMULATOR_DATASET", DATASET)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session: ``RACKWAVE_TEST_POSTGRES`` if set (a server of
    yours, ``postgresql://user:password@host:port``), else a cluster of our own on loopback."""
    existing = os.environ.get("RACKWAVE_TEST_POSTGRES")
    if existing:
        yield PostgresServer(existing.rstrip("/"))
        return
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[BigQueryEmulator]:
    """One local BigQuery (bqemulator) for the session, on a free loopback port: built into
    ``.venv-recipes/bigquery-emulator`` on first use, or ``RACKWAVE_TEST_BIGQUERY_EMULATOR``
    (``http://127.0.0.1:PORT``) if set. Each test gets a project of its own on it."""
    from emulators.bigquery import from_environment

    emulator = from_environment()
    try:
        yield emulator
    finally:
        emulator.stop()


#: the emulated warehouses, where each story runs through one way in (see below)
EMULATED = ("bigquery", "snowflake")
#: the stories that run through both ways in on the emulators too: a first load and a full scan
EVERY_VIA = ("test_first_load_holds_exactly_the_api_records",
             "test_full_scan_applies_updates_and_deletes_and_shrinks_tags")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the emulators, a story parametrized by ``via`` runs through one way in, not both
    (``EVERY_VIA`` aside): BigQuery through the command and Snowflake through plain dlt code for
    half the stories (by the story's name), the other way round for the rest. Each warehouse
    still sees each story, and both ways in across the suite, for half the time the emulators
    took. ``RACKWAVE_TEST_EVERY_VIA=1`` runs every pair."""
    if os.environ.get("RACKWAVE_TEST_EVERY_VIA") == "1":
        return
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        where = params.get("warehouse", params.get("cloud"))
        story = getattr(item, "originalname", item.name)
        if where in EMULATED and params.get("via") in ("command", "dlt") and \
                story not in EVERY_VIA:
            turn = zlib.crc32(story.encode()) % 2
            if params["via"] != ("command", "dlt")[(turn + EMULATED.index(where)) % 2]:
                dropped.append(item)
                continue
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _needs_snowflake(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    return "snowflake_emulator" in getattr(item, "fixturenames", ()) or "snowflake" in (
        params.get("warehouse"), params.get("cloud"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Builds the Snowflake emulator's environment (`.venv-recipes/fakesnow`, 20 to 60 s the
    first time) before the tests run when one of them needs it, so that the build does not count
    against that test's timeout. Nothing to do when it is built; the loop itself is pytest's."""
    if not session.config.option.collectonly and any(_needs_snowflake(i) for i in session.items):
        from emulators.fake_snowflake import emulator_python

        emulator_python()


@pytest.fixture(scope="session")
def snowflake_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Snowflake emulator (fakesnow's server, tests/emulators/fake_snowflake.py) for the session,
    installed into `.venv-recipes/fakesnow` on first use; each test gets a database of its own."""
    from emulators.fake_snowflake import SnowflakeEmulator

    emulator = SnowflakeEmulator.start(tmp_path_factory.mktemp("snowflake") / "emulator.log")
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(params=["command", "dlt"])
def via(request: pytest.FixtureRequest) -> str:
    """The same story through the `rackwave` command and through a user's own plain dlt code."""
    return str(request.param)


@pytest.fixture(params=WAREHOUSES)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """The same end-to-end test on DuckDB, Postgres, Delta tables in a local folder, and
    BigQuery and Snowflake on their local emulators (and on real accounts: ``LIVE``)."""
    with _opened(request, str(request.param), tmp_path) as where:
        yield where


@pytest.fixture(params=CLOUD_WAREHOUSES)
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """The warehouses the product names besides DuckDB, on their local emulators (and on real
    accounts: ``LIVE``): the stories only they need to prove (history, hashing, push, check, a
    kill) run on these."""
    with _opened(request, str(request.param), tmp_path) as where:
        yield where


@contextlib.contextmanager
def _opened(request: pytest.FixtureRequest, name: str, tmp_path: Path) -> Iterator[Warehouse]:
    if name.endswith("-live"):
        destination = name[:-len("-live")]
        reason = why_not_live(destination)
        if reason:
            pytest.skip(reason)
        live = (LiveBigQueryWarehouse if destination == "bigquery" else LiveSnowflakeWarehouse)()
        try:
            yield live
        finally:
            live.drop()
    elif name == "duckdb":
        yield DuckDBWarehouse(tmp_path / "rackwave_data.duckdb")
    elif name == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        with server.database() as dsn:
            yield PostgresWarehouse(dsn)
    elif name == "bigquery":
        emulator: BigQueryEmulator = request.getfixturevalue("bigquery_emulator")
        shim_quick_load_job_polls(request.getfixturevalue("monkeypatch"))
        bigquery = BigQueryWarehouse.fresh(emulator, tmp_path / "bigquery", EMULATOR_DATASET)
        try:
            yield bigquery
        finally:
            bigquery.drop()
    elif name == "snowflake":
        snowflake = request.getfixturevalue("snowflake_emulator")
        with snowflake.database() as database:
            yield SnowflakeWarehouse(snowflake, database, EMULATOR_DATASET)
    else:
        yield DeltaWarehouse(tmp_path / "lake")
