"""Paging, envelope, ordering, filters and their validation."""

from __future__ import annotations

import math

import pytest
import requests

from rackwave_sandbox import RunningServer
from rackwave_sandbox.config import LEAD_STATUSES

from .conftest import authed_session

INVALID = "The given data was invalid."
PER_PAGE_MSG = {"per_page": ["The per page must be between 1 and 100."]}


def _get(api: requests.Session, server: RunningServer, path: str, **params: object) -> requests.Response:
    return api.get(f"{server.base_url}{path}", params=params, timeout=5)


def _all_pages(api: requests.Session, server: RunningServer, path: str, per_page: int, **params: object) -> list[dict]:
    records: list[dict] = []
    page = 1
    while True:
        body = _get(api, server, path, page=page, per_page=per_page, **params).json()
        records.extend(body["data"])
        if page >= body["meta"]["last_page"]:
            return records
        page += 1


def test_envelope_and_defaults(api: requests.Session, sandbox: RunningServer) -> None:
    resp = _get(api, sandbox, "/leads")
    assert resp.status_code == 200
    body = resp.json()
    assert list(body) == ["data", "meta"]
    assert body["meta"] == {"total": 250, "per_page": 20, "current_page": 1, "last_page": 13}
    assert len(body["data"]) == 20


@pytest.mark.parametrize("path,total", [("/leads", 250), ("/contacts", 120)])
def test_pages_cover_everything_in_api_order(
    api: requests.Session, sandbox: RunningServer, path: str, total: int
) -> None:
    for per_page in (1, 7, 100):
        records = _all_pages(api, sandbox, path, per_page)
        ids = [r["id"] for r in records]
        assert len(ids) == total == len(set(ids))
        assert ids == sandbox.admin.ids(path.strip("/"))
    keys = [(r["created_at"], r["id"]) for r in records]
    assert keys == sorted(keys, reverse=True)  # newest first, ties by id descending


def test_ties_on_created_at_are_ordered_by_id_desc(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=2000, contacts=0)
    records = server.admin.records("leads")
    seconds: dict[str, list[str]] = {}
    for record in records:
        seconds.setdefault(record["created_at"], []).append(record["id"])
    tied = {k: v for k, v in seconds.items() if len(v) > 1}
    assert len(tied) >= 10  # a few percent share their second
    for ids in tied.values():
        assert ids == sorted(ids, reverse=True)


def test_last_page_and_past_the_end(api: requests.Session, sandbox: RunningServer) -> None:
    last = _get(api, sandbox, "/leads", page=3, per_page=100).json()
    assert len(last["data"]) == 50
    assert last["meta"] == {"total": 250, "per_page": 100, "current_page": 3, "last_page": 3}
    past = _get(api, sandbox, "/leads", page=9, per_page=100).json()
    assert past == {"data": [], "meta": {"total": 250, "per_page": 100, "current_page": 9, "last_page": 3}}


def test_every_per_page_from_1_to_100_is_accepted(api: requests.Session, sandbox: RunningServer) -> None:
    for per_page in range(1, 101):
        body = _get(api, sandbox, "/contacts", per_page=per_page).json()
        assert len(body["data"]) == min(per_page, 120)
        assert body["meta"]["last_page"] == math.ceil(120 / per_page)


@pytest.mark.parametrize("value", ["0", "101", "abc", "-1", "1.5", "1e2"])
@pytest.mark.parametrize("path", ["/leads", "/contacts"])
def test_bad_per_page_is_422(api: requests.Session, sandbox: RunningServer, path: str, value: str) -> None:
    resp = _get(api, sandbox, path, per_page=value)
    assert resp.status_code == 422
    assert resp.json() == {"message": INVALID, "errors": PER_PAGE_MSG}


@pytest.mark.parametrize(
    "value,message", [("0", "The page must be at least 1."), ("-3", "The page must be at least 1."),
                      ("abc", "The page must be an integer."), ("2.0", "The page must be an integer.")]
)
def test_bad_page_is_422(api: requests.Session, sandbox: RunningServer, value: str, message: str) -> None:
    resp = _get(api, sandbox, "/leads", page=value)
    assert resp.status_code == 422
    assert resp.json() == {"message": INVALID, "errors": {"page": [message]}}


def test_status_filter(api: requests.Session, sandbox: RunningServer) -> None:
    everything = sandbox.admin.records("leads")
    for status in LEAD_STATUSES:
        records = _all_pages(api, sandbox, "/leads", 100, status=status)
        assert records == [r for r in everything if r["status"] == status]
        assert records


def test_bad_status_is_422(api: requests.Session, sandbox: RunningServer) -> None:
    resp = _get(api, sandbox, "/leads", status="open")
    assert resp.status_code == 422
    assert resp.json() == {"message": INVALID, "errors": {"status": ["The selected status is invalid."]}}


def test_search_is_case_insensitive_across_name_email_company(api: requests.Session, sandbox: RunningServer) -> None:
    everything = sandbox.admin.records("leads")
    for needle in ("SMITH", "example.org", "gmbh", "ø", "O'Brien"):
        expected = [
            r for r in everything
            if any(needle.lower() in (r.get(f) or "").lower() for f in ("name", "email", "company"))
        ]
        assert expected, needle
        assert _all_pages(api, sandbox, "/leads", 100, search=needle) == expected
    combined = _all_pages(api, sandbox, "/leads", 100, search="example", status="won")
    assert combined and all(r["status"] == "won" for r in combined)
    nothing = _get(api, sandbox, "/leads", search="zzzz-no-match").json()
    assert nothing == {"data": [], "meta": {"total": 0, "per_page": 20, "current_page": 1, "last_page": 1}}


def test_contacts_search(api: requests.Session, sandbox: RunningServer) -> None:
    records = _all_pages(api, sandbox, "/contacts", 100, search="müller")
    assert records and all(
        "müller" in " ".join(str(r.get(f) or "") for f in ("first_name", "last_name", "email", "company")).lower()
        for r in records
    )



def test_page_cap_serves_fewer_records_than_asked_and_says_so(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=120, contacts=5, page_cap=50)
    api = authed_session(server)
    body = _get(api, server, "/leads", page=1, per_page=100).json()
    assert len(body["data"]) == 50
    assert body["meta"] == {"total": 120, "per_page": 50, "current_page": 1, "last_page": 3}
    assert len(_get(api, server, "/leads", page=3, per_page=100).json()["data"]) == 20
    small = _get(api, server, "/leads", page=2, per_page=30).json()
    assert small["meta"]["per_page"] == 30 and len(small["data"]) == 30
