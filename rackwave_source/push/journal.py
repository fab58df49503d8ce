"""The push journal: what was sent to an account, written down before and after each POST.

``POST /leads`` is create-only, and dlt's ``@dlt.destination`` is at-least-once: a batch that was
running when a push was killed is given to us again. So each row is marked *pending* (with its
attempt count) before its request leaves, and given its outcome once the answer is in; each
change is committed before the next step, so a kill at any point leaves the truth on disk:

* a row with an outcome is never sent again (a rejected one only once its content changed);
* a pending row may have been created by the request in flight: it is looked up before it is
  sent again, and the lead found is ours only by the rule of ``sender.py``, which needs what was
  true *before the row's first request left*: so the first attempt also writes down the batch's
  mark (the server's clock and the leads dated at or after it, ``marks``) and the server's clock
  the row's thread last saw (``first_clock``). A later attempt, or a rerun after a kill, keeps
  them: they are never rewritten while the row is pending.

One SQLite file per account (base URL and client id, hashed) under dlt's data folder: the
outcomes belong to the account, whichever pipeline pushed them. The warehouse's
``rackwave_push_log`` is filled from here, and seeds it back on a machine that lost the file.
SQLite in WAL mode commits in tens of microseconds, durable against a killed process.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

from dlt.common.runtime import run_context
from dlt.common.json import json

from rackwave_source import settings as S
from rackwave_source.push.rows import FieldErrors, PushRow

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    key TEXT PRIMARY KEY,
    email TEXT,
    content_hash TEXT NOT NULL,
    status TEXT NOT NULL,          -- pending, created, existing, rejected
    lead_id TEXT,
    errors TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    pushed_at TEXT,
    load_id TEXT,
    logged INTEGER NOT NULL DEFAULT 0,
    mark INTEGER,                  -- marks.mark taken before the row's first attempt
    first_clock TEXT               -- the server's clock last seen before that attempt left
)
"""
_MARKS = """
CREATE TABLE IF NOT EXISTS marks (
    mark INTEGER PRIMARY KEY AUTOINCREMENT,
    clock TEXT,                    -- the server's Date on the read, None when it sent none
    lead_ids TEXT NOT NULL         -- JSON: the leads dated at or after it, as the read found them
)
"""
#: columns added since the first journals: a journal written before gets them (NULL: such a
#: pending row's lead, if found, is ``existing``: nothing tells it was ours)
_ADDED_COLUMNS = (("mark", "INTEGER"), ("first_clock", "TEXT"))
PENDING = "pending"


@dataclass(frozen=True)
class FirstAttempt:
    """What was true before a row's first request left: the batch's mark (the server's clock
    ``clock`` and ``lead_ids``, the leads dated at or after it then) and ``first_clock``, the
    server's clock on the last answer before that request. None for a clock the server did not
    give."""

    clock: Optional[datetime]
    lead_ids: frozenset[str]
    first_clock: Optional[datetime]


@dataclass(frozen=True)
class Outcome:
    """One row's current outcome, as the push log holds it."""

    key: str
    email: Optional[str]
    status: str
    lead_id: Optional[str]
    errors: Optional[FieldErrors]
    content_hash: str
    pushed_at: datetime
    load_id: Optional[str]

    def log_row(self) -> Dict[str, Any]:
        """The row of ``rackwave_push_log`` (errors as JSON text: every warehouse reads it)."""
        return {
            "row_key": self.key,
            "email": self.email,
            "status": self.status,
            "lead_id": self.lead_id,
            "errors": json.dumps(self.errors) if self.errors else None,
            "content_hash": self.content_hash,
            "pushed_at": self.pushed_at,
            "load_id": self.load_id,
        }


def default_journal_path(base_url: str, client_id: str) -> str:
    """One journal per account: the account's identity hashed, so the file name tells nothing."""
    account = hashlib.sha256(f"{base_url.rstrip('/')}\n{client_id}".encode()).hexdigest()[:16]
    folder = run_context.active().get_data_entity(S.PUSH_JOURNAL_FOLDER)
    return os.path.join(folder, f"{account}.sqlite")


