"""The ``rackwave_quarantine`` table: one row per distinct bad record, with when it was first and
last seen (``rows/quarantine.py`` decides which records go there).
"""

from __future__ import annotations
import hashlib
from datetime import datetime
from typing import Any, Dict, List, MutableMapping
import dlt
from rackwave_source import settings as S
from rackwave_source.timestamps import from_iso, to_iso
from rackwave_source.warehouse.target import merged_variant_hints
from rackwave_source.rows.quarantine import QUARANTINE_KEY, QUARANTINE_TABLE


#: The resource state's key: ``{record_key: first_seen_at}`` of the records set aside that the
#: API holds, as far as the runs saw (a full scan replaces it; incremental runs add).
STATE_QUARANTINED = "quarantined"


def record_key(row: Dict[str, Any]) -> str:
    """The quarantine row's key: the resource and the record's content, hashed."""
    digest = hashlib.sha256(f"{row['resource']}\x00{row['record']}".encode())
    return digest.hexdigest()[:32]


class QuarantineLedger:
    """The records one run sets aside, each once, dated from when a run first saw it."""

    def __init__(self, resource: str, state: MutableMapping[str, Any], full_scan: bool) -> None:
        self._resource = resource
        self._state = state
        self._known: Dict[str, str] = dict(state.get(STATE_QUARANTINED) or {})
        self._seen: Dict[str, str] = {}
        self._full_scan = full_scan

    def item(self, rows: List[Dict[str, Any]], when: datetime) -> Any:
        """Rejected records as an item for the quarantine table, beside the resource's; a record
        this run already set aside (a page read again) is left out."""
        out = []
        for row in rows:
            key = record_key(row)
            if key in self._seen:
                continue
            first = self._known.get(key) or to_iso(when)
            self._seen[key] = first
            out.append({**row, QUARANTINE_KEY: key, "first_seen_at": from_iso(first),
                        "last_seen_at": when, "_dlt_id": key})
        return dlt.mark.with_hints(out, dlt.mark.make_hints(
            table_name=QUARANTINE_TABLE, **merged_variant_hints(self._resource)),
            create_table_variant=True)

    def now_full_scan(self) -> None:
        """The run goes on as a full scan (an incremental read repaired): what it sets aside
        from now on, with what it set aside so far, is all the API holds."""
        self._full_scan = True

    @property
    def new(self) -> int:
        """Records set aside for the first time by this run."""
        return sum(1 for key in self._seen if key not in self._known)

    @property
    def held(self) -> int:
        """Records set aside that the API holds as the run ends: those this full scan saw, or
        those known before plus those this incremental run saw."""
        return len(self._seen) if self._full_scan else len(self._known.keys() | self._seen.keys())

    def close(self) -> None:
        """Writes the ledger to the state (called once every page was read)."""
        known = self._seen if self._full_scan else {**self._known, **self._seen}
        if known:
            self._state[STATE_QUARANTINED] = dict(sorted(known.items())[:S.MAX_QUARANTINE_KEYS])
        else:
            self._state.pop(STATE_QUARANTINED, None)
