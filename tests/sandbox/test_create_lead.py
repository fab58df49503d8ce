"""POST /v1/leads: every validation rule and the 201 answer."""

from __future__ import annotations

import re
import time

import pytest
import requests

from rackwave_sandbox import RunningServer
from rackwave_sandbox.data import ulid_time_ms
from rackwave_sandbox.data import parse_ts

VALID = {"name": "Jane Smith", "email": "jane.new@company.com"}


def _post(api: requests.Session, server: RunningServer, body: object) -> requests.Response:
    return api.post(f"{server.base_url}/leads", json=body, timeout=5)


def test_minimal_lead_is_created_with_defaults(api: requests.Session, sandbox: RunningServer) -> None:
    before = int(time.time())
    resp = _post(api, sandbox, VALID)
    assert resp.status_code == 201
    lead = resp.json()["data"]
    assert list(lead) == ["id", "name", "email", "phone", "company", "status", "source", "tags", "score",
                          "created_at", "updated_at"]
    assert re.fullmatch(r"lead_[0-9A-HJKMNP-TV-Z]{26}", lead["id"])
    assert lead["status"] == "new" and lead["source"] == "api" and lead["tags"] == []
    assert lead["phone"] is None and lead["company"] is None
    assert lead["created_at"] == lead["updated_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lead["created_at"])
    assert before <= parse_ts(lead["created_at"]) <= int(time.time())
    assert ulid_time_ms(lead["id"][5:]) // 1000 == parse_ts(lead["created_at"])
    first = api.get(f"{sandbox.base_url}/leads", params={"per_page": 1}, timeout=5).json()
    assert first["data"] == [lead] and first["meta"]["total"] == 251


def test_full_lead_is_stored_as_given(api: requests.Session, sandbox: RunningServer) -> None:
    body = {**VALID, "phone": "+447700900000", "company": "Acme Corp", "source": "referral",
            "status": "qualified", "tags": ["enterprise", "uk"]}
    lead = _post(api, sandbox, body).json()["data"]
    assert {k: lead[k] for k in body} == body


@pytest.mark.parametrize(
    "body,errors",
    [
        ({}, {"name": ["The name field is required."], "email": ["The email field is required."]}),
        ({"email": "a@b.co"}, {"name": ["The name field is required."]}),
        ({"name": "  ", "email": "a@b.co"}, {"name": ["The name field is required."]}),
        ({"name": 5, "email": "a@b.co"}, {"name": ["The name field must be a string."]}),
        ({"name": "x" * 256, "email": "a@b.co"}, {"name": ["The name field must not be greater than 255 characters."]}),
        ({"name": "A"}, {"email": ["The email field is required."]}),
        ({"name": "A", "email": "not-an-email"}, {"email": ["The email field must be a valid email address."]}),
        ({**VALID, "phone": "+44 7700 900000"}, {"phone": ["The phone field format is invalid."]}),
        ({**VALID, "phone": "07700900000"}, {"phone": ["The phone field format is invalid."]}),
        ({**VALID, "phone": "+0123"}, {"phone": ["The phone field format is invalid."]}),
        ({**VALID, "phone": "+1234567890123456"}, {"phone": ["The phone field format is invalid."]}),
        ({**VALID, "company": 3}, {"company": ["The company field must be a string."]}),
        ({**VALID, "source": "cold-call"}, {"source": ["The selected source is invalid."]}),
        ({**VALID, "status": "open"}, {"status": ["The selected status is invalid."]}),
        ({**VALID, "tags": "vip"}, {"tags": ["The tags field must be an array."]}),
        ({**VALID, "tags": ["ok", 1]}, {"tags.1": ["The tags.1 field must be a string."]}),
    ],
)
def test_validation_rules(api: requests.Session, sandbox: RunningServer, body: dict, errors: dict) -> None:
    resp = _post(api, sandbox, body)
    assert resp.status_code == 422
    assert resp.json() == {"message": "The given data was invalid.", "errors": errors}
    assert sandbox.admin.stats()["statuses"]["POST /v1/leads"] == {"422": 1}


def test_email_must_be_unique_case_insensitively(api: requests.Session, sandbox: RunningServer) -> None:
    existing = sandbox.admin.records("leads")[17]["email"]
    resp = _post(api, sandbox, {"name": "Dup", "email": existing.upper()})
    assert resp.status_code == 422
    assert resp.json()["errors"] == {"email": ["The email has already been taken."]}
    assert _post(api, sandbox, VALID).status_code == 201
    assert _post(api, sandbox, {**VALID, "email": VALID["email"].title()}).status_code == 422


def test_non_json_body_is_400(api: requests.Session, sandbox: RunningServer) -> None:
    resp = api.post(f"{sandbox.base_url}/leads", data="name=x", timeout=5)
    assert resp.status_code == 400 and "message" in resp.json()
