"""Records a full scan did not see: deleted from the API, or only missed? Confirmed, then applied.

A full scan merges every record it read. A warehouse row whose id the scan did not see is a
*candidate*: its record was deleted, or it was not seen. A quiet scan (``coverage.py``) proves
the first: nothing changed while it paged, so what it did not see is gone. Otherwise each
candidate is looked up through the API's ``search`` parameter (by its email, or by its name when
it has none):

* found: the record is still there; it is loaded as the API has it now;
* every search came back without it: it is gone. Its row is yielded again with
  ``_rackwave_deleted_at`` set: ``deleted_records = "delete"`` marks that column as dlt's
  ``hard_delete``, so the merge removes the row; ``"flag"`` keeps it, flagged;
* no search can tell (no email or name, or more matches than a few pages): it is left as
  loaded, and the next full scan asks again.

So a record the API still holds is never removed nor flagged on the strength of its absence from
a scan that may have missed it, and a full scan is a merge like any run: loading its package
twice (a run resumed after a kill) changes nothing, and a load that fails half way leaves every
row it did not reach as it was. Lookups cost one request per candidate (deletions since the last
full scan, plus any record the scan missed), never one per record of the account. Rows already
flagged stay as they are: a deleted id does not come back.

Plain parquet files cannot merge: there a full scan replaces the files (``replacing``), so the
rows to keep (undecided, flagged) are yielded again instead, and the gone ones simply left out.

The warehouse is read back (``loaded.py``) as ids and search fields only; whole rows are read
for the few rows yielded again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dlt.common.schema.typing import TColumnSchema

from rackwave_source import settings as S
from rackwave_source.api.endpoint import ListEndpoint, LookupInconclusive
from rackwave_source.read.scan import Scan, id_hash
from rackwave_source.warehouse.target import DELETED_AT
from rackwave_source.warehouse.loaded import LoadedTable


def deleted_at_column(flag: bool) -> Dict[str, TColumnSchema]:
    """The deletion column's hints: kept (``flag``), or dlt's ``hard_delete`` marker."""
    return {DELETED_AT: {"data_type": "timestamp", "nullable": True, "hard_delete": not flag}}


@dataclass
class DeletionCounts:
    """What the reconciliation decided (the run record reports it)."""

    candidates: int = 0  # loaded rows the scan did not see (not counting rows flagged before)
    confirmed: int = 0  # of those, gone from the API (dropped, or flagged now)
    still_there: int = 0  # of those, found by a lookup: reloaded as they are now
    undecided: int = 0  # of those, no lookup could tell: kept as loaded
    lookups: int = 0  # records looked up


@dataclass(frozen=True)
class Reconciliation:
    """How a full scan's unseen rows are applied."""

    flag: bool  # deleted_records = "flag"
    replacing: bool  # the scan replaces the table (plain parquet) instead of merging
    when: datetime  # the deletion time given to rows confirmed gone
    concurrency: int = 1


def reconcile(endpoint: ListEndpoint, scan: Scan, lookup_fields: Sequence[Tuple[str, ...]],
              how: Reconciliation, counts: DeletionCounts) -> Iterator[pa.Table]:
    """Yields the rows the full scan must also load (see the module docstring)."""
    if how.replacing and scan.quiet and not how.flag:
        return  # proven: every unseen row is gone, and the replace leaves it out
    loaded = LoadedTable.of(endpoint.resource)
    if loaded is None:
        return
    wanted = [S.PRIMARY_KEY, DELETED_AT, *{n: 0 for fields in lookup_fields for n in fields}]
    for unseen in unseen_rows(scan, loaded, wanted):
        flagged_before = _flagged(unseen)
        if flagged_before is not None:
            before = unseen.filter(flagged_before)
            if before.num_rows and how.flag == how.replacing:  # kept by a replace; or dropped
                yield _deleted(loaded, before, how.when)  # by a merge now in "delete" mode
            unseen = unseen.filter(pc.invert(flagged_before))
        counts.candidates += unseen.num_rows
        gone, found, undecided = _decide(endpoint, unseen, lookup_fields, scan.quiet, counts,
                                         how.concurrency)
        counts.confirmed += gone.num_rows
        yield from found
        if how.replacing and undecided.num_rows:
            yield loaded.rows(_ids(undecided))
        if gone.num_rows and not (how.replacing and not how.flag):
            yield _deleted(loaded, gone, how.when)


