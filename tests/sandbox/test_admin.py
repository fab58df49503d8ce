"""Admin CRUD, triggers between pages, config and reset."""

from __future__ import annotations

import pytest
import requests

from rackwave_sandbox import AdminError, RunningServer
from rackwave_sandbox.data import parse_ts, ulid_time_ms


def _page(api: requests.Session, server: RunningServer, page: int, per_page: int = 10) -> list[str]:
    body = api.get(f"{server.base_url}/leads", params={"page": page, "per_page": per_page}, timeout=5).json()
    return [r["id"] for r in body["data"]]


def test_insert_generated_and_given_records(api: requests.Session, sandbox: RunningServer) -> None:
    created = sandbox.admin.insert("leads", count=3)
    assert len(created) == 3
    assert _page(api, sandbox, 1, 3) == sorted((r["id"] for r in created), reverse=True)
    for record in created:
        assert set(record) >= {"id", "name", "email", "phone", "company", "status", "source", "tags", "score"}
        assert ulid_time_ms(record["id"][5:]) // 1000 == parse_ts(record["created_at"])
    given = sandbox.admin.insert(
        "leads",
        records=[{"name": "Åsa Öberg", "email": "asa@example.se", "created_at": "2025-01-02T03:04:05Z"},
                 {"id": "lead_01J00000000000000000000000", "created_at": "2025-01-02T03:04:05Z",
                  "updated_at": "2025-02-01T00:00:00Z"}],
    )
    assert given[0]["name"] == "Åsa Öberg" and given[0]["created_at"] == "2025-01-02T03:04:05Z"
    assert given[0]["id"].startswith("lead_") and given[0]["updated_at"] == "2025-01-02T03:04:05Z"
    assert given[1]["id"] == "lead_01J00000000000000000000000" and given[1]["updated_at"] == "2025-02-01T00:00:00Z"
    ids = sandbox.admin.ids("leads")
    assert len(ids) == 255 and given[0]["id"] in ids
    dated = sandbox.admin.insert("contacts", count=2, created_at="2024-06-01T00:00:00Z")
    assert all(c["created_at"] == "2024-06-01T00:00:00Z" and c["id"].startswith("contact_") for c in dated)


def test_update_and_delete(api: requests.Session, sandbox: RunningServer) -> None:
    victim, target = sandbox.admin.ids("leads")[5:7]
    updated = sandbox.admin.update("leads", target, status="won", company="New Co")
    assert updated["status"] == "won" and updated["company"] == "New Co"
    assert updated["updated_at"] > updated["created_at"]
    assert sandbox.admin.get("leads", target) == updated
    served = api.get(f"{sandbox.base_url}/leads", params={"per_page": 10}, timeout=5).json()["data"]
    assert updated in served  # the cached JSON was refreshed
    explicit = sandbox.admin.update("leads", target, updated_at="2026-01-01T00:00:00Z")
    assert explicit["updated_at"] == "2026-01-01T00:00:00Z"
    sandbox.admin.delete("leads", victim)
    assert victim not in sandbox.admin.ids("leads")
    with pytest.raises(AdminError, match="404"):
        sandbox.admin.delete("leads", victim)
    with pytest.raises(AdminError, match="404"):
        sandbox.admin.update("contacts", "contact_nope", title="x")
    resp = requests.delete(f"{sandbox.root_url}/_admin/records/leads/nope", timeout=5)
    assert resp.status_code == 404 and "message" in resp.json()


def test_moving_created_at_reorders(api: requests.Session, sandbox: RunningServer) -> None:
    last = sandbox.admin.ids("leads")[-1]
    sandbox.admin.update("leads", last, created_at="2026-06-29T23:59:59Z")
    assert _page(api, sandbox, 1, 1) == [last]


def test_insert_trigger_shifts_the_next_page(api: requests.Session, sandbox: RunningServer) -> None:
    before = sandbox.admin.ids("leads")
    sandbox.admin.add_trigger("/v1/leads", 1, {"insert": {"kind": "leads", "count": 5}})
    page1 = _page(api, sandbox, 1)
    page2 = _page(api, sandbox, 2)
    assert page1 == before[:10]
    assert page2 == before[5:15]  # five new records on top pushed everything down
    assert sandbox.admin.triggers()[0]["fired"] is True
    assert _page(api, sandbox, 3) == before[15:25]  # fires once only


def test_delete_triggers(api: requests.Session, sandbox: RunningServer) -> None:
    before = sandbox.admin.ids("leads")
    sandbox.admin.add_trigger("/v1/leads", 2, {"delete": {"kind": "leads", "count": 3, "position": "newest"}})
    assert _page(api, sandbox, 1) == before[:10]
    assert _page(api, sandbox, 2) == before[10:20]
    assert _page(api, sandbox, 3) == before[23:33]
    sandbox.admin.add_trigger("/v1/leads", 1, {"delete": {"kind": "leads", "ids": before[-2:]}})
    _page(api, sandbox, 1)
    assert sandbox.admin.ids("leads") == before[3:-2]
    sandbox.admin.add_trigger("/v1/leads", 1, {"delete": {"kind": "leads", "count": 2, "position": "oldest"}})
    sandbox.admin.add_trigger("/v1/leads", 1, {"update": {"kind": "leads", "ids": [before[50]], "fields": {"status": "lost"}}})
    _page(api, sandbox, 1)
    assert sandbox.admin.ids("leads") == before[3:-4]
    assert sandbox.admin.get("leads", before[50])["status"] == "lost"
    sandbox.admin.clear_triggers()
    assert sandbox.admin.triggers() == []


