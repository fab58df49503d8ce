"""Fault matrix: whatever the API or the network does, a run either leaves the warehouse exactly
equal to the API (every id once, current values) or fails loudly without advancing its state.

Each case arranges the sandbox (random faults come from its seeded RNG, queued faults are exact),
runs the real pipeline into a DuckDB file, and compares both tables with the sandbox's records
(``assert_warehouse_equals_api``). Killed processes are in ``test_kills.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Collection, Dict, Mapping, Tuple

import dlt
import duckdb
import pytest
from dlt.common.versioned_state import decompress_state

from rackwave_source import RackwaveTransientError, ServerError
from support import FIELDS, TIMESTAMPS, api_value, pages_for

DATASET = "rackwave"
TOKEN = "POST /v1/auth/token"
LIST_ENDPOINTS = ("GET /v1/leads", "GET /v1/contacts")

Rows = Dict[str, Tuple[Any, ...]]


# --- the warehouse against the API -------------------------------------------------------------

def _api_value(record: Mapping[str, Any], name: str) -> Any:
    value = api_value(record, name)
    return int(value.timestamp()) if name in TIMESTAMPS and value is not None else value


def api_snapshot(server: Any) -> Dict[str, Rows]:
    """Every record the sandbox serves now, per table: ``{id: (field values...)}``."""
    return {
        kind: {r["id"]: tuple(_api_value(r, f) for f in fields)
               for r in server.admin.records(kind)}
        for kind, fields in FIELDS.items()
    }


def warehouse_rows(duckdb_path: Path, kind: str) -> Tuple[Counter, Rows]:
    """How often each id occurs in the table, and its values (timestamps as epoch seconds)."""
    columns = ", ".join(
        f"CAST(epoch({name}) AS BIGINT)" if name in TIMESTAMPS else name for name in FIELDS[kind]
    )
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        rows = con.execute(f"SELECT id, {columns} FROM {DATASET}.{kind}").fetchall()
    tags = FIELDS[kind].index("tags")
    out: Rows = {}
    for row in rows:
        values = list(row[1:])
        values[tags] = None if values[tags] is None else json.loads(values[tags])
        out[row[0]] = tuple(values)
    return Counter(row[0] for row in rows), out


def assert_warehouse_equals(duckdb_path: Path, expected: Mapping[str, Rows]) -> None:
    """Both tables hold exactly ``expected``: no id missing, none extra or doubled, same values."""
    for kind, want in expected.items():
        counts, got = warehouse_rows(duckdb_path, kind)
        doubled = sorted(i for i, n in counts.items() if n > 1)
        assert not doubled, f"{kind}: {len(doubled)} ids loaded more than once, e.g. {doubled[:3]}"
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        assert not missing and not extra, (
            f"{kind}: {len(missing)} ids missing (e.g. {missing[:3]}), {len(extra)} not in the API "
            f"(e.g. {extra[:3]})")
        stale = [i for i in sorted(want) if got[i] != want[i]]
        assert not stale, (
            f"{kind}: {len(stale)} rows differ from the API, e.g. {stale[0]}: warehouse "
            f"{got[stale[0]]} != API {want[stale[0]]}")


def assert_warehouse_equals_api(
    server: Any, duckdb_path: Path, not_yet: Collection[str] = ()
) -> None:
    """The warehouse equals the sandbox now (except ids in ``not_yet``, created mid-run)."""
    expected = api_snapshot(server)
    for rows in expected.values():
        for record_id in not_yet:
            rows.pop(record_id, None)
    assert_warehouse_equals(duckdb_path, expected)


def change_records(server: Any, updates: bool = True) -> None:
    """What happens between two scheduled runs: new records, and (optionally) edits and deletes."""
    server.admin.insert("leads", count=5)
    server.admin.insert("contacts", count=3)
    if not updates:
        return
    leads, contacts = server.admin.records("leads"), server.admin.records("contacts")
    for lead in leads[10:13]:
        status = "won" if lead["status"] != "won" else "lost"
        server.admin.update("leads", lead["id"], status=status,
                            email=f"moved.{lead['id'].lower()}@example.com")
    for contact in contacts[7:9]:
        server.admin.update("contacts", contact["id"], title="Chief Fault Officer")
    server.admin.delete("leads", leads[20]["id"])
    server.admin.delete("leads", leads[-1]["id"])
    server.admin.delete("contacts", contacts[-2]["id"])


def stored_state(duckdb_path: Path, resource: str) -> Dict[str, Any]:
    """The resource's state as dlt stored it in the destination (newest of a finished load)."""
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        (compressed,) = con.execute(
            f"SELECT state FROM {DATASET}._dlt_pipeline_state WHERE _dlt_load_id IN "
            f"(SELECT load_id FROM {DATASET}._dlt_loads WHERE status = 0) "
            "ORDER BY version DESC LIMIT 1").fetchone()
    return dict(decompress_state(compressed)["sources"]["rackwave"]["resources"][resource])


