"""Passes over a list endpoint: one page after another, or contiguous blocks on many workers.

A pass never trusts ``meta.total`` or ``meta.last_page`` alone to say where the list ends: a count
that trails the data by a record would leave the oldest record unread. It reads on while pages are
full, and stops on a page that is short *by the server's own page size* (``meta.per_page``, not
the size asked for: a server may serve fewer) and that its meta says is the last
(``Page.ends_list``). ``last_page`` otherwise only sizes the work up front.

The concurrent pass gives each worker a contiguous block of pages that it reads in order, each
page asked for only once the one before was answered. That order is what lets the totals of two
neighbouring pages prove that nothing slid between them (``coverage.py``); only the few seams
between blocks lack that proof. Pages reach the caller as workers deliver them, not in page order:
repeats are recognised by their ``created_at`` ranges, not by position.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, List, Optional, Union

from rackwave_source import settings as S
from rackwave_source.api.decode import Page
from rackwave_source.api.endpoint import ListEndpoint

@dataclass(frozen=True)
class Block:
    """Pages ``first``..``last`` for one worker; the last block reads on while pages are full."""

    first: int
    last: int
    open_ended: bool


def plan_blocks(first: int, last: int, workers: int, min_pages: int = S.MIN_BLOCK_PAGES) -> List[Block]:
    """Splits pages ``first``..``last`` into at most ``workers`` contiguous blocks of at least
    ``min_pages`` pages (fewer seams, each a possible re-read under churn)."""
    pages = max(0, last - first + 1)
    count_ = max(1, min(workers, pages // max(1, min_pages)))
    size, rest = divmod(pages, count_)
    blocks: List[Block] = []
    start = first
    for index in range(count_):
        end = start + size + (1 if index < rest else 0) - 1
        blocks.append(Block(start, max(start, end), open_ended=index == count_ - 1))
        start = end + 1
    return blocks


def sequential_pass(endpoint: ListEndpoint, start: int = 1) -> Iterator[Page]:
    """Pages ``start``, ``start + 1``, ... until the list ends (``Page.ends_list``); the caller may
    stop early."""
    number = start
    while True:
        page = endpoint.page(number)
        yield page
        if page.ends_list:
            return
        number += 1


_Item = Union[List[Page], BaseException, None]


def concurrent_pass(
    endpoint: ListEndpoint, first: Page, concurrency: int,
    stop_below_us: Optional[int] = None, pages_per_read: int = S.PAGES_PER_READ,
) -> Iterator[Page]:
    """Every page after ``first`` (page 1), read by up to ``concurrency`` workers in blocks.

    Yields pages as runs of them arrive. At most ``concurrency + 2`` runs are held (two queued,
    one per worker waiting to hand its run over), so memory stays bounded whatever the account's
    size. A worker stops early once its
    pages reach below ``stop_below_us`` (``start_date``). Closing the generator (an early stop or
    an error) stops the workers before their next request.
    """
    if first.ends_list:
        return
    blocks = plan_blocks(2, max(2, first.last_page), max(1, concurrency))
    workers = _BlockWorkers(endpoint, stop_below_us, pages_per_read)
    pool = ThreadPoolExecutor(len(blocks), thread_name_prefix=f"rackwave-{endpoint.resource}")
    try:
        for block in blocks:
            pool.submit(workers.work, block)
        running = len(blocks)
        while running:
            item = workers.out.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield from item
    finally:
        workers.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


class _BlockWorkers:
    """The workers of one concurrent pass: each reads its block in runs of pages and hands each
    run, then its end (``None``) or its error, to the consumer through a queue of two."""

    def __init__(self, endpoint: ListEndpoint, stop_below_us: Optional[int],
                 pages_per_read: int) -> None:
        self.endpoint = endpoint
        self.stop_below_us = stop_below_us
        self.pages_per_read = pages_per_read
        self.out: "queue.Queue[_Item]" = queue.Queue(maxsize=2)
        self.stop = threading.Event()  # set by the consumer: closed, or failed

    def put(self, item: _Item) -> None:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def work(self, block: Block) -> None:
        number = block.first
        try:
            while not self.stop.is_set():
                size = _run_size(block, number, self.pages_per_read)
                run = self.endpoint.run(range(number, number + size))
                self.put(run)
                number += size
                if _block_read(run, number, block, self.stop_below_us):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self.put(exc)
        finally:
            self.put(None)


def _run_size(block: Block, number: int, pages_per_read: int) -> int:
    """How many pages from ``number`` one request run reads: up to ``pages_per_read``, not past
    a closed block's last page (an open-ended block goes on until the list ends)."""
    end = block.last if not block.open_ended or number <= block.last else number
    return max(1, min(pages_per_read, end - number + 1))


def _block_read(run: List[Page], next_number: int, block: Block,
                stop_below_us: Optional[int]) -> bool:
    """Whether a worker is done after ``run``: the list ended in it, its pages reached below
    ``start_date``, or a closed block's last page was read."""
    if any(page.ends_list for page in run):
        return True
    if stop_below_us is not None and _below(run, stop_below_us):
        return True
    return next_number > block.last and not block.open_ended


def _below(run: List[Page], bound_us: int) -> bool:
    """Whether the last record with a ``created_at`` in ``run`` is older than ``bound_us``."""
    for page in reversed(run):
        if page.created_us:
            return page.created_us[-1] < bound_us  # type: ignore[operator]
    return False


def page_of(position: int, per_page: int) -> int:
    """The page number holding 0-based list ``position``."""
    return max(1, position // per_page + 1)
