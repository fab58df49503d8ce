"""Documented error codes become typed errors with the API's text; transient ones are retried."""

from __future__ import annotations

import pytest

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from rackwave_source import (
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    RackwaveFatalError,
    RackwaveTransientError,
    ServerError,
    ValidationError,
)
from rackwave_source.api.client import RackwaveClient
from support import sandbox_ids


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.01")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_RETRY_DELAY", "0.05")


def client_for(server) -> RackwaveClient:
    return RackwaveClient(server.base_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)


def test_422_carries_the_api_message_and_field_errors(sandbox):
    with pytest.raises(ValidationError) as raised:
        client_for(sandbox).get("/leads", {"per_page": 500})

    error = raised.value
    assert error.status_code == 422
    assert error.errors == {"per_page": ["The per page must be between 1 and 100."]}
    assert str(error) == (
        f"Rackwave API answered 422 for {sandbox.base_url}/leads: The given data was invalid. "
        "per_page: The per page must be between 1 and 100."
    )
    assert isinstance(error, RackwaveFatalError)


def test_404_names_the_url(sandbox):
    with pytest.raises(NotFoundError) as raised:
        client_for(sandbox).get("/deals")
    assert str(raised.value) == f"Rackwave API answered 404 for {sandbox.base_url}/deals: Not Found."


@pytest.mark.parametrize(
    ("status", "error_type", "message"),
    [
        (400, BadRequestError, "The request parameters are invalid."),
        (403, ForbiddenError, "This action is unauthorized."),
    ],
)
def test_400_and_403_raise_typed_errors_during_a_run(sandbox, loader, status, error_type, message):
    sandbox.admin.add_faults(
        [{"kind": str(status), "count": 1, "path": "/v1/leads", "message": message}]
    )

    with pytest.raises(error_type) as raised:
        loader.run(resources=["leads"])

    assert message in str(raised.value)
    assert raised.value.status_code == status
    assert sandbox.admin.requests("GET /v1/leads") == 1  # client errors are not retried


def test_transient_faults_are_retried_and_the_load_is_complete(
    sandbox, loader, fast_retries, monkeypatch
):
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "6")
    sandbox.admin.add_faults([
        {"kind": "500", "count": 2, "path": "/v1/leads"},
        {"kind": "drop", "count": 1, "path": "/v1/contacts"},
        {"kind": "truncate_json", "count": 1, "path": "/v1/leads", "after": 1},
        {"kind": "truncate", "count": 1, "path": "/v1/contacts", "after": 1},
        {"kind": "502_html", "count": 1, "path": "/v1/leads", "after": 2},
    ])

    loader.run()

    assert loader.ids("leads") == sandbox_ids(sandbox, "leads")
    assert loader.ids("contacts") == sandbox_ids(sandbox, "contacts")
    statuses = sandbox.admin.stats()["statuses"]["GET /v1/leads"]
    assert statuses.get("500") == 2 and statuses.get("502") == 1


def test_429_honours_retry_after_and_completes(sandbox, loader):
    sandbox.admin.add_faults([{"kind": "429", "count": 2, "path": "/v1/leads", "retry_after": 1}])

    result = loader.run(resources=["leads"])

    assert loader.ids("leads") == sandbox_ids(sandbox, "leads")
    assert loader.last_run("leads", result)["rate_limited"] == 2
    assert result.seconds >= 2  # two pauses of Retry-After: 1


def test_persistent_5xx_fail_with_a_transient_error_and_no_state(sandbox, loader, fast_retries):
    sandbox.admin.add_faults([{"kind": "500", "count": 50, "path": "/v1/leads"}])

    with pytest.raises(ServerError) as raised:
        loader.run(resources=["leads"])

    text = str(raised.value)
    assert "answered HTTP 500" in text and "after 3 attempts" in text
    assert isinstance(raised.value, RackwaveTransientError)
    assert sandbox.admin.requests("GET /v1/leads") == 3

    sandbox.admin.clear_faults()
    loader.run(resources=["leads"])
    assert loader.ids("leads") == sandbox_ids(sandbox, "leads")