def test_trigger_counts_only_successful_matching_requests(api: requests.Session, sandbox: RunningServer) -> None:
    sandbox.admin.add_trigger("/v1/contacts", 1, {"insert": {"kind": "contacts", "count": 1}})
    api.get(f"{sandbox.base_url}/leads", timeout=5)
    api.get(f"{sandbox.base_url}/contacts", params={"per_page": 0}, timeout=5)
    assert len(sandbox.admin.ids("contacts")) == 120
    api.get(f"{sandbox.base_url}/contacts", timeout=5)
    assert len(sandbox.admin.ids("contacts")) == 121


def test_bad_trigger_is_rejected(sandbox: RunningServer) -> None:
    with pytest.raises(AdminError, match="422"):
        sandbox.admin.add_trigger("/v1/leads", 1, {"explode": {"kind": "leads"}})


def test_configure_validates_and_reports(sandbox: RunningServer) -> None:
    settings = sandbox.admin.configure(latency_ms=5, error_rate=0.1)
    assert settings == {"latency_ms": 5.0, "rate_limit": None, "rate_burst": None, "error_rate": 0.1,
                        "drop_rate": 0.0, "token_ttl": 3600.0, "churn_creates": 0.0, "churn_deletes": 0.0,
                        "churn_on_filtered": True, "count_lag": 0, "count_lag_jitter": 0,
                        "page_cap": None}
    with pytest.raises(AdminError, match="422"):
        sandbox.admin.configure(error_rate=2)
    with pytest.raises(AdminError, match="422"):
        sandbox.admin.configure(colour="blue")
    assert sandbox.admin.configure()["error_rate"] == 0.1


def test_reset_regenerates_and_clears(api: requests.Session, sandbox: RunningServer) -> None:
    original = sandbox.admin.records("leads")
    sandbox.admin.insert("leads", count=2)
    sandbox.admin.add_faults([{"kind": "500"}])
    sandbox.admin.add_trigger("/v1/leads", 5, {"insert": {"kind": "leads"}})
    sandbox.admin.reset()
    assert sandbox.admin.records("leads") == original
    assert sandbox.admin.faults() == [] and sandbox.admin.triggers() == []
    assert sandbox.admin.stats()["total"] == 0
    assert api.get(f"{sandbox.base_url}/leads", timeout=5).status_code == 401  # tokens cleared
    sandbox.admin.reset(leads=30, contacts=4, seed=9)
    assert len(sandbox.admin.ids("leads")) == 30 and len(sandbox.admin.ids("contacts")) == 4


def test_stop_frees_the_port(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=1, contacts=1)
    session = requests.Session()
    assert session.get(f"{server.root_url}/_admin/stats", timeout=5).status_code == 200  # keep-alive open
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.root_url}/_admin/stats", timeout=2)
    from rackwave_sandbox import Sandbox, SandboxConfig

    with Sandbox(SandboxConfig(leads=1, contacts=0)).serve(port=server.port) as again:
        assert again.port == server.port
        assert requests.get(f"{again.root_url}/_admin/stats", timeout=5).status_code == 200


def test_a_record_held_at_a_time_is_served_with_a_broken_created_at(
        api: requests.Session, sandbox: RunningServer) -> None:
    """``sort_at`` (off by default): the record sorts at a real time, its ``created_at`` is what
    was given (not a timestamp), and it keeps its place through updates until deleted."""
    ids = sandbox.admin.ids("leads")
    below = sandbox.admin.get("leads", ids[10])
    held = sandbox.admin.insert("leads", records=[{"created_at": "not-a-date"}, {"created_at": None}],
                                sort_at=below["created_at"])
    assert [r["created_at"] for r in held] == ["not-a-date", None]
    assert all(r["updated_at"] == below["created_at"] for r in held)
    order = sandbox.admin.ids("leads")
    assert order.index(ids[10]) - 2 <= min(order.index(r["id"]) for r in held)
    assert max(order.index(r["id"]) for r in held) <= order.index(ids[10]) + 2
    served = [r for p in (1, 2) for r in
              api.get(f"{sandbox.base_url}/leads", params={"page": p, "per_page": 10}, timeout=5).json()["data"]]
    assert {r["id"] for r in held} <= {r["id"] for r in served}
    sandbox.admin.update("leads", held[0]["id"], status="won")
    assert sandbox.admin.ids("leads") == order and sandbox.admin.get("leads", held[0]["id"])["created_at"] == "not-a-date"
    sandbox.admin.delete("leads", held[0]["id"])
    assert held[0]["id"] not in sandbox.admin.ids("leads")
    with pytest.raises(AdminError, match="422"):  # without sort_at the store refuses it, as before
        sandbox.admin.insert("leads", records=[{"created_at": "not-a-date"}])
    for bad in ("yesterday", 12345):
        with pytest.raises(AdminError, match="422"):
            sandbox.admin.insert("leads", count=1, sort_at=bad)  # type: ignore[arg-type]
    assert len(sandbox.admin.ids("leads")) == 251
