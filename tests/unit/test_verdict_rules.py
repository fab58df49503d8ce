"""A run's figures become its verdict: exact, churn, short or over; a short count is called short
and a full scan never ends with exit 0 over a difference nothing explains; a count proven to be
steadily off is learned once and allowed for from then on
(``rackwave_source/warehouse/verdicts.py``, its pure parts: no warehouse, no pipeline, no
request; a scan's count facts are given as its pages would have left them)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from functools import lru_cache
from typing import List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackwave_source.api.client import RackwaveClient
from rackwave_source.api.decode import PageReader
from rackwave_source.api.endpoint import ListEndpoint
from rackwave_source.exceptions import CountMismatch
from rackwave_source.read.cursor import ScanPlan
from rackwave_source.read.scan import CountFacts, Scan, id_hash
from rackwave_source.schema import LEAD_COLUMNS
from rackwave_source.warehouse.deletions import DeletionCounts
from rackwave_source.warehouse.verdicts import (
    CHURN,
    EXACT,
    OVER,
    SHORT,
    STATE_COUNT_OFFSET,
    Tally,
    check,
    held_after_full_scan,
    held_after_incremental,
    judge,
)

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
SINCE = datetime(2026, 11, 29, 7, 0, tzinfo=timezone.utc)


@lru_cache(maxsize=None)
def endpoint() -> ListEndpoint:
    """The leads endpoint of a server nobody listens to: a scan is made, nothing is sent."""
    client = RackwaveClient("http://127.0.0.1:9/v1", "unit-client", "unit-secret")
    return ListEndpoint(client, "/leads", PageReader("leads", LEAD_COLUMNS), 100)


def scan(full: bool, total: int, moves: Tuple[int, ...] = (), created_during: int = 0,
         steady: bool = False, end_confirmed: bool = False,
         boundary: Optional[Tuple[int, int, int]] = None, since: Optional[datetime] = None,
         kept: List[str] = ()) -> Scan:
    """A finished scan whose pages said ``meta.total`` was ``total`` last (after the totals
    ``moves`` seen before it, in answer order)."""
    plan = ScanPlan(full, since if since is not None else (None if full else SINCE),
                    "full scan" if full else "incremental")
    read = Scan(endpoint(), plan, concurrency=1)
    totals = [*moves, total]
    read.facts = CountFacts(page1_total=total, totals=list(enumerate(totals, start=1)),
                            end_confirmed=end_confirmed, boundary=boundary, steady=steady)
    read.counts.created_during = created_during
    read.kept_ids = list(kept)
    return read


# -- the verdicts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("full", [False, True])
def test_a_table_holding_what_the_api_counts_is_exact_and_the_run_goes_on(full):
    state: dict = {}
    tally = judge(scan(full, total=250), held=248, quarantined=2, state=state)
    assert (tally.verdict, tally.difference) == (EXACT, 0)  # quarantined records count as held
    check("leads", tally, full)  # no error


@pytest.mark.parametrize("held, verdict", [(94, CHURN), (106, CHURN), (93, SHORT), (107, OVER)])
def test_a_difference_within_the_changes_seen_while_reading_is_churn_beyond_it_short_or_over(
        held, verdict):
    # meta.total moved 100 -> 103 -> 100 (6) while reading, nothing created above page 1 after
    read = scan(False, total=100, moves=(100, 103))
    tally = judge(read, held=held, quarantined=0, state={})
    assert (tally.churn, tally.verdict) == (6, verdict)


def test_records_created_above_page_1_while_reading_explain_a_difference_too():
    tally = judge(scan(False, total=100, created_during=3), held=103, quarantined=0, state={})
    assert (tally.churn, tally.verdict) == (3, CHURN)


def test_an_incremental_run_short_or_over_is_said_but_never_stops_the_run(caplog):
    short = judge(scan(False, total=500), held=490, quarantined=0, state={})
    over = judge(scan(False, total=500), held=512, quarantined=0, state={})
    assert (short.verdict, short.difference) == (SHORT, -10)
    assert (over.verdict, over.difference) == (OVER, 12)
    with caplog.at_level(logging.INFO, logger="rackwave_source"):
        check("leads", short, full_scan=False)  # repaired by a full scan before this
        check("leads", over, full_scan=False)  # deletions the next full scan confirms
    assert "12 rows more than the API counts" in caplog.text


@pytest.mark.parametrize("facts", [
    dict(steady=False, end_confirmed=True),  # the total moved or page 1 changed
    dict(steady=True, end_confirmed=False),  # the end of the list was never proven
])
def test_a_full_scan_short_without_proof_of_coverage_is_short_and_loads_nothing(facts):
    state = {STATE_COUNT_OFFSET: 0}
    tally = judge(scan(True, total=1000, **facts), held=990, quarantined=0, state=state)
    assert tally.verdict == SHORT
    with pytest.raises(CountMismatch) as stopped:
        check("leads", tally, full_scan=True)
    assert (stopped.value.held, stopped.value.counted) == (990, 1000)
    assert state[STATE_COUNT_OFFSET] == 0  # nothing learned from an unproven read


def test_a_full_scan_over_without_anything_to_explain_it_stops_the_run():
    tally = judge(scan(True, total=1000), held=1004, quarantined=0, state={}, undecided=3)
    assert tally.verdict == OVER and tally.explained == 0
    with pytest.raises(CountMismatch):
        check("leads", tally, full_scan=True)


def test_a_full_scan_over_by_rows_no_lookup_could_settle_keeps_them_and_goes_on():
    tally = judge(scan(True, total=1000, moves=(999,)), held=1004, quarantined=0, state={},
                  undecided=3)  # 1 change seen + 3 undecided rows explain 4
    assert (tally.verdict, tally.explained, tally.difference) == (OVER, 3, 4)
    check("leads", tally, full_scan=True)  # no error: documented as kept


# -- the learned count offset ---------------------------------------------------------------------

def test_a_proven_full_scan_learns_how_far_the_count_is_off_and_later_runs_allow_for_it(caplog):
    state: dict = {}
    with caplog.at_level(logging.WARNING, logger="rackwave_source"):
        full = judge(scan(True, total=1003, steady=True, end_confirmed=True), held=1000,
                     quarantined=0, state=state)
    assert (full.verdict, full.count_offset, full.difference) == (EXACT, 3, 0)
    assert state[STATE_COUNT_OFFSET] == 3
    assert "off by 3" in caplog.text
    check("leads", full, full_scan=True)  # no error: exit 0 is right

    later = judge(scan(False, total=1010), held=1007, quarantined=0, state=state)
    assert (later.verdict, later.count_offset) == (EXACT, 3)
    again = judge(scan(False, total=1010), held=1006, quarantined=0, state=state)
    assert again.verdict == SHORT  # the offset is allowed for once, not as slack


def test_a_server_that_lists_more_than_it_counts_learns_a_negative_offset():
    state: dict = {}
    tally = judge(scan(True, total=98, steady=True, end_confirmed=True), held=100,
                  quarantined=0, state=state)
    assert (tally.verdict, state[STATE_COUNT_OFFSET]) == (EXACT, -2)


def test_a_full_scan_from_start_date_counts_the_records_older_than_it_as_the_offset():
    state = {STATE_COUNT_OFFSET: 0}
    # the list crossed start_date at position 600 of 1000: 400 records are older
    full = judge(scan(True, total=1000, since=START, boundary=(7, 600, 1000)), held=600,
                 quarantined=0, state=state)
    assert (full.verdict, full.count_offset, state[STATE_COUNT_OFFSET]) == (EXACT, 400, 400)

    later = judge(scan(False, total=1012), held=612, quarantined=0, state=state)
    assert later.verdict == EXACT


def test_a_full_scan_over_by_undecided_rows_still_keeps_the_offset_below_start_date():
    state = {STATE_COUNT_OFFSET: 390}  # 10 records dated before start_date came since
    full = judge(scan(True, total=1000, since=START, boundary=(7, 600, 1000)), held=602,
                 quarantined=0, state=state, undecided=2)
    assert (full.verdict, full.explained, full.count_offset) == (OVER, 2, 400)
    check("leads", full, full_scan=True)

    later = judge(scan(False, total=1000), held=602, quarantined=0, state=state)
    assert state[STATE_COUNT_OFFSET] == 400
    assert later.verdict == OVER  # not short: nothing was missed


@settings(max_examples=80, deadline=None, derandomize=True)
@given(total=st.integers(0, 10_000), held=st.integers(0, 10_000),
       quarantined=st.integers(0, 50), offset=st.integers(-20, 20),
       moves=st.lists(st.integers(0, 10_000), max_size=3), created=st.integers(0, 20))
def test_an_incremental_verdict_follows_the_sign_and_size_of_the_difference(
        total, held, quarantined, offset, moves, created):
    read = scan(False, total=total, moves=tuple(moves), created_during=created)
    state = {STATE_COUNT_OFFSET: offset}
    tally = judge(read, held=held, quarantined=quarantined, state=state)

    diff = held + quarantined - (total - offset)
    churn = read.facts.total_moves + created
    assert tally.difference == diff and tally.churn == churn
    expected = EXACT if diff == 0 else CHURN if abs(diff) <= churn else \
        SHORT if diff < 0 else OVER
    assert tally.verdict == expected
    assert state == {STATE_COUNT_OFFSET: offset}  # an incremental run learns nothing
    check("leads", tally, full_scan=False)  # and never stops the run


# -- how many rows the table will hold ------------------------------------------------------------

def test_a_full_scan_holds_each_id_once_plus_the_unseen_rows_it_keeps():
    read = scan(True, total=0)
    read.seen.extend(map(id_hash, ["L1", "L2", "L3", "L2", "L1"]))  # pages that shifted
    deletions = DeletionCounts(candidates=9, confirmed=5, still_there=3, undecided=1)
    assert held_after_full_scan(read, deletions) == 3 + 3 + 1  # the 5 confirmed deleted go


def test_an_incremental_run_that_kept_nothing_holds_what_the_last_run_left_without_a_query():
    assert held_after_incremental(scan(False, total=40), previous_held=40) == (40, 0)


@pytest.fixture
def no_pipeline():
    """No pipeline is running (an earlier test in this process may have left one active, whose
    table the census would read)."""
    from dlt.common.configuration.container import Container
    from dlt.common.pipeline import PipelineContext

    context = Container()[PipelineContext]
    if context.is_active():
        context.deactivate()


def test_an_incremental_run_with_no_table_loaded_yet_holds_its_distinct_kept_ids(no_pipeline):
    read = scan(False, total=3, kept=["L1", "L2", "L2", "L3"])  # L2 read again by the lookback
    assert held_after_incremental(read, previous_held=None) == (3, 3)
    assert held_after_incremental(read, previous_held=10) == (3, 3)  # no table to ask: new


def test_the_difference_counts_quarantined_records_as_held_and_allows_for_the_offset():
    tally = Tally(api_total=120, count_offset=5, rows_held=110, quarantine_held=4, churn=0,
                  verdict=SHORT)
    assert tally.difference == 110 + 4 - (120 - 5) == -1
