"""The small rules a full scan settles unseen rows with (``rackwave_source/warehouse/deletions.py``): which
loaded ids the scan saw, and what a lookup searches for. No server, no warehouse."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rackwave_source.warehouse.deletions import _contains, _terms

HASHES = st.lists(st.integers(-(2 ** 63), 2 ** 63 - 1), max_size=60)


@given(seen=HASHES, loaded=HASHES)
def test_a_loaded_id_counts_as_seen_exactly_when_the_scan_saw_it(seen, loaded) -> None:
    mask = _contains(np.sort(np.array(seen, dtype=np.int64)), np.array(loaded, dtype=np.int64))
    assert mask.tolist() == [h in set(seen) for h in loaded]


LOOKUPS = (("email",), ("name", "company"))


def test_a_lookup_searches_the_email_first_then_the_name_with_the_company() -> None:
    assert _terms({"email": " a@b.example ", "name": "Ann"}, LOOKUPS) == ["a@b.example"]
    assert _terms({"email": None, "name": "Ann Lee", "company": " Acme "}, LOOKUPS) == \
        ["Ann Lee Acme"]


def test_a_row_with_nothing_to_search_by_gets_no_lookup_and_stays_as_loaded() -> None:
    assert _terms({"email": "  ", "name": "Ann", "company": None}, LOOKUPS) == []
    assert _terms({}, LOOKUPS) == []
