"""Which records the next run reads: full scan or incremental, and from which instant
(``rackwave_source/read/cursor.py``), with instants kept as UTC text and whole microseconds
whatever the machine's time zone (``rackwave_source/timestamps.py``). No HTTP, no pipeline."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Iterator, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackwave_source.options import ValidatedOptions
from rackwave_source.read.cursor import STATE_CURSOR, STATE_LAST_FULL_SCAN, ScanPlan, plan_scan
from rackwave_source.timestamps import from_iso, from_micros, micros, to_iso

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
CURSOR = NOW - timedelta(hours=5)
DAY = timedelta(hours=24)


def options(**changes: object) -> ValidatedOptions:
    base = dict(base_url="https://api.rackwave.io/v1", per_page=100, start_date=None,
                lookback=timedelta(0), full_scan_every=DAY, force_full_scan=False,
                deleted_records="delete", bad_records="fail", lead_status=None, lead_search=None,
                max_rate_limit_wait=600.0, concurrency=16, ca_bundle=None,
                max_requests_per_second=None)
    base.update(changes)
    return ValidatedOptions(**base)  # type: ignore[arg-type]


def loaded_state(cursor: datetime = CURSOR, last_full: Optional[datetime] = NOW - timedelta(hours=1)
                 ) -> dict:
    state = {STATE_CURSOR: to_iso(cursor)}
    if last_full is not None:
        state[STATE_LAST_FULL_SCAN] = to_iso(last_full)
    return state


@pytest.fixture
def away_from_utc() -> Iterator[None]:
    """This process's local time zone set far from UTC, so reading naive as local would show."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX only")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "America/Los_Angeles")
        time.tzset()
        assert datetime(2026, 1, 1).astimezone().utcoffset() != timedelta(0)
        yield
    time.tzset()


# -- plan_scan ------------------------------------------------------------------------------------

def test_a_state_without_a_cursor_is_a_first_run_that_reads_everything():
    # a full scan time alone (a run that loaded no record) does not make an incremental run
    plan = plan_scan({STATE_LAST_FULL_SCAN: to_iso(NOW)}, options(), NOW)
    assert plan == ScanPlan(True, None, "first run")
    assert plan.since_us is None  # nothing bounds the read from below


def test_a_full_scan_asked_for_and_not_finished_is_owed_before_any_incremental_run():
    asked = "2026-11-28T08:00:00Z"
    plan = plan_scan(loaded_state(), options(full_scan_every=None), NOW, owed=asked)
    assert plan.full_scan and plan.since is None
    assert asked in plan.reason and "not finished" in plan.reason


def test_forcing_a_full_scan_wins_over_a_first_run_and_an_owed_one():
    for state, owed in (({}, None), (loaded_state(), "2026-11-28T08:00:00Z")):
        plan = plan_scan(state, options(force_full_scan=True), NOW, owed=owed)
        assert (plan.full_scan, plan.reason) == (True, "full scan requested")


@pytest.mark.parametrize("elapsed, full", [
    (DAY - timedelta(microseconds=1), False),
    (DAY, True),
    (DAY + timedelta(microseconds=1), True),
])
def test_full_scan_every_is_due_from_the_exact_instant_it_has_elapsed(elapsed, full):
    plan = plan_scan(loaded_state(last_full=NOW - elapsed), options(), NOW)
    assert plan.full_scan is full
    assert plan.since == (None if full else CURSOR)
    if full:
        assert "older than" in plan.reason


def test_a_cursor_with_no_full_scan_on_record_is_due_one_unless_they_are_switched_off():
    state = loaded_state(last_full=None)
    assert plan_scan(state, options(), NOW).full_scan
    assert plan_scan(state, options(full_scan_every=None), NOW) == ScanPlan(
        False, CURSOR, f"incremental from {to_iso(CURSOR)}")


@pytest.mark.parametrize("reason_state, owed, force", [
    ({}, None, False),  # first run
    (loaded_state(), "2026-11-28T08:00:00Z", False),  # owed
    (loaded_state(last_full=NOW - 3 * DAY), None, False),  # full_scan_every elapsed
    (loaded_state(), None, True),  # asked for
])
def test_every_full_scan_reads_down_to_start_date_not_to_the_cursor(reason_state, owed, force):
    start = NOW - timedelta(days=400)
    plan = plan_scan(reason_state, options(start_date=start, force_full_scan=force,
                                           lookback=timedelta(hours=1)), NOW, owed=owed)
    assert plan.full_scan
    assert plan.since == start and plan.since_us == micros(start)


