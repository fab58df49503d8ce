"""Churn between list requests (``churn_creates``/``churn_deletes``) and a lagging ``meta.total``
(``count_lag``), as a plain HTTP client sees them."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from rackwave_sandbox import RunningServer, SandboxConfig
from rackwave_sandbox.__main__ import build_parser, main
from rackwave_sandbox.data import parse_ts, ulid_time_ms

from .conftest import authed_session


def _list(api: requests.Session, server: RunningServer, path: str = "/leads", **params: Any) -> dict[str, Any]:
    resp = api.get(f"{server.base_url}{path}", params=params, timeout=5)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _ids(body: dict[str, Any]) -> list[str]:
    return [r["id"] for r in body["data"]]


def _deleted_in_order(server: RunningServer, requests_made: int, **params: Any) -> list[str]:
    """Make list requests one by one and return the ids that vanished, in the order they went."""
    gone: list[str] = []
    with authed_session(server) as api:
        before = server.admin.ids("leads")
        for _ in range(requests_made):
            _list(api, server, per_page=1, **params)
            after = server.admin.ids("leads")
            kept = set(after)
            gone.extend(rid for rid in before if rid not in kept)
            before = after
    return gone


def test_creates_grow_the_total_and_come_first(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=100, contacts=10, churn_creates=2)
    order = server.admin.ids("leads")  # the admin API does not churn
    started = time.time()
    with authed_session(server) as api:
        for k in range(1, 8):
            body = _list(api, server, per_page=10)
            page = _ids(body)
            assert body["meta"]["total"] == 100 + 2 * k
            assert body["meta"]["last_page"] == -(-(100 + 2 * k) // 10)
            fresh = page[:2]
            assert not set(fresh) & set(order)
            order = fresh + order  # the new records are on top of everything, older churn included
            assert page == order[:10]
    assert server.admin.ids("leads") == order
    assert len(server.admin.ids("contacts")) == 10  # only the listed collection churns
    record = server.admin.get("leads", order[0])
    assert record["id"].startswith("lead_") and record["email"]
    created = parse_ts(record["created_at"])
    assert int(started) <= created <= time.time()
    assert ulid_time_ms(record["id"][5:]) // 1000 == created
    assert server.admin.stats()["churn"] == {"leads": {"created": 14, "deleted": 0}}


def test_records_created_in_one_millisecond_keep_creation_order(sandbox: RunningServer) -> None:
    # 200 records in one admin call share milliseconds; ids made "now" step past the newest one,
    # so the newest-first order is the reverse of the creation order (as it is for churn batches).
    created = sandbox.admin.insert("leads", count=200)
    assert sandbox.admin.ids("leads")[:200] == [r["id"] for r in reversed(created)]
    contacts = sandbox.admin.insert("contacts", count=50)
    assert sandbox.admin.ids("contacts")[:50] == [r["id"] for r in reversed(contacts)]


def test_deletes_shrink_the_total_at_every_position(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=1000, contacts=10, churn_deletes=3)
    before = server.admin.ids("leads")
    with authed_session(server) as api:
        totals = [_list(api, server, per_page=1)["meta"]["total"] for _ in range(49)]
        last = _list(api, server, per_page=100)
    assert totals == [1000 - 3 * k for k in range(1, 50)]
    assert last["meta"]["total"] == 850
    after = server.admin.ids("leads")
    assert _ids(last) == after[:100]  # the page was computed after this request's deletions
    assert len(after) == 850 and set(after) <= set(before)
    positions = sorted(before.index(rid) for rid in set(before) - set(after))
    assert len(positions) == 150
    for quarter in range(4):  # uniform over the whole list, not only its top or bottom
        assert any(quarter * 250 <= p < (quarter + 1) * 250 for p in positions), quarter
    assert server.admin.stats()["churn"] == {"leads": {"created": 0, "deleted": 150}}


def test_balanced_churn_keeps_the_total_flat_while_ids_change(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=300, contacts=10, churn_creates=2, churn_deletes=2)
    before = server.admin.ids("leads")
    with authed_session(server) as api:
        bodies = [_list(api, server, page=1 + k % 3, per_page=100) for k in range(30)]
    assert {b["meta"]["total"] for b in bodies} == {300}
    assert {b["meta"]["last_page"] for b in bodies} == {3}
    assert _ids(bodies[0]) != _ids(bodies[27])  # same page, different records
    after = server.admin.ids("leads")
    assert len(after) == 300 and after != before
    assert len(set(after) - set(before)) > 0 and len(set(before) - set(after)) > 0
    assert server.admin.stats()["churn"] == {"leads": {"created": 60, "deleted": 60}}


def test_balanced_churn_is_atomic_under_concurrent_requests(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=500, contacts=10, churn_creates=3, churn_deletes=3)
    totals: list[int] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            with authed_session(server) as api:
                for k in range(25):
                    totals.append(_list(api, server, page=1 + k % 5, per_page=100)["meta"]["total"])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(totals) == 100 and set(totals) == {500}  # nobody saw a half-churned collection
    assert server.admin.stats()["churn"] == {"leads": {"created": 300, "deleted": 300}}


def test_fractional_rates_average_out_and_replay(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    first = sandbox_factory(leads=400, contacts=10, seed=7, churn_deletes=0.5)
    with authed_session(first) as api:
        totals = [_list(api, first, per_page=1)["meta"]["total"] for _ in range(200)]
    steps = [a - b for a, b in zip([400, *totals], totals)]
    assert set(steps) == {0, 1}
    deleted = 400 - totals[-1]
    assert 70 <= deleted <= 130  # binomial(200, 0.5)
    assert first.admin.stats()["churn"] == {"leads": {"created": 0, "deleted": deleted}}

    # Same seed, same requests: the same records go, in the same order; reset replays it too.
    replay = _deleted_in_order(sandbox_factory(leads=400, contacts=10, seed=7, churn_deletes=0.5), 60)
    again = sandbox_factory(leads=400, contacts=10, seed=7, churn_deletes=0.5)
    assert _deleted_in_order(again, 60) == replay
    again.admin.reset()
    assert again.admin.stats()["churn"] == {}
    assert _deleted_in_order(again, 60) == replay
    other = sandbox_factory(leads=400, contacts=10, seed=8, churn_deletes=0.5)
    assert _deleted_in_order(other, 60) != replay


def test_fractional_creates(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=10, contacts=50, churn_creates=1.25)
    with authed_session(server) as api:
        totals = [_list(api, server, "/contacts", per_page=1)["meta"]["total"] for _ in range(200)]
    steps = {a - b for a, b in zip(totals, [50, *totals])}
    assert steps == {1, 2}  # 1.25 -> 1 or 2, never 0
    assert 200 + 30 <= totals[-1] - 50 <= 200 + 70
    assert server.admin.stats()["churn"] == {"contacts": {"created": totals[-1] - 50, "deleted": 0}}
    assert all(rid.startswith("contact_") for rid in server.admin.ids("contacts")[:10])


def test_count_lag_hides_the_last_page(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=201, contacts=10, count_lag=1)
    oldest = server.admin.ids("leads")[-1]
    with authed_session(server) as api:
        pages = [_list(api, server, page=n, per_page=100) for n in (1, 2, 3)]
        assert [len(p["data"]) for p in pages] == [100, 100, 1]
        assert _ids(pages[2]) == [oldest]  # there, but a client trusting last_page never asks
        for n, body in enumerate(pages, start=1):
            assert body["meta"] == {"total": 200, "per_page": 100, "current_page": n, "last_page": 2}

        server.admin.delete("leads", oldest)  # 200 real records: total 199, data intact
        body = _list(api, server, page=2, per_page=100)
        assert body["meta"]["total"] == 199 and body["meta"]["last_page"] == 2 and len(body["data"]) == 100

        new = sum(1 for r in server.admin.records("leads") if r["status"] == "new")
        filtered = _list(api, server, status="new", per_page=100)
        assert filtered["meta"]["total"] == new - 1 and len(filtered["data"]) == min(new, 100)

        server.admin.configure(count_lag=1000)  # never below zero; data still served
        body = _list(api, server, per_page=100)
        assert body["meta"]["total"] == 0 and body["meta"]["last_page"] == 1 and len(body["data"]) == 100
        server.admin.configure(count_lag=0)
        assert _list(api, server, per_page=100)["meta"]["total"] == 200
    assert server.admin.stats()["churn"] == {}  # count_lag alone changes no data


def test_settings_change_at_runtime(sandbox: RunningServer) -> None:
    settings = sandbox.admin.configure(churn_creates=1)
    assert settings["churn_creates"] == 1.0 and settings["churn_deletes"] == 0.0 and settings["count_lag"] == 0
    with authed_session(sandbox) as api:
        assert _list(api, sandbox)["meta"]["total"] == 251
        assert _list(api, sandbox)["meta"]["total"] == 252
        sandbox.admin.configure(churn_creates=0, churn_deletes=2, count_lag=3)
        assert _list(api, sandbox)["meta"]["total"] == 250 - 3
        sandbox.admin.configure(churn_deletes=0, count_lag=0)
        assert _list(api, sandbox)["meta"]["total"] == 250
        assert _list(api, sandbox)["meta"]["total"] == 250
    assert sandbox.admin.configure() == {**settings, "churn_creates": 0.0}


@pytest.mark.parametrize(
    "settings",
    [
        {"churn_creates": -1},
        {"churn_deletes": -0.5},
        {"churn_creates": "lots"},
        {"churn_creates": None},
        {"churn_deletes": 1e9},
        {"count_lag": 1.5},
        {"count_lag": "3"},
        {"count_lag": -1},
        {"count_lag": True},
        {"count_lag": None},
        {"churn_on_filtered": "yes"},
        {"churn_creates": 3, "count_lag": -1},  # all or nothing
        {"count_lag_jitter": -1},
        {"count_lag_jitter": 1.5},
        {"count_lag_jitter": "2"},
        {"count_lag_jitter": True},
        {"count_lag_jitter": None},
    ],
)
def test_invalid_settings_are_rejected(sandbox: RunningServer, settings: dict[str, Any]) -> None:
    before = sandbox.admin.configure(churn_creates=0.5)
    resp = requests.post(f"{sandbox.root_url}/_admin/config", json=settings, timeout=5)
    assert resp.status_code == 422 and resp.json()["message"]
    assert sandbox.admin.configure() == before


def test_invalid_settings_are_rejected_at_construction_and_on_the_command_line() -> None:
    for bad in ({"churn_creates": -1.0}, {"churn_deletes": float("nan")}, {"churn_creates": float("inf")},
                {"count_lag": -1}, {"count_lag": 2.0}, {"churn_on_filtered": 1},
                {"count_lag_jitter": -1}, {"count_lag_jitter": 0.5}):
        with pytest.raises(ValueError):
            SandboxConfig(**bad)
    args = build_parser().parse_args(["--churn-creates", "2.5", "--churn-deletes", "2.5", "--count-lag", "4",
                                      "--no-churn-on-filtered"])
    assert (args.churn_creates, args.churn_deletes, args.count_lag, args.churn_on_filtered) == (2.5, 2.5, 4, False)
    assert build_parser().parse_args([]).churn_on_filtered is True
    assert main(["--port", "0", "--churn-deletes", "-1"]) == 2
    assert main(["--port", "0", "--count-lag", "-1"]) == 2


def test_churn_on_filtered_requests(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=100, contacts=10, churn_creates=1, churn_on_filtered=False)
    with authed_session(server) as api:
        _list(api, server, status="new")
        _list(api, server, search="example")
        assert len(server.admin.ids("leads")) == 100  # filtered lists leave the data alone
        _list(api, server)
        assert len(server.admin.ids("leads")) == 101
        server.admin.configure(churn_on_filtered=True)
        _list(api, server, search="example")
        body = _list(api, server, status="new")
        assert len(server.admin.ids("leads")) == 103
        new = [r["id"] for r in server.admin.records("leads") if r["status"] == "new"]
        assert _ids(body) == new[:20]  # filtered page computed after the churn, cache invalidated
    assert server.admin.stats()["churn"] == {"leads": {"created": 3, "deleted": 0}}


def test_refused_requests_do_not_churn_and_counters_reset(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=50, contacts=20, churn_creates=2, churn_deletes=1)
    assert requests.get(f"{server.base_url}/leads", timeout=5).status_code == 401
    with authed_session(server) as api:
        assert api.get(f"{server.base_url}/leads", params={"per_page": 0}, timeout=5).status_code == 422
        server.admin.add_faults([{"kind": "500", "path": "/v1/leads"}])
        assert api.get(f"{server.base_url}/leads", timeout=5).status_code == 500
        assert len(server.admin.ids("leads")) == 50 and server.admin.stats()["churn"] == {}
        assert _list(api, server)["meta"]["total"] == 51
        assert _list(api, server, "/contacts")["meta"]["total"] == 21
        assert _list(api, server, "/contacts")["meta"]["total"] == 22
        assert server.admin.stats()["churn"] == {"leads": {"created": 2, "deleted": 1},
                                                 "contacts": {"created": 4, "deleted": 2}}
        server.admin.reset_stats()
        assert server.admin.stats()["churn"] == {}
        _list(api, server)
        assert server.admin.stats()["churn"] == {"leads": {"created": 2, "deleted": 1}}
    server.admin.reset()
    assert server.admin.stats()["churn"] == {}
    assert server.admin.configure()["churn_creates"] == 2.0  # reset keeps the settings, like error_rate


def test_count_lag_jitter_varies_the_total_from_a_seed(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    """``count_lag_jitter`` (0, off, by default): each page's total trails by ``count_lag`` plus
    0..jitter, drawn from the seed (the same after a reset); the data is untouched."""
    server = sandbox_factory(leads=200, contacts=10)
    with authed_session(server) as api:
        assert {_list(api, server)["meta"]["total"] for _ in range(5)} == {200}
        server.admin.configure(count_lag=1, count_lag_jitter=3)
        totals = [_list(api, server, per_page=100)["meta"] for _ in range(40)]
        assert {m["total"] for m in totals} == {196, 197, 198, 199}
        assert all(m["last_page"] == 2 for m in totals)
        assert len(_list(api, server, page=2, per_page=100)["data"]) == 100
        server.admin.reset()
        server.admin.configure(count_lag=1, count_lag_jitter=3)
    with authed_session(server) as api:  # the reset revoked the token
        again = [_list(api, server, per_page=100)["meta"] for _ in range(40)]
        assert [m["total"] for m in again] == [m["total"] for m in totals]
        server.admin.configure(count_lag=0, count_lag_jitter=0)
        assert _list(api, server)["meta"]["total"] == 200