def loads_done(duckdb_path: Path) -> int:
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        return int(con.execute(f"SELECT COUNT(*) FROM {DATASET}._dlt_loads").fetchone()[0])


def statuses(server: Any, status: str) -> int:
    """How many list requests (leads and contacts) were answered with ``status``."""
    answered = server.admin.stats()["statuses"]
    return sum(int(answered.get(endpoint, {}).get(status, 0)) for endpoint in LIST_ENDPOINTS)


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """dlt's retry settings, with backoffs of milliseconds so retried runs stay fast."""
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "8")
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.01")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_RETRY_DELAY", "0.05")


# --- transient faults: retried, and the load is exact ------------------------------------------

# 5 % random faults with 8 attempts: a request fails for good with p = 0.05**8 ~ 4e-11, ~1e-8 over
# the ~170 requests of a case (and the sandbox's RNG is seeded, so a given seed always behaves the
# same). `evidence` is the status the sandbox counts for the fault, to prove it happened.
TRANSIENT = {
    "500 on 5% of requests": ({"error_rate": 0.05}, [], "500"),
    "dropped connections on 5%": ({"drop_rate": 0.05}, [], "dropped"),
    "one truncated JSON body": (
        {}, [{"kind": "truncate_json", "count": 1, "path": "/v1/leads", "after": 3}], None),
    "one body cut by a closed connection": (
        {}, [{"kind": "truncate", "count": 1, "path": "/v1/contacts", "after": 2}], None),
    "502 HTML page from a proxy": (
        {}, [{"kind": "502_html", "count": 1, "path": "/v1/leads", "after": 5}], "502"),
}


@pytest.mark.parametrize(("config", "faults", "evidence"), list(TRANSIENT.values()),
                         ids=list(TRANSIENT))
def test_transient_faults_leave_the_warehouse_equal_to_the_api(
    sandbox_factory, make_loader, quick_retries, config, faults, evidence
):
    server = sandbox_factory(leads=600, contacts=200, **config)
    loader = make_loader(server, per_page=20, concurrency=4)

    server.admin.add_faults(faults)
    loader.run()  # the first load (a full scan)
    assert_warehouse_equals_api(server, loader.duckdb_path)
    assert server.admin.faults() == []  # every queued fault was served

    change_records(server)
    server.admin.add_faults(faults)
    loader.run(full_scan=True)  # edits and deletes reach the warehouse, under the same faults
    assert_warehouse_equals_api(server, loader.duckdb_path)
    assert server.admin.faults() == []
    if evidence:
        assert statuses(server, evidence) >= 1


# --- rate limiting -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(40)
def test_a_burst_of_ten_429_with_retry_after_mid_run_is_waited_out(sandbox_factory, make_loader):
    # Pages 1..5 succeed, then ten 429s in a row (Retry-After: 1), then 13 more pages. Read one
    # page at a time, so the ten are consecutive: ~10 s of waiting, then the pages left are paced
    # at the rate learned from the first 429 (~4 requests/s here), which regrows by 1 %/s.
    server = sandbox_factory(leads=300, contacts=60)
    server.admin.add_faults([{"kind": "429", "count": 10, "path": "/v1/leads", "retry_after": 1,
                              "after": 5}])
    loader = make_loader(server, per_page=20, concurrency=1)

    started = time.monotonic()
    result = loader.run()
    took = time.monotonic() - started

    assert loader.last_run("leads", result)["rate_limited"] == 10
    assert 10 <= took < 22, f"{took:.1f} s"  # the pauses asked for, then no crawl
    assert_warehouse_equals_api(server, loader.duckdb_path)


def test_a_rate_limit_well_under_the_concurrency_is_learned_and_the_load_is_exact(
    sandbox_factory, make_loader
):
    # 10 requests/s (bucket of 10) against 16 concurrent workers.
    server = sandbox_factory(leads=300, contacts=60, rate_limit=10)
    loader = make_loader(server, per_page=20, concurrency=16)

    started = time.monotonic()
    loader.run()

    assert_warehouse_equals_api(server, loader.duckdb_path)
    refused = statuses(server, "429")
    assert 1 <= refused <= 16  # only requests in flight when the limit was first hit
    assert time.monotonic() - started < 8  # 18 pages at 10/s: ~3 s, not a crawl


# --- tokens --------------------------------------------------------------------------------------

def test_two_second_tokens_over_more_than_a_hundred_pages(sandbox_factory, make_loader):
    # 115 pages at 40 ms, two at a time: ~2.5 s of paging, more than a token's lifetime.
    server = sandbox_factory(leads=1_000, contacts=150, token_ttl=2, latency_ms=40)
    loader = make_loader(server, per_page=10, concurrency=2)

    loader.run()

    stats = server.admin.stats()
    assert stats["requests"]["GET /v1/leads"] + stats["requests"]["GET /v1/contacts"] == (
        pages_for(1_000, per_page=10) + pages_for(150, per_page=10))
    assert stats["requests"][TOKEN] >= 2  # renewed ahead of expiry (at half the lifetime)
    assert statuses(server, "401") == 0
    assert_warehouse_equals_api(server, loader.duckdb_path)


