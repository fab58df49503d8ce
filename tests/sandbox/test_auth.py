"""Token exchange, expiry, revocation and the 401 variants."""

from __future__ import annotations

import time

import requests

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, RunningServer
from rackwave_sandbox.config import (
    MSG_BAD_CREDENTIALS,
    MSG_TOKEN_EXPIRED,
    MSG_TOKEN_INVALID,
    MSG_UNAUTHENTICATED,
)

from .conftest import get_token

GOOD = {"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET, "grant_type": "client_credentials"}


def _token(server: RunningServer, **kwargs: object) -> requests.Response:
    return requests.post(f"{server.base_url}/auth/token", timeout=5, **kwargs)  # type: ignore[arg-type]


def test_good_credentials_return_a_bearer_token(sandbox: RunningServer) -> None:
    resp = _token(sandbox, json=GOOD)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == "read write"
    assert len(body["access_token"]) >= 32
    assert body["access_token"] != get_token(sandbox)  # opaque and random


def test_wrong_credentials_are_401(sandbox: RunningServer) -> None:
    for body in ({**GOOD, "client_secret": "nope"}, {**GOOD, "client_id": "rw_live_x"}):
        resp = _token(sandbox, json=body)
        assert resp.status_code == 401
        assert resp.json() == {"message": MSG_BAD_CREDENTIALS}


def test_form_encoded_and_non_json_bodies_are_400(sandbox: RunningServer) -> None:
    for kwargs in ({"data": GOOD}, {"data": "not json"}, {"json": ["a", "list"]}, {}):
        resp = _token(sandbox, **kwargs)
        assert resp.status_code == 400, kwargs
        assert isinstance(resp.json()["message"], str)


def test_missing_fields_are_422_with_errors(sandbox: RunningServer) -> None:
    resp = _token(sandbox, json={"client_id": DEMO_CLIENT_ID})
    assert resp.status_code == 422
    body = resp.json()
    assert body["message"] == "The given data was invalid."
    assert body["errors"] == {
        "client_secret": ["The client secret field is required."],
        "grant_type": ["The grant type field is required."],
    }


def test_other_grant_types_are_400(sandbox: RunningServer) -> None:
    resp = _token(sandbox, json={**GOOD, "grant_type": "password"})
    assert resp.status_code == 400
    assert "grant" in resp.json()["message"].lower()


def test_token_expires_after_ttl(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=5, contacts=0, token_ttl=0.5)
    resp = _token(server, json=GOOD)
    assert resp.json()["expires_in"] == 0.5
    headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}
    assert requests.get(f"{server.base_url}/leads", headers=headers, timeout=5).status_code == 200
    time.sleep(0.6)
    expired = requests.get(f"{server.base_url}/leads", headers=headers, timeout=5)
    assert expired.status_code == 401
    assert expired.json() == {"message": MSG_TOKEN_EXPIRED}


def test_token_ttl_can_be_changed_at_runtime(sandbox: RunningServer) -> None:
    assert sandbox.admin.configure(token_ttl=2)["token_ttl"] == 2
    assert _token(sandbox, json=GOOD).json()["expires_in"] == 2


def test_revoked_tokens_become_invalid(sandbox: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {get_token(sandbox)}"}
    assert requests.get(f"{sandbox.base_url}/leads", headers=headers, timeout=5).status_code == 200
    sandbox.admin.revoke_tokens()
    resp = requests.get(f"{sandbox.base_url}/leads", headers=headers, timeout=5)
    assert resp.status_code == 401 and resp.json() == {"message": MSG_TOKEN_INVALID}


def test_401_variants_on_every_endpoint(sandbox: RunningServer) -> None:
    cases = [
        ({}, MSG_UNAUTHENTICATED),
        ({"Authorization": ""}, MSG_UNAUTHENTICATED),
        ({"Authorization": "Bearer "}, MSG_UNAUTHENTICATED),
        ({"Authorization": "Bearer not-a-token"}, MSG_TOKEN_INVALID),
        ({"Authorization": "Basic abc"}, MSG_TOKEN_INVALID),
    ]
    for method, path in (("GET", "/leads"), ("POST", "/leads"), ("GET", "/contacts")):
        for headers, message in cases:
            resp = requests.request(method, f"{sandbox.base_url}{path}", headers=headers, json={}, timeout=5)
            assert resp.status_code == 401, (method, path, headers)
            assert resp.json() == {"message": message}
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
