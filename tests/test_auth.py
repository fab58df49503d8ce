"""The token exchange: good and wrong credentials, expiry and revocation mid-run, threads."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from rackwave_source import AuthenticationError
from rackwave_source.api.client import RackwaveClient
from support import sandbox_ids

TOKEN = "POST /v1/auth/token"


def test_good_credentials_take_one_token_for_the_whole_run(sandbox, loader):
    loader.run()

    assert sandbox.admin.requests(TOKEN) == 1
    assert loader.ids("leads") == sandbox_ids(sandbox, "leads")


def test_wrong_credentials_fail_before_loading_and_name_the_url(sandbox, make_loader):
    loader = make_loader(sandbox)
    loader.client_secret = "sk_wrong_secret_value"

    with pytest.raises(AuthenticationError) as raised:
        loader.run()

    text = str(raised.value)
    assert f"credentials were rejected by {sandbox.base_url}" in text
    assert "sk_wrong_secret_value" not in text and DEMO_CLIENT_ID not in text
    assert sandbox.admin.requests("GET /v1/leads") == 0
    assert not loader.duckdb_path.exists() or loader.query(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'leads'") == [(0,)]


def test_token_expiring_mid_run_is_renewed_ahead_of_expiry(sandbox_factory, make_loader):
    # 2 s tokens, 200 pages at 60 ms, 4 at a time: the run outlives several tokens, and the
    # workers renew them together.
    server = sandbox_factory(leads=2_000, contacts=0, token_ttl=2, latency_ms=60)
    loader = make_loader(server, per_page=10, concurrency=4)

    loader.run(resources=["leads"])

    stats = server.admin.stats()
    assert stats["requests"][TOKEN] >= 2
    assert "401" not in stats["statuses"]["GET /v1/leads"]
    assert loader.ids("leads") == sandbox_ids(server, "leads")


def test_tokens_revoked_mid_run_are_renewed_once_and_the_request_retried(
    sandbox_factory, make_loader
):
    server = sandbox_factory(leads=1_500, contacts=0, latency_ms=30)
    loader = make_loader(server, per_page=50, concurrency=1)
    stop = threading.Event()

    def revoke_after_a_few_pages() -> None:
        while not stop.is_set():
            if server.admin.requests("GET /v1/leads") >= 5:
                server.admin.revoke_tokens()
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=revoke_after_a_few_pages)
    watcher.start()
    try:
        loader.run(resources=["leads"])
    finally:
        stop.set()
        watcher.join()

    stats = server.admin.stats()
    assert stats["statuses"]["GET /v1/leads"].get("401") == 1
    assert stats["requests"][TOKEN] == 2
    assert loader.ids("leads") == sandbox_ids(server, "leads")


def test_threads_sharing_a_client_exchange_one_token(sandbox):
    client = RackwaveClient(sandbox.base_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)

    with ThreadPoolExecutor(max_workers=8) as pool:
        pages = list(pool.map(lambda n: client.get("/leads", {"page": n, "per_page": 10}),
                              range(1, 17)))

    assert sandbox.admin.requests(TOKEN) == 1
    assert [p["meta"]["current_page"] for p in pages] == list(range(1, 17))


def test_a_token_refused_even_after_renewal_is_a_clear_error(sandbox, loader):
    sandbox.admin.add_faults([{"kind": "401", "count": 2, "path": "/v1/leads",
                               "message": "Unauthenticated."}])

    with pytest.raises(AuthenticationError) as raised:
        loader.run(resources=["leads"])

    assert "refused a freshly issued access token (HTTP 401)" in str(raised.value)
    assert sandbox.admin.requests(TOKEN) == 2  # renewed exactly once
    assert sandbox.admin.requests("GET /v1/leads") == 2
