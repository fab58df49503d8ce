"""What a run decides before its first request: full scan or incremental, and how a full scan
splits its pages between workers (no HTTP)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from rackwave_source.read.cursor import STATE_CURSOR, STATE_LAST_FULL_SCAN, plan_scan
from rackwave_source.timestamps import micros, to_iso
from rackwave_source.options import ValidatedOptions
from rackwave_source.read.paging import plan_blocks

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def options(**changes: object) -> ValidatedOptions:
    base = dict(base_url="https://api.rackwave.io/v1", per_page=100, start_date=None,
                lookback=timedelta(0), full_scan_every=timedelta(hours=24), force_full_scan=False,
                deleted_records="delete", bad_records="fail", lead_status=None, lead_search=None,
                max_rate_limit_wait=600.0, concurrency=16, ca_bundle=None,
                max_requests_per_second=None)
    base.update(changes)
    return ValidatedOptions(**base)  # type: ignore[arg-type]


def test_the_first_run_is_a_full_scan_down_to_start_date():
    start = NOW - timedelta(days=30)
    plan = plan_scan({}, options(start_date=start), NOW)
    assert (plan.full_scan, plan.since, plan.reason) == (True, start, "first run")


def test_a_run_with_a_cursor_reads_from_the_cursor_minus_the_lookback():
    cursor = NOW - timedelta(hours=3)
    state = {STATE_CURSOR: to_iso(cursor), STATE_LAST_FULL_SCAN: to_iso(NOW - timedelta(hours=1))}
    plan = plan_scan(state, options(lookback=timedelta(minutes=10)), NOW)
    assert not plan.full_scan
    assert plan.since == cursor - timedelta(minutes=10)
    assert plan.since_us == micros(cursor - timedelta(minutes=10))


def test_start_date_bounds_the_lookback_too():
    cursor = NOW - timedelta(hours=3)
    state = {STATE_CURSOR: to_iso(cursor), STATE_LAST_FULL_SCAN: to_iso(NOW)}
    plan = plan_scan(state, options(lookback=timedelta(days=2), start_date=NOW - timedelta(days=1)),
                     NOW)
    assert plan.since == NOW - timedelta(days=1)


@pytest.mark.parametrize("hours_ago,due", [(23, False), (24, True), (200, True)])
def test_a_full_scan_is_due_every_full_scan_every(hours_ago, due):
    state = {STATE_CURSOR: to_iso(NOW), STATE_LAST_FULL_SCAN: to_iso(NOW - timedelta(hours=hours_ago))}
    assert plan_scan(state, options(), NOW).full_scan is due


def test_full_scans_switched_off_are_never_due_but_can_be_forced():
    state = {STATE_CURSOR: to_iso(NOW), STATE_LAST_FULL_SCAN: to_iso(NOW - timedelta(days=365))}
    assert not plan_scan(state, options(full_scan_every=None), NOW).full_scan
    forced = plan_scan(state, options(full_scan_every=None, force_full_scan=True), NOW)
    assert (forced.full_scan, forced.reason) == (True, "full scan requested")


@pytest.mark.parametrize("last,workers", [(2, 16), (9, 16), (1001, 16), (1001, 3), (130, 16)])
def test_blocks_cover_every_page_once_in_order(last, workers):
    blocks = plan_blocks(2, last, workers)
    pages = [n for b in blocks for n in range(b.first, b.last + 1)]
    assert pages == list(range(2, last + 1))
    assert len(blocks) <= workers
    assert [b.open_ended for b in blocks] == [False] * (len(blocks) - 1) + [True]


def test_blocks_are_long_enough_to_keep_seams_few():
    assert len(plan_blocks(2, 20, 16, min_pages=8)) == 2  # 19 pages: two blocks, one seam
    assert len(plan_blocks(2, 1001, 16, min_pages=8)) == 16
    assert all(b.last - b.first + 1 >= 8 for b in plan_blocks(2, 200, 16, min_pages=8))
