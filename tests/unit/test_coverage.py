"""The arithmetic of a scan's coverage: repeats, holes, and what counts prove (no HTTP)."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import pyarrow as pa

from rackwave_source.read.coverage import NEG_INF, Coverage
from rackwave_source.api.decode import Page

PER_PAGE = 3
US = 1_000_000


def page(number: int, created: Sequence[int], total: int, at: float,
         ids: Optional[List[str]] = None) -> Page:
    """Page ``number`` listing records created at ``created`` seconds (newest first), answered
    at time ``at`` (asked for just before)."""
    ids = ids or [f"r{c}" for c in created]
    table = pa.table({
        "id": pa.array(ids, pa.string()),
        "created_at": pa.array([c * US for c in created], pa.timestamp("us", tz="UTC")),
    })
    result = Page(number, table, total, max(1, -(-total // PER_PAGE)), served_per_page=PER_PAGE)
    result.sent_at, result.received_at = at - 0.01, at
    result.per_page = PER_PAGE  # as the endpoint sets it, from meta.per_page
    return result


def holes(coverage: Coverage, since: Optional[int] = None) -> List[Tuple[int, int]]:
    return [(g.lo, g.hi) for g in coverage.gaps(since)]


def test_a_quiet_sequential_read_has_no_hole_and_no_repeat():
    coverage = Coverage(PER_PAGE)
    fresh = [coverage.add(page(n, c, 8, at=n)) for n, c in
             enumerate([(90, 80, 70), (60, 50, 40), (30, 20)], start=1)]
    assert all(all(f) for f in fresh)
    assert holes(coverage) == []


def test_a_deletion_above_shows_as_a_drop_of_the_total_and_leaves_a_hole():
    coverage = Coverage(PER_PAGE)
    coverage.add(page(1, (90, 80, 70), 8, at=1))
    # 80 deleted: 60 slid onto page 1, page 2 starts at 50; the total dropped by one
    coverage.add(page(2, (50, 40, 30), 7, at=2))
    coverage.add(page(3, (20,), 7, at=3))
    assert holes(coverage) == [(50 * US, 70 * US)]


def test_records_created_at_the_top_make_repeats_and_no_hole():
    coverage = Coverage(PER_PAGE)
    coverage.add(page(1, (90, 80, 70), 8, at=1))
    fresh = coverage.add(page(2, (70, 60, 50), 9, at=2))  # one created: 70 shows again
    assert fresh == [False, True, True]
    coverage.add(page(3, (40, 30, 20), 9, at=3))
    coverage.add(page(4, (), 9, at=4))
    assert holes(coverage) == []


def test_pages_read_out_of_order_are_not_proven_by_their_totals():
    # page 2 answered before page 1 was asked for: balanced churn keeps the total flat, yet a
    # record can slide between them unseen
    coverage = Coverage(PER_PAGE)
    coverage.add(page(2, (60, 50, 40), 8, at=1))
    coverage.add(page(1, (90, 80, 70), 8, at=2))
    coverage.add(page(3, (30, 20), 8, at=3))
    assert holes(coverage) == [(60 * US, 70 * US)]


def test_a_declared_join_closes_a_seam():
    coverage = Coverage(PER_PAGE)
    coverage.add(page(2, (60, 50, 40), 8, at=1))
    coverage.add(page(1, (90, 80, 70), 8, at=2))
    coverage.add(page(3, (30, 20), 8, at=3))
    coverage.join((60 * US, 70 * US, frozenset({"r60"}), frozenset({"r70"})))
    assert holes(coverage) == []


def test_a_page_boundary_inside_one_second_joins_only_through_a_shared_record():
    coverage = Coverage(PER_PAGE)
    coverage.add(page(2, (50, 50, 40), 8, at=1, ids=["c", "d", "e"]))
    coverage.add(page(1, (90, 50, 50), 8, at=2, ids=["a", "b", "c"]))  # out of order
    assert holes(coverage, since=40 * US) == []  # "c" is on both: the second's group is whole
    other = Coverage(PER_PAGE)
    other.add(page(2, (50, 40, 30), 8, at=1, ids=["d", "e", "f"]))
    other.add(page(1, (90, 50, 50), 8, at=2, ids=["a", "b", "c"]))
    assert holes(other, since=30 * US) == [(50 * US, 50 * US)]


def test_a_repeat_is_recognised_at_an_edge_second_by_its_id():
    coverage = Coverage(PER_PAGE)
    coverage.add(page(1, (90, 50, 50), 8, at=1, ids=["a", "b", "c"]))
    fresh = coverage.add(page(2, (50, 50, 40), 8, at=2, ids=["c", "x", "e"]))
    assert fresh == [False, True, True]  # "x" shares the second but was never listed


def test_an_empty_page_after_a_full_one_proves_the_end_when_the_total_held():
    coverage = Coverage(PER_PAGE)
    coverage.add(page(1, (90, 80, 70), 6, at=1))
    coverage.add(page(2, (60, 50, 40), 6, at=2))
    coverage.add(page(3, (), 6, at=3))
    assert holes(coverage) == []
    dropped = Coverage(PER_PAGE)
    dropped.add(page(1, (90, 80, 70), 6, at=1))
    dropped.add(page(2, (60, 50, 40), 6, at=2))
    dropped.add(page(3, (), 5, at=3))  # one deleted above: the oldest may have slid unseen
    assert holes(dropped) == [(NEG_INF, 40 * US)]


def test_a_hole_below_the_cursor_bound_does_not_count():
    coverage = Coverage(PER_PAGE)
    coverage.add(page(1, (90, 80, 70), 8, at=1))
    coverage.add(page(2, (50, 40, 30), 7, at=2))
    assert holes(coverage, since=75 * US) == []
    assert holes(coverage, since=55 * US) == [(55 * US, 70 * US)]


def test_a_count_that_trails_the_data_by_a_constant_proves_as_much_as_an_exact_one():
    # the total says one record fewer than the list holds, on every page: differences are exact
    coverage = Coverage(PER_PAGE)
    coverage.add(page(1, (90, 80, 70), 6, at=1))
    coverage.add(page(2, (60, 50, 40), 6, at=2))
    coverage.add(page(3, (30,), 6, at=3))  # the page last_page (2) said did not exist
    assert holes(coverage) == []


def test_a_short_page_vouches_for_everything_below_it():
    coverage = Coverage(PER_PAGE)
    coverage.add(page(2, (60, 50), 5, at=1))  # short and the last: the end of the list, read first
    coverage.add(page(1, (90, 80, 70), 5, at=2))
    assert holes(coverage) == [(60 * US, 70 * US)]  # only the seam between them


def test_a_short_page_whose_meta_says_more_follow_vouches_only_for_itself():
    # a server that leaves records out of a page: page 2 of 3 is short, page 3 is still to come
    coverage = Coverage(PER_PAGE)
    coverage.add(page(1, (90, 80, 70), 8, at=1))
    coverage.add(page(2, (60, 50), 8, at=2))
    assert holes(coverage) == [(NEG_INF, 50 * US)]
    coverage.add(page(3, (40, 30, 20), 8, at=3))
    coverage.add(page(4, (), 8, at=4))
    assert holes(coverage) == []


def test_a_page_of_records_all_quarantined_is_crossed_by_the_counts_around_it():
    coverage = Coverage(PER_PAGE)
    coverage.add(page(1, (90, 80, 70), 9, at=1))
    blind = page(2, (), 9, at=2)
    blind.rejected = [{"record": str(n)} for n in range(PER_PAGE)]  # listed, none with a created_at
    coverage.add(blind)
    assert holes(coverage) == [(NEG_INF, 70 * US)]  # nothing below page 1 vouched for yet
    coverage.add(page(3, (30, 20, 10), 9, at=3))
    assert holes(coverage) == [(NEG_INF, 10 * US)]  # pages 1 to 3 joined across the blind one
    coverage.add(page(4, (), 9, at=4))
    assert holes(coverage) == []


def test_a_blind_page_answered_out_of_order_joins_nothing():
    coverage = Coverage(PER_PAGE)
    coverage.add(page(1, (90, 80, 70), 9, at=1))
    coverage.add(page(3, (30, 20, 10), 9, at=2))  # read before page 2: no count proof 2 -> 3
    blind = page(2, (), 9, at=3)
    blind.rejected = [{"record": str(n)} for n in range(PER_PAGE)]
    coverage.add(blind)
    coverage.add(page(4, (), 9, at=4))
    assert holes(coverage) == [(30 * US, 70 * US)]


def test_page_sizes_differ_so_numbers_do_not_pair():
    # page 3 of size 2 is not "the page after" page 2 of size 3: no count proof between them
    coverage = Coverage(PER_PAGE)
    coverage.add(page(2, (60, 50, 40), 8, at=1))
    other = page(3, (35, 30), 8, at=2)
    other.per_page = 2
    coverage.add(other)
    coverage.add(page(1, (90, 80, 70), 8, at=0.5))
    assert (35 * US, 40 * US) in holes(coverage)


def test_a_tie_group_longer_than_a_page_is_whole_only_where_its_pages_share_records():
    # Six records created in one second span pages 1 and 2; two deletions above slid d and e onto
    # page 1 after it was read. The pages touch at that second but share no record.
    coverage = Coverage(PER_PAGE)
    coverage.add(page(1, (90, 90, 90), 12, at=1, ids=["a", "b", "c"]))
    coverage.add(page(2, (90, 90, 90), 10, at=2, ids=["f", "g", "h"]))
    coverage.add(page(3, (90, 80, 70), 10, at=3, ids=["i", "j", "k"]))  # counts join 2 and 3
    coverage.add(page(4, (60,), 10, at=4))
    assert holes(coverage) == [(90 * US, 90 * US)]
    # the re-read of that second, with a page size whose pages overlap both
    coverage.add(page(1, (90, 90, 90, 90), 10, at=5, ids=["b", "c", "f", "g"]))
    assert holes(coverage) == []


def test_the_pages_of_a_tie_group_link_in_any_order():
    coverage = Coverage(PER_PAGE)
    coverage.add(page(3, (90, 90, 80), 9, at=1, ids=["e", "f", "g"]))
    coverage.add(page(2, (90, 90, 90), 9, at=2, ids=["c", "d", "e"]))
    coverage.add(page(1, (90, 90, 90), 9, at=3, ids=["a", "b", "c"]))
    coverage.add(page(4, (70, 60, 50), 9, at=4, ids=["h", "i", "j"]))
    coverage.add(page(5, (), 9, at=5))
    assert holes(coverage) == []