def test_the_lookback_reads_again_records_just_below_the_cursor_and_the_reason_says_from_when():
    plan = plan_scan(loaded_state(), options(lookback=timedelta(minutes=15)), NOW)
    since = CURSOR - timedelta(minutes=15)
    assert plan == ScanPlan(False, since, f"incremental from {to_iso(since)}")
    assert plan.since_us == micros(CURSOR) - 15 * 60 * 1_000_000


def test_a_cursor_kept_as_naive_text_is_read_as_utc(away_from_utc):
    state = {STATE_CURSOR: "2026-11-29T07:00:00", STATE_LAST_FULL_SCAN: to_iso(NOW)}
    plan = plan_scan(state, options(), NOW)
    assert plan.since == datetime(2026, 11, 29, 7, 0, tzinfo=timezone.utc)
    assert plan.reason == "incremental from 2026-11-29T07:00:00Z"


@settings(max_examples=40, deadline=None, derandomize=True)
@given(cursor_s=st.integers(0, 10 * 365 * 86400), lookback_s=st.integers(0, 30 * 86400),
       start_s=st.one_of(st.none(), st.integers(0, 10 * 365 * 86400)))
def test_an_incremental_run_reads_from_the_later_of_start_date_and_cursor_minus_lookback(
        cursor_s, lookback_s, start_s):
    epoch = datetime(2020, 1, 1, tzinfo=timezone.utc)
    cursor = epoch + timedelta(seconds=cursor_s)
    start = None if start_s is None else epoch + timedelta(seconds=start_s)
    plan = plan_scan(loaded_state(cursor=cursor, last_full=NOW),
                     options(lookback=timedelta(seconds=lookback_s), start_date=start), NOW)
    expected = cursor - timedelta(seconds=lookback_s)
    if start is not None:
        expected = max(expected, start)
    assert not plan.full_scan
    assert plan.since == expected
    assert plan.since_us == micros(expected)


# -- timestamps -----------------------------------------------------------------------------------

def test_to_iso_writes_the_utc_instant_with_a_z_whatever_the_offset_it_was_given():
    paris = timezone(timedelta(hours=2))
    assert to_iso(datetime(2026, 3, 27, 12, 0, tzinfo=paris)) == "2026-03-27T10:00:00Z"
    assert to_iso(datetime(2026, 3, 27, 10, 0, 0, 500, tzinfo=timezone.utc)) == \
        "2026-03-27T10:00:00.000500Z"


def test_the_apis_z_text_and_an_offset_text_read_as_the_same_instant():
    # the contract's example ("2026-03-27T10:00:00Z") and the same instant written with an offset
    z = from_iso("2026-03-27T10:00:00Z")
    assert z == from_iso("2026-03-27T12:00:00+02:00") == from_iso("2026-03-27T10:00:00+00:00")
    assert z.utcoffset() == timedelta(0)
    assert micros(z) == 1_774_605_600 * 1_000_000


def test_naive_text_is_utc_not_the_machines_local_time(away_from_utc):
    naive = from_iso("2026-03-27T10:00:00")
    assert naive == datetime(2026, 3, 27, 10, 0, tzinfo=timezone.utc)
    assert micros(naive) == micros(from_iso("2026-03-27T10:00:00Z"))
    assert to_iso(naive) == "2026-03-27T10:00:00Z"


def test_from_micros_is_an_aware_utc_instant(away_from_utc):
    instant = from_micros(1_774_605_600_000_001)
    assert instant == datetime(2026, 3, 27, 10, 0, 0, 1, tzinfo=timezone.utc)
    assert instant.utcoffset() == timedelta(0)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(instant=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1),
                            timezones=st.sampled_from([
                                timezone.utc, timezone(timedelta(hours=5, minutes=30)),
                                timezone(timedelta(hours=-8))])))
def test_every_instant_survives_state_text_and_page_microseconds_unchanged(instant):
    assert from_iso(to_iso(instant)) == instant
    assert from_micros(micros(instant)) == instant
    assert to_iso(from_micros(micros(instant))) == to_iso(instant)
