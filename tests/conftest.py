"""Shared pytest fixtures: in-process Rackwave sandboxes on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rackwave_sandbox import RunningServer, Sandbox, SandboxConfig

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

from support import Loader  # noqa: E402


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
    _reload_dlt_settings()  # dlt read .dlt/*.toml of another folder (another test) before
    return tmp_path


def _reload_dlt_settings() -> None:
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

    Container()[PluggableRunContext].reload()


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

import os  # noqa: E402

from warehouses import (  # noqa: E402
    DeltaWarehouse,
    DuckDBWarehouse,
    PostgresServer,
    PostgresWarehouse,
    SnowflakeWarehouse,
    Warehouse,
)

WAREHOUSES = ("duckdb", "postgres", "delta", "snowflake")


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


def _needs_snowflake(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return "snowflake_emulator" in getattr(item, "fixturenames", ()) or (
        callspec is not None and callspec.params.get("warehouse") == "snowflake")


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Builds the Snowflake emulator's environment (`.venv-recipes/fakesnow`, 20 to 60 s the
    first time) before the tests run when one of them needs it, so that the build does not count
    against that test's timeout. Nothing to do when it is built; the loop itself is pytest's."""
    if not session.config.option.collectonly and any(_needs_snowflake(i) for i in session.items):
        from snowflake_emulator import emulator_python

        emulator_python()


@pytest.fixture(scope="session")
def snowflake_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Snowflake emulator (fakesnow's server, tests/snowflake_emulator.py) for the session,
    installed into `.venv-recipes/fakesnow` on first use; each test gets a database of its own."""
    from snowflake_emulator import SnowflakeEmulator

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
    """The same end-to-end test on DuckDB, Postgres, Delta tables in a local folder and the
    Snowflake emulator."""
    if request.param == "duckdb":
        yield DuckDBWarehouse(tmp_path / "rackwave_data.duckdb")
    elif request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        with server.database() as dsn:
            yield PostgresWarehouse(dsn)
    elif request.param == "snowflake":
        emulator = request.getfixturevalue("snowflake_emulator")
        with emulator.database() as database:
            yield SnowflakeWarehouse(emulator, database)
    else:
        yield DeltaWarehouse(tmp_path / "lake")
