"""Progress events of a run, for whoever shows them: a small observer the scan calls.

Why an observer and not a progress bar: the source knows what the work is (a full scan of
``meta.last_page`` pages, an incremental read back to a cursor whose distance nobody knows until
it is passed, re-reads, deletion lookups) but not where it is shown (a terminal, a scheduler's
log, a user's own dashboard). So it only reports, and whoever runs the source decides:

* ``rackwave_source(progress=my_observer)``: any object with the four methods of
  :class:`Progress` (a user's own code, or a test);
* otherwise, the running pipeline's collector, when it is one (``dlt.pipeline(...,
  progress=RunProgress())``: the ``rackwave`` command's display, ``pipelines/progress_display.py``, is
  both a dlt collector and a :class:`Progress`);
* otherwise nothing (:data:`NO_PROGRESS`).

Cost: one call per page, made by the thread that hands pages to dlt (the scan's workers only
fetch), so an observer needs no lock for ``page``; it should only add to counters there and do
any drawing on a thread of its own.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, runtime_checkable

from rackwave_source.read.cursor import ScanPlan
from rackwave_source.dlt_internals import active_pipeline

#: The phases after a resource's main pass, as passed to :meth:`Progress.phase`.
PHASE_TOP = "top"  # a full scan reads page 1 again, and on while records were created meanwhile
PHASE_HOLES = "holes"  # ranges no page vouched for, read again where they are now
PHASE_DELETIONS = "deletions"  # a full scan checks the loaded rows it did not see (lookups)


@runtime_checkable
class Progress(Protocol):
    """What a run of one resource reports, in this order: ``started``; ``page`` for every page
    (main pass, then re-reads); ``phase`` when a phase after the main pass begins; ``finished``
    when the resource is done (not called when the run fails: the run's error says why).

    ``plan.full_scan`` tells whether the amount is known: a full scan reads ``last_page`` pages
    (``plan.since`` set only by ``start_date``, which may stop it earlier); an incremental run
    reads until its pages pass ``plan.since``, the cursor bound, which no count announces."""

    def started(self, resource: str, plan: ScanPlan) -> None:
        """A resource's read begins."""

    def page(self, resource: str, rows: int, total: int, last_page: int) -> None:
        """A page was taken: ``rows`` records new to this run, and the API's ``meta.total`` and
        ``meta.last_page`` as this page reported them."""

    def phase(self, resource: str, name: str) -> None:
        """A phase after the main pass begins (``PHASE_TOP``, ``PHASE_HOLES``,
        ``PHASE_DELETIONS``); its pages (if any) follow as ``page`` calls."""

    def finished(self, resource: str) -> None:
        """Everything of the resource was read and handed to dlt."""


class NoProgress:
    """Reports nowhere (the default)."""

    def started(self, resource: str, plan: ScanPlan) -> None:
        pass

    def page(self, resource: str, rows: int, total: int, last_page: int) -> None:
        pass

    def phase(self, resource: str, name: str) -> None:
        pass

    def finished(self, resource: str) -> None:
        pass


NO_PROGRESS: Progress = NoProgress()


def observer(given: Optional[Progress]) -> Progress:
    """The observer of this run: the one given to the source, else the running pipeline's
    collector if it is a :class:`Progress`, else :data:`NO_PROGRESS`. Looked up once per
    resource and run, not per page."""
    if given is not None:
        return given
    pipeline = active_pipeline()
    collector: Any = getattr(pipeline, "collector", None)
    return collector if isinstance(collector, Progress) else NO_PROGRESS