def _decide(
    endpoint: ListEndpoint, rows: pa.Table, lookup_fields: Sequence[Tuple[str, ...]],
    quiet: bool, counts: DeletionCounts, concurrency: int,
) -> Tuple[pa.Table, List[pa.Table], pa.Table]:
    """Splits candidates into the confirmed gone, the found (as the API has them now) and the
    undecided. Lookups run on up to ``concurrency`` threads, like a scan's pages."""
    if quiet:
        return rows, [], rows.slice(0, 0)

    def look(row: Dict[str, Any]) -> Union[pa.Table, None, LookupInconclusive]:
        try:
            return endpoint.lookup(str(row[S.PRIMARY_KEY]), _terms(row, lookup_fields))
        except LookupInconclusive as exc:
            return exc

    gone: List[int] = []
    found: List[pa.Table] = []
    undecided: List[int] = []
    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="rackwave-lookup") as pool:
        for index, result in enumerate(pool.map(look, rows.to_pylist())):
            counts.lookups += 1
            if isinstance(result, LookupInconclusive):
                undecided.append(index)
            elif result is None:
                gone.append(index)
            else:
                counts.still_there += 1
                found.append(result)
    counts.undecided += len(undecided)
    return _take(rows, gone), found, _take(rows, undecided)


def unseen_rows(scan: Scan, loaded: LoadedTable, columns: Sequence[str]) -> Iterator[pa.Table]:
    """The loaded rows (``columns`` of them) whose id the full scan did not see, a chunk at a
    time; empty chunks are skipped."""
    seen = np.sort(np.frombuffer(scan.seen, dtype=np.int64))
    for chunk in loaded.keys(columns):
        unseen = chunk.filter(pa.array(~_contains(seen, _hashes(chunk))))
        if unseen.num_rows:
            yield unseen


def _take(rows: pa.Table, indices: List[int]) -> pa.Table:
    return rows.take(pa.array(indices, pa.int64()))


def _terms(row: Dict[str, Any], lookup_fields: Sequence[Tuple[str, ...]]) -> List[str]:
    """The search term for one row: the first entry whose fields are all present, joined by a
    space (one request per lookup: the email finds the record when it has one)."""
    for fields in lookup_fields:
        values = [row.get(name) for name in fields]
        if all(isinstance(v, str) and v.strip() for v in values):
            return [" ".join(str(v).strip() for v in values)]
    return []


def _ids(table: pa.Table) -> List[str]:
    return [str(v) for v in table.column(S.PRIMARY_KEY).to_pylist()]


def _hashes(table: pa.Table) -> Any:
    ids = table.column(S.PRIMARY_KEY).to_pylist()
    return np.fromiter(map(id_hash, ids), dtype=np.int64, count=len(ids))


def _contains(sorted_hashes: Any, hashes: Any) -> Any:
    """Boolean mask: which of ``hashes`` are in ``sorted_hashes``."""
    if not len(sorted_hashes):
        return np.zeros(len(hashes), dtype=bool)
    positions = np.searchsorted(sorted_hashes, hashes)
    positions[positions >= len(sorted_hashes)] = 0
    return sorted_hashes[positions] == hashes


def _flagged(table: pa.Table) -> Optional[pa.Array]:
    if DELETED_AT not in table.column_names:
        return None
    return pc.is_valid(table.column(DELETED_AT))


def _deleted(loaded: LoadedTable, keys: pa.Table, flagged_at: datetime) -> pa.Table:
    """Whole rows of these keys as loaded, with the deletion time set where it was not set."""
    table = loaded.rows(_ids(keys))
    when = pa.scalar(flagged_at, pa.timestamp("us", tz="UTC"))
    if DELETED_AT in table.column_names:
        index = table.schema.get_field_index(DELETED_AT)
        current = table.column(DELETED_AT).cast(pa.timestamp("us", tz="UTC"))
        return table.set_column(index, DELETED_AT, pc.fill_null(current, when))
    return table.append_column(DELETED_AT, pa.array([flagged_at] * table.num_rows, when.type))
