"""The progress display's arithmetic with a fake clock: rate over a window, ETA, the lines a full
scan and an incremental run show, and the plain lines a log gets (no HTTP, no threads)."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pytest

from pipelines.progress_display import RateMeter, RunProgress, duration, eta_s, fraction
from rackwave_source.read.cursor import ScanPlan
from rackwave_source.exceptions import ConfigurationError
from rackwave_source.read.progress import PHASE_DELETIONS

FULL = ScanPlan(True, None, "first run")
CURSOR = datetime(2026, 5, 1, 10, 0, tzinfo=timezone.utc)
INCREMENTAL = ScanPlan(False, CURSOR, "incremental")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_is_measured_over_the_last_seconds_and_follows_a_slowdown():
    meter = RateMeter(window_s=10.0, min_span_s=0.5)
    meter.sample(0.0, 0, 0)
    meter.sample(0.2, 4, 400)
    assert meter.rates() is None  # 0.2 s measured: too little to promise anything
    for second in range(1, 11):
        meter.sample(float(second), 10 * second, 1000 * second)  # 10 pages/s
    assert meter.rates() == pytest.approx((10.0, 1000.0))
    for second in range(11, 31):  # a 429 pause: nothing moves for 20 s
        meter.sample(float(second), 100, 10_000)
    assert meter.rates() == pytest.approx((0.0, 0.0))  # the old rate no longer counts


def test_eta_is_the_pages_left_at_the_measured_rate_and_none_without_a_rate():
    assert eta_s(40, 100, 10.0) == pytest.approx(6.0)
    assert eta_s(101, 100, 10.0) == 0  # the empty page after a full last page
    assert eta_s(40, 100, None) is None
    assert eta_s(40, 100, 0.0) is None  # stalled: no invented ETA


def test_the_share_reaches_100_percent_only_when_done():
    assert fraction(50, 100, done=False) == 0.5
    assert fraction(100, 100, done=False) == 0.99  # one more page may follow a full last page
    assert fraction(100, 100, done=True) == 1.0
    assert fraction(0, 0, done=False) == 0.0
    assert [duration(s) for s in (4.4, 65, 3725)] == ["4s", "1m05s", "1h02m"]


def test_a_full_scan_shows_pages_rows_rate_and_eta_then_100_percent():
    clock = Clock()
    display = RunProgress(io.StringIO(), live=True, interval_s=5, clock=clock)
    display.started("leads", FULL)
    for _ in range(20):  # 20 pages of 100 in 2 s
        display.page("leads", 100, 10_000, 100)
    clock.now += 2
    display.draw()
    line = display._lines(list(display._resources.values()), clock.now, bar=True)[0]
    assert "20%" in line and "20/100 pages" in line and "2,000/10,000 rows" in line
    assert "1,000 rows/s" in line and "ETA 8s" in line
    for _ in range(80):
        display.page("leads", 100, 10_000, 100)
    display.phase("leads", PHASE_DELETIONS)
    clock.now += 1
    line = display._lines(list(display._resources.values()), clock.now, bar=True)[0]
    assert "99%" in line and "checking loaded rows the scan did not see" in line
    display.finished("leads")
    line = display._lines(list(display._resources.values()), clock.now, bar=True)[0]
    assert "100%" in line and "[" + "#" * 20 + "]" in line and "done in 3s" in line
    assert "100/100 pages" in line and "10,000/10,000 rows" in line


def test_an_incremental_run_says_how_far_it_reads_and_promises_no_eta():
    clock = Clock()
    display = RunProgress(io.StringIO(), live=True, interval_s=5, clock=clock)
    display.started("leads", INCREMENTAL)
    display.page("leads", 100, 10_070, 101)
    clock.now += 1
    display.draw()
    line = display._lines(list(display._resources.values()), clock.now, bar=True)[0]
    assert "1 page " in line and "100 rows" in line and "ETA" not in line and "%" not in line
    assert "reading back to the cursor 2026-05-01T10:00:00Z" in line
    display.finished("leads")
    line = display._lines(list(display._resources.values()), clock.now, bar=True)[0]
    assert "read back to the cursor 2026-05-01T10:00:00Z, up to date" in line


def test_a_log_gets_one_plain_line_per_running_resource_per_interval_and_one_when_done():
    clock, out = Clock(), io.StringIO()
    display = RunProgress(out, live=False, interval_s=5, clock=clock)
    display.started("leads", FULL)
    display.started("contacts", FULL)
    for tick in range(1, 21):  # 10 s in ticks of 0.5 s
        clock.now += 0.5
        display.page("leads", 100, 10_000, 100)
        display.draw()
    display.finished("contacts")
    display.draw()
    lines = out.getvalue().splitlines()
    assert sum("leads" in line for line in lines) == 2  # at 5 s and at 10 s
    assert [line for line in lines if "contacts" in line and "done" in line]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert all(line.startswith("progress: ") for line in lines)


def test_a_bad_interval_setting_is_named(monkeypatch):
    monkeypatch.setenv("RACKWAVE_PROGRESS_INTERVAL", "soon")
    with pytest.raises(ConfigurationError, match="RACKWAVE_PROGRESS_INTERVAL"):
        RunProgress(io.StringIO(), live=False)
