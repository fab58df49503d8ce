"""Helpers for the sandbox's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, RunningServer



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every sandbox test a hard time limit (none of them should take long)."""
    for item in items:
        if "tests/sandbox/" in str(item.path).replace("\\", "/") and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(20))


def get_token(server: RunningServer) -> str:
    """Exchange the demo credentials for a bearer token."""
    resp = requests.post(
        f"{server.base_url}/auth/token",
        json={"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET, "grant_type": "client_credentials"},
        timeout=5,
    )
    resp.raise_for_status()
    token: str = resp.json()["access_token"]
    return token


def authed_session(server: RunningServer) -> requests.Session:
    """A session that sends a valid bearer token."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {get_token(server)}"
    return session


@pytest.fixture
def api(sandbox: RunningServer) -> Iterator[requests.Session]:
    """Authenticated session against the default ``sandbox`` fixture."""
    session = authed_session(sandbox)
    yield session
    session.close()