def test_every_token_revoked_twice_mid_run(sandbox_factory, make_loader):
    server = sandbox_factory(leads=1_000, contacts=200, latency_ms=25)
    loader = make_loader(server, per_page=20, concurrency=4)
    revoked = []
    stop = threading.Event()

    def revoke_at(thresholds=(8, 30)) -> None:
        pending = list(thresholds)
        while pending and not stop.is_set():
            if server.admin.requests("GET /v1/leads") >= pending[0]:
                server.admin.revoke_tokens()
                revoked.append(pending.pop(0))
            time.sleep(0.003)

    watcher = threading.Thread(target=revoke_at)
    watcher.start()
    try:
        loader.run()
    finally:
        stop.set()
        watcher.join()

    assert len(revoked) == 2
    assert statuses(server, "401") >= 2  # at least one refused request per revocation
    # one new token per revocation, however many workers were refused at once
    assert server.admin.requests(TOKEN) == 1 + len(revoked)
    assert_warehouse_equals_api(server, loader.duckdb_path)


# --- pages that shift ----------------------------------------------------------------------------

@pytest.mark.parametrize("concurrency", [1, 8])
def test_records_created_while_a_full_scan_pages(sandbox_factory, make_loader, concurrency):
    server = sandbox_factory(leads=600, contacts=200)
    before = {kind: set(server.admin.ids(kind)) for kind in FIELDS}
    # New records land on top of the newest-first list after pages were served: every later
    # page shifts down and repeats records already read.
    server.admin.add_trigger("/v1/leads", 1, {"insert": {"kind": "leads", "count": 3}})
    server.admin.add_trigger("/v1/leads", 6, {"insert": {"kind": "leads", "count": 7}})
    server.admin.add_trigger("/v1/contacts", 2, {"insert": {"kind": "contacts", "count": 4}})
    loader = make_loader(server, per_page=20, concurrency=concurrency)

    result = loader.run()

    created = {kind: set(server.admin.ids(kind)) - before[kind] for kind in FIELDS}
    assert [len(created["leads"]), len(created["contacts"])] == [10, 4]
    # They came after page 1 was read, but the top is read again at the end: this run has them,
    # and the records the shifted pages repeated are loaded once.
    assert_warehouse_equals_api(server, loader.duckdb_path)
    assert loader.last_run("leads", result)["rows"] == 610

    loader.run()
    assert_warehouse_equals_api(server, loader.duckdb_path)


# --- an outage longer than the retry budget -------------------------------------------------------

OUTAGES = {
    # (sandbox settings, queued faults, whether the failing run is a full scan)
    "500 on every request": ({"error_rate": 1.0}, [], False),
    "every connection dropped": ({"drop_rate": 1.0}, [], False),
    "500s from the 4th page of a full scan": (
        {}, [{"kind": "500", "count": 10_000, "path": "/v1/leads", "after": 3}], True),
}


@pytest.mark.parametrize(("outage", "faults", "full_scan"), list(OUTAGES.values()),
                         ids=list(OUTAGES))
def test_an_outage_longer_than_the_retry_budget_fails_loudly_and_keeps_the_state(
    sandbox_factory, make_loader, quick_retries, monkeypatch, outage, faults, full_scan
):
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "3")
    server = sandbox_factory(leads=400, contacts=120)
    loader = make_loader(server, per_page=20, concurrency=4)
    first = loader.run()
    cursors = {r: first.pipeline.state["sources"]["rackwave"]["resources"][r]["cursor"]
               for r in FIELDS}
    loaded = api_snapshot(server)
    loads = loads_done(loader.duckdb_path)

    change_records(server, updates=full_scan)  # an incremental run would not see edits anyway
    server.admin.configure(**outage)
    server.admin.add_faults(faults)
    with pytest.raises(ServerError) as raised:
        loader.run(full_scan=full_scan)

    error = raised.value
    assert isinstance(error, RackwaveTransientError)
    text = str(error)
    assert f"{server.base_url}/" in text and "after 3 attempts" in text  # what and where
    assert "run again" in text.lower()  # what to do
    assert "nothing past the last successful load was recorded" in text
    # Nothing was loaded and no cursor moved, in the destination or in the local folder.
    assert loads_done(loader.duckdb_path) == loads
    assert_warehouse_equals(loader.duckdb_path, loaded)
    local = dlt.attach(pipeline_name=loader.pipeline_name, pipelines_dir=str(loader.pipelines_dir))
    for resource, cursor in cursors.items():
        assert stored_state(loader.duckdb_path, resource)["cursor"] == cursor
        assert local.state["sources"]["rackwave"]["resources"][resource]["cursor"] == cursor

    server.admin.configure(error_rate=0, drop_rate=0)
    server.admin.clear_faults()
    server.admin.insert("leads", count=3)
    loader.run(full_scan=full_scan)  # the API is back: everything arrives, exactly once
    assert_warehouse_equals_api(server, loader.duckdb_path)
