"""The shared request budget (rackwave_source.api.throttle.Throttle) on a fake clock.

No real time passes: ``FakeClock`` is both the throttle's clock and its sleep. By default a sleep
moves the clock on, like one worker calling one request after the other; with
``advances=False`` sleeps are only recorded, like workers on their own threads that all wait at
the same time and see the same "now".
"""

from __future__ import annotations

from typing import Any

import pytest

from rackwave_source.api.throttle import Throttle

T0 = 1000.0  # a monotonic clock is rarely 0; starting elsewhere catches "0 means unset" slips


class FakeClock:
    def __init__(self, now: float = T0, advances: bool = True) -> None:
        self.now = now
        self.advances = advances
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.advances:
            self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(clock: FakeClock, **options: Any) -> Throttle:
    return Throttle(clock=clock, sleep=clock.sleep, **options)


def after_t0(times: list[float]) -> list[float]:
    """Times as offsets from T0, so that pytest.approx compares them to the microsecond."""
    return [t - T0 for t in times]


def succeed_for(throttle: Throttle, clock: FakeClock, count: int, every: float) -> None:
    """``count`` requests, one every ``every`` seconds, each answered at once with a success."""
    for _ in range(count):
        throttle.acquire()
        throttle.succeeded()
        clock.advance(every)


def learn_rate(throttle: Throttle, clock: FakeClock, retry_after: float) -> float:
    """30 successes sent from T0 to T0+2.9 s, then a 429 at T0+3 s for a request sent then.

    Returns the rate the throttle should learn: 30 / (3 s + retry_after).
    """
    succeed_for(throttle, clock, 30, every=0.1)
    assert clock.now - T0 == pytest.approx(3.0)
    sent_at = throttle.acquire()
    throttle.rate_limited_for(retry_after, sent_at)
    return 30 / (3.0 + retry_after)


# --- no quota, no 429 ---------------------------------------------------------------------------


def test_without_quota_or_429_it_never_waits():
    clock = FakeClock()
    throttle = make(clock)

    sent = []
    for _ in range(1_000):
        sent.append(throttle.acquire())
        throttle.succeeded()
    clock.advance(60.0)
    sent.append(throttle.acquire())

    assert clock.sleeps == []
    assert sent == [T0] * 1_000 + [T0 + 60.0]
    assert throttle.rate is None
    assert throttle.rate_limited == 0


# --- a configured quota -------------------------------------------------------------------------


def test_a_configured_quota_of_10_per_second_sends_20_requests_in_2_seconds():
    clock = FakeClock()
    throttle = make(clock, max_requests_per_second=10)

    sent = [throttle.acquire() for _ in range(20)]

    assert after_t0(sent) == pytest.approx([0.1 * k for k in range(20)])
    assert clock.sleeps == pytest.approx([0.1] * 19)  # the first request goes at once
    assert throttle.acquire() - T0 == pytest.approx(2.0)  # the 21st opens the third second
    assert throttle.rate == 10  # a configured quota is not "grown" past


def test_concurrent_workers_share_one_budget():
    clock = FakeClock(advances=False)  # five threads asking at the same instant
    throttle = make(clock, max_requests_per_second=10)

    sent = [throttle.acquire() for _ in range(5)]

    assert after_t0(sent) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.3, 0.4])


# --- a 429 pauses everyone ----------------------------------------------------------------------


def test_a_429_with_retry_after_2_pauses_every_worker_for_2_seconds():
    clock = FakeClock(advances=False)
    throttle = make(clock)
    refused = throttle.acquire()
    clock.advance(0.5)  # the 429 comes back half a second later

    throttle.rate_limited_for(2.0, refused)
    others = [throttle.acquire() for _ in range(3)]  # the refused worker and two that were idle

    assert others == [T0 + 2.5] * 3
    assert clock.sleeps == [2.0] * 3
    assert throttle.rate_limited == 1
    # nothing succeeded before it, so there is nothing to learn a rate from: after the pause
    # the throttle is as unpaced as before
    assert throttle.rate is None
    clock.now = T0 + 2.5
    assert throttle.acquire() == T0 + 2.5


def test_after_the_pause_a_configured_quota_paces_the_waiting_workers():
    clock = FakeClock(advances=False)
    throttle = make(clock, max_requests_per_second=10)
    refused = throttle.acquire()

    throttle.rate_limited_for(2.0, refused)
    others = [throttle.acquire() for _ in range(3)]

    assert after_t0(others) == pytest.approx([2.0, 2.1, 2.2])
    assert throttle.rate == 10  # no success to learn from: the quota stays


# --- the learned rate ---------------------------------------------------------------------------


def test_a_429_sets_the_rate_to_successes_over_time_plus_retry_after():
    clock = FakeClock()
    throttle = make(clock)

    expected = learn_rate(throttle, clock, retry_after=2.0)

    assert expected == pytest.approx(6.0)
    assert throttle.rate == pytest.approx(6.0)
    # after the pause (T0+3+2) requests go out at that rate
    clock.now = T0 + 5.0
    sent = [throttle.acquire() for _ in range(3)]
    assert after_t0(sent) == pytest.approx([5.0, 5.0 + 1 / 6, 5.0 + 2 / 6])