class PushJournal:
    """Thread-safe: the push's workers share one connection under one lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.execute(_MARKS)
        known = {r[1] for r in self._db.execute("PRAGMA table_info(outcomes)").fetchall()}
        for name, kind in _ADDED_COLUMNS:
            if name not in known:
                self._db.execute(f"ALTER TABLE outcomes ADD COLUMN {name} {kind}")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def settled(self, row: PushRow) -> Optional[Outcome]:
        """The outcome that stands for ``row``: created or existing whatever its content now
        (the API cannot change a lead), rejected while its content is the same."""
        found = self._get(row.key)
        if found is None or found.status == PENDING:
            return None
        if found.status == "rejected" and found.content_hash != row.content_hash:
            return None
        return found

    def add_mark(self, clock: Optional[datetime], lead_ids: Iterable[str]) -> int:
        """Writes down a batch's mark (see the module) before any of its rows is sent."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO marks (clock, lead_ids) VALUES (?, ?)",
                (clock.isoformat() if clock else None, json.dumps(sorted(set(lead_ids)))))
            return int(cursor.lastrowid or 0)

    def begin(self, row: PushRow, load_id: Optional[str], mark: Optional[int] = None,
              first_clock: Optional[datetime] = None) -> int:
        """Marks ``row`` pending before its request leaves; returns the attempts made before
        (by this push or a killed one): more than 0 means a create may already have happened.
        ``mark`` and ``first_clock`` are written at the first attempt only (see the module)."""
        with self._lock:
            found = self._db.execute(
                "SELECT status, attempts FROM outcomes WHERE key = ?", (row.key,)).fetchone()
            earlier = int(found[1]) if found is not None and found[0] == PENDING else 0
            first = None if earlier else (mark, first_clock.isoformat() if first_clock else None)
            self._db.execute(
                "INSERT INTO outcomes (key, email, content_hash, status, attempts, load_id, mark, "
                "first_clock) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE "
                "SET email = excluded.email, content_hash = excluded.content_hash, "
                "status = 'pending', attempts = excluded.attempts, load_id = excluded.load_id, "
                "lead_id = NULL, errors = NULL"
                + ("" if earlier else ", mark = excluded.mark, first_clock = excluded.first_clock"),
                (row.key, row.email, row.content_hash, earlier + 1, load_id,
                 *(first or (None, None))))
        return earlier

    def first_attempt(self, row: PushRow) -> Optional[FirstAttempt]:
        """What the row's first attempt wrote down; None when nothing was (a journal from
        before marks, or a row never sent)."""
        with self._lock:
            found = self._db.execute(
                "SELECT m.clock, m.lead_ids, o.first_clock FROM outcomes o JOIN marks m "
                "ON m.mark = o.mark WHERE o.key = ?", (row.key,)).fetchone()
        if found is None:
            return None
        clock, lead_ids, first_clock = found
        return FirstAttempt(_clock(clock), frozenset(json.loads(lead_ids)), _clock(first_clock))

    def finish(self, row: PushRow, status: str, lead_id: Optional[str],
               errors: Optional[FieldErrors], load_id: Optional[str]) -> Outcome:
        """Records ``row``'s outcome, to be logged to the warehouse."""
        outcome = Outcome(row.key, row.email, status, lead_id, errors or None, row.content_hash,
                          datetime.now(timezone.utc), load_id)
        self._put(outcome, logged=False)
        return outcome

    def unlogged(self) -> List[Outcome]:
        """Outcomes not yet in the warehouse's push log."""
        return self._select("WHERE logged <> 1 AND status <> 'pending'", ())

    def mark_logged(self, outcomes: Sequence[Outcome]) -> None:
        """After the push log's load completed; an outcome changed since is logged again."""
        with self._lock:
            self._db.executemany(
                "UPDATE outcomes SET logged = 1 WHERE key = ? AND status = ? AND pushed_at = ?",
                [(o.key, o.status, o.pushed_at.isoformat()) for o in outcomes])

    def claim_unlogged(self) -> int:
        """Claims the outcomes not yet in the push log (and any claimed by a push killed while
        logging) for one load; returns how many. Claiming by a flag, not by a list in memory, lets
        a million outcomes be logged chunk by chunk (``claimed``, then ``mark_claimed_logged``)."""
        with self._lock:
            before = self._db.total_changes
            self._db.execute(f"UPDATE outcomes SET logged = {_CLAIMED} "
                             "WHERE logged <> 1 AND status <> 'pending'")
            return self._db.total_changes - before

    def claimed(self, chunk_size: int) -> Iterator[List[Outcome]]:
        """The claimed outcomes, ``chunk_size`` at a time (one read, fetched in chunks)."""
        with self._lock:
            cursor = self._db.cursor()
            cursor.execute(f"{_SELECT} WHERE logged = {_CLAIMED}")
        while True:
            with self._lock:
                rows = cursor.fetchmany(chunk_size)
            if not rows:
                return
            yield [_outcome(row) for row in rows]

    def mark_claimed_logged(self) -> None:
        """After the push log's load completed. An outcome changed since its claim was given
        ``logged = 0`` by ``finish`` and is logged the next time."""
        with self._lock:
            self._db.execute(f"UPDATE outcomes SET logged = 1 WHERE logged = {_CLAIMED}")

    def seed(self, outcomes: Iterable[Outcome]) -> int:
        """Takes in outcomes from the warehouse log that this file does not know (a new machine,
        a lost file); returns how many were new."""
        with self._lock:
            before = self._db.total_changes
            for outcome in outcomes:
                self._db.execute(
                    "INSERT OR IGNORE INTO outcomes (key, email, content_hash, status, lead_id, "
                    "errors, pushed_at, load_id, logged) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
                    _values(outcome))
            return self._db.total_changes - before

    def pending(self) -> int:
        """Rows whose request may have been sent with no answer recorded."""
        with self._lock:
            return int(self._db.execute(
                "SELECT count(*) FROM outcomes WHERE status = 'pending'").fetchone()[0])

    def _put(self, outcome: Outcome, logged: bool) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO outcomes (key, email, content_hash, status, lead_id, errors, "
                "pushed_at, load_id, logged) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET email = excluded.email, "
                "content_hash = excluded.content_hash, status = excluded.status, "
                "lead_id = excluded.lead_id, errors = excluded.errors, "
                "pushed_at = excluded.pushed_at, load_id = excluded.load_id, "
                "logged = excluded.logged",
                (*_values(outcome), int(logged)))

    def _get(self, key: str) -> Optional[Outcome]:
        found = self._select("WHERE key = ?", (key,))
        return found[0] if found else None

    def _select(self, where: str, args: Sequence[Any]) -> List[Outcome]:
        with self._lock:
            rows = self._db.execute(f"{_SELECT} {where}", tuple(args)).fetchall()
        return [_outcome(row) for row in rows]


_SELECT = ("SELECT key, email, status, lead_id, errors, content_hash, pushed_at, load_id "
           "FROM outcomes")
#: ``logged`` of an outcome taken into a push log load that has not completed yet
_CLAIMED = -1


def _outcome(row: Sequence[Any]) -> Outcome:
    key, email, status, lead_id, errors, content_hash, pushed_at, load_id = row
    return Outcome(key, email, status, lead_id, json.loads(errors) if errors else None,
                   content_hash, _when(pushed_at), load_id)


def _values(outcome: Outcome) -> tuple[Any, ...]:
    return (outcome.key, outcome.email, outcome.content_hash, outcome.status, outcome.lead_id,
            json.dumps(outcome.errors) if outcome.errors else None,
            outcome.pushed_at.isoformat(), outcome.load_id)


def _clock(text: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(text) if text else None


def _when(text: Optional[str]) -> datetime:
    return datetime.fromisoformat(text) if text else datetime.now(timezone.utc)
