"""Concurrent full scans and the shared rate budget: every row once, the API's limits honoured.

Speed itself is measured by benchmarks/, never here; these tests check what concurrency must not
break.
"""

from __future__ import annotations

import json
import math

import pytest

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from rackwave_source.api.client import RackwaveClient
from rackwave_source.api.decode import PageReader
from rackwave_source.schema import LEAD_COLUMNS
from rackwave_source.settings import LEADS_PATH
from support import page_requests, pages_for, sandbox_ids


def test_concurrent_full_scan_requests_each_page_once_and_loads_each_row_once(
    sandbox_factory, make_loader
):
    server = sandbox_factory(leads=2_345, contacts=0, latency_ms=5)
    loader = make_loader(server, concurrency=6)

    loader.run(resources=["leads"])

    # every page once, and page 1 again at the end (what was created meanwhile)
    assert sorted(server.admin.stats()["pages"]["GET /v1/leads"]) == [1] + list(range(1, 25))
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
    assert statuses["200"] == pages_for(1_500, per_page=25)
    assert statuses.get("429", 0) <= 8
    assert loader.last_run("leads", result)["rate_limited"] == statuses.get("429", 0)
    assert loader.ids("leads") == sandbox_ids(server, "leads")


def test_a_known_quota_avoids_429_entirely(sandbox_factory, make_loader):
    server = sandbox_factory(leads=600, contacts=0, rate_limit=20, rate_burst=2)
    loader = make_loader(server, per_page=25, concurrency=8, max_requests_per_second=15)

    loader.run(resources=["leads"])

    assert "429" not in server.admin.stats()["statuses"]["GET /v1/leads"]
    assert loader.ids("leads") == sandbox_ids(server, "leads")


def test_pages_read_together_equal_pages_read_one_by_one(sandbox_factory):
    # A full scan's worker decodes several pages in one read; whatever the bodies look like, that
    # must give exactly what reading each page alone gives. One body here is pretty-printed (line
    # breaks, as some APIs send) and one carries an undocumented field, so the joint read falls
    # back to page by page for one group and not for the other.
    server = sandbox_factory(leads=450, contacts=0)
    client = RackwaveClient(server.base_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    reader = PageReader("leads", LEAD_COLUMNS)
    bodies = [client.get(LEADS_PATH, {"page": n, "per_page": 50}, decode=bytes)
              for n in range(1, 10)]
    pretty = json.loads(bodies[6])
    pretty["data"][3]["lead_score"] = 7
    bodies[6] = json.dumps(pretty, indent=2).encode()
    url = server.base_url + LEADS_PATH

    alone = [reader.page(url, n, reader.decode(b)) for n, b in zip(range(1, 10), bodies)]
    together = (reader.pages(url, range(1, 6), bodies[:5])
                + reader.pages(url, range(6, 10), bodies[5:]))

    assert [p.number for p in together] == list(range(1, 10))
    for one, joint in zip(alone, together):
        assert (joint.total, joint.last_page) == (one.total, one.last_page)
        assert joint.records.select(one.records.column_names).to_pylist() == one.records.to_pylist()
        assert joint.ids == one.ids and joint.created_us == one.created_us
    assert together[6].records.column("lead_score").to_pylist()[3] == 7
    assert sum(p.records.num_rows for p in together) == 450


def test_a_cut_short_body_in_a_joint_read_is_fetched_again(sandbox_factory, make_loader):
    server = sandbox_factory(leads=3_000, contacts=0)
    loader = make_loader(server, concurrency=2)
    server.admin.add_faults([{"kind": "truncate_json", "path": "/v1/leads", "page": 7}])

    loader.run(resources=["leads"])

    pages = server.admin.stats()["pages"]["GET /v1/leads"]
    # page 7 twice; 31 is empty (30 was full), page 1 again at the end
    assert sorted(pages) == [1, 1, 2, 3, 4, 5, 6, 7, 7, 8, 9, 10] + list(range(11, 32))
    assert loader.ids("leads") == sandbox_ids(server, "leads")