def test_the_learned_rate_is_never_above_the_configured_quota():
    # In-flight requests that succeed just after a 429 count towards the next estimate, which can
    # then exceed what the throttle itself sends: 7 successes, then a 429 with Retry-After 0.5
    # right at the end of the pause reads as 7 / 0.5 = 14 per second.
    def rate_after_in_flight_successes(quota: float | None) -> float | None:
        clock = FakeClock()
        throttle = make(clock) if quota is None else make(clock, max_requests_per_second=quota)
        first = throttle.acquire()
        throttle.rate_limited_for(1.0, first)  # nothing succeeded yet: no estimate
        for _ in range(7):
            throttle.succeeded()  # the other workers' requests, sent before the 429
        sent_at = throttle.acquire()  # waits out the pause
        assert sent_at == T0 + 1.0
        throttle.rate_limited_for(0.5, sent_at)
        return throttle.rate

    assert rate_after_in_flight_successes(None) == pytest.approx(14.0)
    assert rate_after_in_flight_successes(10) == 10


def test_with_a_quota_the_learned_rate_can_be_lower_than_it():
    clock = FakeClock()
    throttle = make(clock, max_requests_per_second=10)

    # 30 requests paced at 10/s fill T0..T0+2.9; the 31st, at T0+3, is refused with Retry-After 1
    expected = learn_rate(throttle, clock, retry_after=1.0)

    assert throttle.rate == pytest.approx(expected) == pytest.approx(7.5)


def test_a_late_429_for_a_request_sent_before_the_first_429_only_extends_the_pause():
    clock = FakeClock()
    throttle = make(clock)
    succeed_for(throttle, clock, 30, every=0.1)
    first = throttle.acquire()  # T0+3.0
    late = throttle.acquire()  # T0+3.0, in flight on another worker
    in_flight = [throttle.acquire() for _ in range(3)]  # T0+3.0 as well
    assert in_flight == [first] * 3
    clock.advance(0.2)

    throttle.rate_limited_for(2.0, first)  # at T0+3.2: pause to T0+5.2
    learned = 30 / (3.2 + 2.0)
    assert throttle.rate == pytest.approx(learned)
    clock.advance(0.1)
    for _ in in_flight:  # at T0+3.3 the other in-flight requests succeed
        throttle.succeeded()
    clock.advance(0.1)
    throttle.rate_limited_for(3.0, late)  # at T0+3.4, Retry-After 3: pause to T0+6.4

    # taken as evidence this would read 3 successes over (T0+3.4 - T0+5.2) + 3 = 1.2 s: 2.5/s
    assert throttle.rate == pytest.approx(learned)
    assert throttle.rate_limited == 2
    assert throttle.acquire() - T0 == pytest.approx(6.4)


def test_a_429_with_nothing_let_through_since_the_last_one_keeps_the_rate():
    clock = FakeClock()
    throttle = make(clock)
    learn_rate(throttle, clock, retry_after=2.0)  # 6/s, paused until T0+5
    clock.now = T0 + 5.0

    sent_at = throttle.acquire()
    throttle.rate_limited_for(2.0, sent_at)  # refused again straight after the pause

    assert throttle.rate == pytest.approx(6.0)
    assert throttle.acquire() - T0 == pytest.approx(7.0)


# --- growing back -------------------------------------------------------------------------------


def test_the_rate_grows_back_by_1_percent_per_second_without_429():
    clock = FakeClock()
    throttle = make(clock)
    learn_rate(throttle, clock, retry_after=2.0)  # 6/s, paused until T0+5

    clock.now = T0 + 15.0  # 10 s after the pause
    throttle.acquire()

    assert throttle.rate == pytest.approx(6.0 * 1.01**10)

    clock.now = T0 + 115.0  # with no quota it keeps growing
    throttle.acquire()
    assert throttle.rate == pytest.approx(6.0 * 1.01**110)


def test_the_rate_grows_back_at_the_given_growth_per_second():
    clock = FakeClock()
    throttle = make(clock, growth_per_second=0.1)
    learn_rate(throttle, clock, retry_after=2.0)

    clock.now = T0 + 10.0  # 5 s after the pause
    throttle.acquire()

    assert throttle.rate == pytest.approx(6.0 * 1.1**5)


def test_the_rate_grows_back_no_higher_than_the_configured_quota():
    clock = FakeClock()
    throttle = make(clock, max_requests_per_second=10)
    learn_rate(throttle, clock, retry_after=1.0)  # 7.5/s, paused until T0+4

    clock.now = T0 + 24.0
    throttle.acquire()
    assert throttle.rate == pytest.approx(7.5 * 1.01**20)  # ~9.15: still climbing

    clock.now = T0 + 64.0  # 7.5 * 1.01**60 would be ~13.6
    throttle.acquire()
    assert throttle.rate == 10


# --- the floor ----------------------------------------------------------------------------------


def test_the_rate_never_falls_below_min_rate():
    clock = FakeClock()
    throttle = make(clock)
    sent_at = throttle.acquire()
    throttle.succeeded()

    throttle.rate_limited_for(60.0, sent_at)  # 1 success over 60 s would be 1/60 per second

    assert throttle.rate == 0.2  # the default floor: one request every 5 s
    clock.now = T0 + 60.0
    sent = [throttle.acquire() for _ in range(3)]
    assert after_t0(sent) == pytest.approx([60.0, 65.0, 70.0])


def test_min_rate_is_configurable():
    clock = FakeClock()
    throttle = make(clock, min_rate=1.0)
    sent_at = throttle.acquire()
    throttle.succeeded()

    throttle.rate_limited_for(60.0, sent_at)

    assert throttle.rate == 1.0
