"""404/405, rate limiting, latency and request counters."""

from __future__ import annotations

import threading
import time

import requests

from rackwave_sandbox import RunningServer

from .conftest import authed_session, get_token


def test_unknown_paths_are_404_json(api: requests.Session, sandbox: RunningServer) -> None:
    for url in (f"{sandbox.base_url}/deals", f"{sandbox.base_url}/leads/", f"{sandbox.root_url}/nothing",
                f"{sandbox.root_url}/_admin/nope"):
        resp = api.get(url, timeout=5)
        assert resp.status_code == 404, url
        assert resp.json() == {"message": "Not Found."}


def test_wrong_method_is_405_json(api: requests.Session, sandbox: RunningServer) -> None:
    for method, path in (("DELETE", "/leads"), ("POST", "/contacts"), ("GET", "/auth/token"), ("PUT", "/leads")):
        resp = api.request(method, f"{sandbox.base_url}{path}", timeout=5)
        assert resp.status_code == 405
        assert resp.json() == {"message": "Method Not Allowed."}
        assert resp.headers["Allow"]


def test_rate_limit_answers_429_with_retry_after(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=10, contacts=0, rate_limit=0.5, rate_burst=3)
    session = authed_session(server)  # the token request takes one slot
    statuses = [session.get(f"{server.base_url}/leads", timeout=5).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    resp = session.get(f"{server.base_url}/leads", timeout=5)
    assert resp.status_code == 429
    assert resp.json() == {"message": "Too Many Attempts."}
    assert resp.headers["Retry-After"] == "2"  # 1 token at 0.5/s, rounded up
    assert server.admin.stats()["statuses"]["GET /v1/leads"] == {"200": 2, "429": 3}


def test_rate_limit_refills(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=10, contacts=0)
    session = authed_session(server)
    server.admin.configure(rate_limit=10)  # burst defaults to ceil(10)
    codes = [session.get(f"{server.base_url}/leads", timeout=5).status_code for _ in range(12)]
    assert codes.count(200) >= 10 and codes[-1] == 429
    assert session.get(f"{server.base_url}/leads", timeout=5).headers["Retry-After"] == "1"
    time.sleep(0.25)
    assert session.get(f"{server.base_url}/leads", timeout=5).status_code == 200
    server.admin.configure(rate_limit=None)
    assert all(session.get(f"{server.base_url}/leads", timeout=5).status_code == 200 for _ in range(20))


def test_latency_does_not_block_other_requests(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=10, contacts=0, latency_ms=300)
    token = get_token(server)
    results: list[int] = []

    def fetch() -> None:
        resp = requests.get(f"{server.base_url}/leads", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        results.append(resp.status_code)

    started = time.perf_counter()
    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    assert results == [200] * 8
    assert 0.3 <= elapsed < 1.8  # in parallel, not 8 x 300 ms (2.4 s), even on a busy machine
    started = time.perf_counter()
    server.admin.stats()  # admin is never delayed
    assert time.perf_counter() - started < 0.25  # admin is never delayed: well under 300 ms


def test_request_counters(api: requests.Session, sandbox: RunningServer) -> None:
    sandbox.admin.reset_stats()
    for page in (1, 2, 3, 2):
        api.get(f"{sandbox.base_url}/leads", params={"page": page}, timeout=5)
    api.get(f"{sandbox.base_url}/contacts", timeout=5)
    api.get(f"{sandbox.base_url}/leads", params={"per_page": 0}, timeout=5)
    api.get(f"{sandbox.base_url}/deals", timeout=5)
    requests.get(f"{sandbox.base_url}/leads", timeout=5)
    stats = sandbox.admin.stats()
    assert stats["requests"] == {"GET /v1/leads": 6, "GET /v1/contacts": 1, "GET /v1/deals": 1}
    assert stats["statuses"]["GET /v1/leads"] == {"200": 4, "422": 1, "401": 1}
    assert stats["pages"]["GET /v1/leads"] == [1, 2, 3, 2, 1, 1]
    assert stats["pages"]["GET /v1/contacts"] == [1]
    assert stats["total"] == 8
    assert sandbox.admin.requests("GET /v1/leads") == 6
    assert sandbox.admin.requests("POST /v1/auth/token") == 0
    sandbox.admin.reset_stats()
    assert sandbox.admin.stats() == {"requests": {}, "statuses": {}, "pages": {}, "churn": {}, "total": 0}
