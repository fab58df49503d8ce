"""Background churn: records created and deleted between list requests.

A real CRM keeps changing while a connector pages through it: new records
push everything down by one, deletions above the read position pull records
up past it. ``churn_creates``/``churn_deletes`` reproduce that at a chosen
rate, from a seeded RNG so that a failing scan can be replayed.
"""

from __future__ import annotations

import random

from rackwave_sandbox.store import Store


def _rng(seed: int) -> random.Random:
    return random.Random(f"rackwave:churn:{seed}")


class Churn:
    """Applies churn to one collection per list request.

    Not locked itself: :meth:`apply` runs with the store lock held, which is
    also what makes the changes atomic with respect to every page read.
    """

    def __init__(self, seed: int) -> None:
        self._rng = _rng(seed)

    def reset(self, seed: int) -> None:
        """Reseed, so that after ``/_admin/reset`` the same requests churn the same way."""
        self._rng = _rng(seed)

    def _draw(self, rate: float) -> int:
        """The integer part of ``rate`` always, plus one with the fractional part's probability."""
        whole = int(rate)
        fraction = rate - whole
        if fraction > 0 and self._rng.random() < fraction:
            whole += 1
        return whole

    def apply(self, store: Store, kind: str, creates: float, deletes: float) -> tuple[int, int]:
        """Create, then delete, records of ``kind``; return ``(created, deleted)``.

        Must be called with ``store.lock`` held. Creates come first so that a
        deletion can hit a record churn just made, as it could in a live API.
        Victims are uniform over the whole collection: deletions above a
        client's position shift the pages it has yet to read.
        """
        created = self._draw(creates)
        wanted = self._draw(deletes)
        for _ in range(created):
            store.new_record(kind)
        coll = store.collection(kind)
        deleted = 0
        rng = self._rng
        while deleted < wanted and len(coll):
            coll.delete(coll.id_at(rng.randrange(len(coll))))
            deleted += 1
        return created, deleted
