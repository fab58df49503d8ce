"""Concurrent full scans and the shared rate budget: every row once, the API's limits honoured.

Speed itself is measured by benchmarks/, never here; these tests check what concurrency must not
break.
"""

from __future__ import annotations

import math

import pytest

from support import page_requests, sandbox_ids


def test_concurrent_full_scan_requests_each_page_once_and_loads_each_row_once(
    sandbox_factory, make_loader
):
    server = sandbox_factory(leads=2_345, contacts=0, latency_ms=5)
    loader = make_loader(server, concurrency=6)

    loader.run(resources=["leads"])

    assert sorted(server.admin.stats()["pages"]["GET /v1/leads"]) == list(range(1, 25))
    assert loader.ids("leads") == sandbox_ids(server, "leads")
    assert loader.query("SELECT COUNT(*) - COUNT(DISTINCT id) FROM rackwave.leads") == [(0,)]


@pytest.mark.parametrize("k", [1, 100, 250])
def test_incremental_run_after_k_new_leads_reads_at_most_k_over_100_plus_one_pages(
    sandbox_factory, make_loader, k
):
    server = sandbox_factory(leads=1_000, contacts=0)
    loader = make_loader(server)
    loader.run(resources=["leads"])
    server.admin.insert("leads", count=k)
    server.admin.reset_stats()

    loader.run(resources=["leads"])

    assert page_requests(server, "leads") <= math.ceil(k / 100) + 1
    assert loader.ids("leads") == sandbox_ids(server, "leads")


def test_rate_limited_api_is_learned_and_every_row_loads(sandbox_factory, make_loader):
    # 20 requests/s (a second's burst), 8 workers: the first 429 teaches the rate. Only the
    # requests already in flight then are refused; the rest are paced under the limit.
    server = sandbox_factory(leads=1_500, contacts=0, rate_limit=20)
    loader = make_loader(server, per_page=25, concurrency=8)

    result = loader.run(resources=["leads"])

    statuses = server.admin.stats()["statuses"]["GET /v1/leads"]
    assert statuses["200"] == 60
    assert statuses.get("429", 0) <= 8
    assert loader.last_run("leads", result)["rate_limited"] == statuses.get("429", 0)
    assert loader.ids("leads") == sandbox_ids(server, "leads")


def test_a_known_quota_avoids_429_entirely(sandbox_factory, make_loader):
    server = sandbox_factory(leads=600, contacts=0, rate_limit=20, rate_burst=2)
    loader = make_loader(server, per_page=25, concurrency=8, max_requests_per_second=15)

    loader.run(resources=["leads"])

    assert "429" not in server.admin.stats()["statuses"]["GET /v1/leads"]
    assert loader.ids("leads") == sandbox_ids(server, "leads")
