"""Sending rows to ``POST /leads`` exactly once.

A create-only API makes "exactly once" a matter of telling, after any failure, whether the lead
exists. Rackwave keeps email unique and documents a ``search`` parameter, so (``_send``):

* every row is written to the journal as pending before each of its requests leaves;
* a request that may have reached the server without an answer (a 5xx, a connection lost after
  sending, a 2xx body cut short), or a row left pending by a killed push, is looked up by its
  email before anything is sent again: not found, it is sent again; found, the lead is ours or
  was there before, by the rule below. So a lost answer costs one lookup, not a second create;
* 2xx: created, with the id the API returns;
* 422 on email only: the email is taken. ``search`` finds the lead's id: on a first attempt it
  already existed; after an attempt that may have created it, the rule below decides;

Whose lead is it? A lead found after a failure that may hide a create is ``created`` only when
the push can prove it made it; otherwise ``existing`` (a lead logged ``existing`` that the push
did make is a wrong word in the log; one logged ``created`` that existed before is a false
audit, so every undecidable case goes to ``existing``). The proof uses only the server's
clock (its ``Date`` header: this machine's clock may be anywhere) and what was written to the
journal *before the row's first request left*, so a kill and a rerun judge with the same facts:

1. before a batch's first POST, the pusher reads the newest leads (``GET /leads``, newest
   first by ``created_at``, as documented) and the answer's ``Date``, the *mark* ``M``; it keeps
   the ids of every lead dated at or after ``M`` (paging on while a page ends at or after ``M``);
2. at a row's first attempt the journal gets that mark and ``F``, the ``Date`` of the last answer
   the row's thread received (never earlier than ``M``); later attempts and reruns keep both;
3. the lead found is ours only if it is not among the mark's ids and its ``created_at`` is at or
   after ``F``. Otherwise, or when the server sent no ``Date``, a ``created_at`` that is no
   timestamp, or a journal from before marks: ``existing``.

Why it cannot call a lead that existed before the row's first request ``created``: such a lead
existed when the mark was read or was made between the mark and the request. Had it existed at
the mark, it is dated before ``M`` (so before ``F``: step 3 refuses it) or at or after ``M`` (so
it is in the mark's ids, whatever the two clocks' seconds: the tie of equal seconds is decided
by the ids, not by comparing times). Leads dated in the mark's own second are the common case
(the push's first creates share it), which is why ``M`` alone would not do: the ids settle it.
A lead made by someone else between the last answer before the row's request and its arrival,
with the same email, is the one case no client can tell from its own (the API has no
idempotency key, and its answer was lost): the rule narrows that window to the second of ``F``
and says so here. A server clock that runs behind or ahead of the lead's stamps (two servers)
can only turn ours into ``existing``: ``F`` is from an answer the server gave before the
request, and the ids do not depend on any clock. Cost: one ``GET`` per batch (5,000 rows), and
nothing per row.
* any other 422 or a 400: rejected, with the API's field errors; 401 after a renewed token,
  403, 404: the push stops (credentials or URL are wrong, no row is to blame).

Rows are sent concurrently, through the client's shared throttle (the rate budget and token of
the source), by a short-lived thread pool per batch. The first error stops the batch's other
rows before they send; their journal entries stay as they were, so a rerun is exact.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from dlt.common.runtime import signals

from rackwave_source import settings as S
from rackwave_source.api.client import Answer, RackwaveClient, log_retry
from rackwave_source.exceptions import RackwaveTransientError, ServerError, api_error_for
from rackwave_source.push.journal import Outcome, PushJournal
from rackwave_source.push.rows import FieldErrors, PushRow, prepare_row

#: the count of rows that already had an outcome standing, so nothing was sent for them
UNCHANGED = "unchanged"


class PushInterrupted(RackwaveTransientError):
    """A signal stopped a batch: dlt keeps it to run again (the journal keeps that exact)."""

    def __init__(self, left: int) -> None:
        super().__init__(f"The push was stopped with {left} rows of a batch not sent; the next "
                         "push sends them.")


class LeadPusher:
    """Pushes batches of rows; ``counts`` tells what became of them (outcomes and lookups)."""

    def __init__(self, client: RackwaveClient, journal: PushJournal, concurrency: int,
                 phone_separators: str) -> None:
        self.client = client
        self.journal = journal
        self.concurrency = concurrency
        self.phone_separators = phone_separators
        self.counts: Counter[str] = Counter()
        #: the first rejected rows of this push (key, errors), for the summary
        self.rejects: List[Tuple[str, FieldErrors]] = []
        self._counts_lock = threading.Lock()
        self._stop = threading.Event()

    def push(self, items: Iterable[Mapping[str, Any]], load_id: Optional[str]) -> None:
        """Pushes one batch: every row ends with an outcome in the journal, or an error is
        raised with the rows not reached left pending or untouched for the next attempt. The
        batch's mark is read and written down before its first row is sent (see the module)."""
        to_send: List[PushRow] = []
        for row in self.plan(items):
            if self.journal.settled(row) is not None:
                self._count(UNCHANGED)
            elif not row.valid:
                self._record(self.journal.finish(row, "rejected", None, row.errors, load_id))
            else:
                to_send.append(row)
        if not to_send:
            return
        mark, clock = self.take_mark()
        self._stop.clear()
        with ThreadPoolExecutor(min(self.concurrency, len(to_send)),
                                thread_name_prefix="rackwave-push") as pool:
            futures = [pool.submit(self._send, row, load_id, mark, clock) for row in to_send]
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error
        left = sum(1 for future in futures if not future.result())
        if left:  # a signal stopped the batch
            raise PushInterrupted(left)

    def plan(self, items: Iterable[Mapping[str, Any]]) -> List[PushRow]:
        """The batch's rows, checked; a key seen twice keeps its first row (one lead per email:
        the second would only find the first one taken)."""
        rows: Dict[str, PushRow] = {}
        for item in items:
            row = prepare_row(item, self.phone_separators)
            if row.key in rows:
                self._count("duplicates")
            else:
                rows[row.key] = row
        return list(rows.values())

    def take_mark(self) -> Tuple[int, Optional[datetime]]:
        """Reads the newest leads and the server's clock, and writes them to the journal: rule 1
        of the module. Returns the mark's number and clock."""
        clock: Optional[datetime] = None
        ids: Set[str] = set()
        page, last_page = 1, 1
        while page <= last_page:
            self._count("marks")
            body = self.client.get(S.LEADS_PATH, {"page": page, "per_page": S.PUSH_MARK_PER_PAGE})
            clock = clock or self.client.answered_at()
            if clock is None:  # no Date: nothing found after a failure will count as ours
                break
            since: datetime = clock
            leads = [lead for lead in body.get("data") or [] if isinstance(lead, dict)]
            dated = [(lead, _created_at(lead)) for lead in leads]
            # a lead dated at or after the clock, or with no readable date, stands in the mark
            ids.update(str(lead.get("id")) for lead, at in dated if at is None or at >= since)
            last_at = dated[-1][1] if dated else None
            if dated and last_at is not None and last_at < since:
                break  # newest first: every later page is older than the clock
            meta = body.get("meta") or {}
            last_page = int(meta.get("last_page") or page)
            page += 1
        return self.journal.add_mark(clock, ids), clock

    def _send(self, row: PushRow, load_id: Optional[str], mark: int,
              clock: Optional[datetime]) -> bool:
        """Pushes one row; False when it was left for the next push: another row failed, or
        the process was told to stop (dlt holds SIGINT/SIGTERM while it loads)."""
        if self._stop.is_set() or signals.was_signal_received():
            return False
        try:
            self._record(self._create(row, load_id, mark, clock))
            return True
        except BaseException:
            self._stop.set()
            raise

    def _create(self, row: PushRow, load_id: Optional[str], mark: int,
                clock: Optional[datetime]) -> Outcome:
        """POSTs ``row`` until its outcome is known (see the module's rules)."""
        client = self.client
        shown, failure = client.base_url + S.LEADS_PATH, ""
        for attempt in range(1, client.max_attempts + 1):
            if attempt > 1:
                wait = client.retry_delay(attempt - 1)
                log_retry("POST", shown, failure, attempt - 1, client.max_attempts, wait)
                time.sleep(wait)
            seen = self.client.answered_at()  # this thread's last answer, before the request
            first_clock = max(seen, clock) if seen and clock else clock
            earlier = self.journal.begin(row, load_id, mark, first_clock)
            if earlier:  # a create may have happened: find out before sending again
                lead = self.find_lead(row)
                if lead is not None:
                    return self._found(row, lead, load_id)
            answer = client.post(S.LEADS_PATH, row.body)
            if not answer.unanswered:
                return self._settle(row, answer, earlier > 0, load_id)
            failure = f"{answer.failure}; the lead may have been created"
        raise ServerError(
            f"Rackwave API did not answer POST {shown} in {client.max_attempts} attempts "
            f"({failure}). The rows without an outcome are "
            "sent again by the next push (nothing is created twice).")

    def _settle(self, row: PushRow, answer: Answer, maybe_ours: bool,
                load_id: Optional[str]) -> Outcome:
        """Turns the final answer into the row's outcome (see the module's rules)."""
        if 200 <= answer.status < 300:
            lead_id = _created_id(answer.body) or self.find_lead_id(row)
            return self.journal.finish(row, "created", lead_id, None, load_id)
        errors = _field_errors(answer.body)
        if answer.status == 422 and set(errors) == {"email"}:
            lead = self.find_lead(row)
            if lead is not None:
                if maybe_ours:
                    return self._found(row, lead, load_id)
                return self.journal.finish(row, "existing", _lead_id(lead), None, load_id)
        if answer.status in (400, 422):
            return self.journal.finish(row, "rejected", None, errors, load_id)
        raise api_error_for(self.client.base_url + S.LEADS_PATH, answer.status, answer.body, "")

    def _found(self, row: PushRow, lead: Mapping[str, Any], load_id: Optional[str]) -> Outcome:
        """The outcome of a row whose lead was found after an attempt that may have created it:
        rule 3 of the module."""
        status = "created" if self.made_by_us(row, lead) else "existing"
        return self.journal.finish(row, status, _lead_id(lead), None, load_id)

    def made_by_us(self, row: PushRow, lead: Mapping[str, Any]) -> bool:
        """Rule 3: not in the mark taken before the row's first attempt, and dated at or after
        the server's clock last seen before it. Anything unknown answers False."""
        first = self.journal.first_attempt(row)
        created_at = _created_at(lead)
        if first is None or first.clock is None or first.first_clock is None or created_at is None:
            return False
        return _lead_id(lead) not in first.lead_ids and created_at >= first.first_clock

    def find_lead_id(self, row: PushRow) -> Optional[str]:
        """The id of the lead with ``row``'s email (see ``find_lead``)."""
        lead = self.find_lead(row)
        return _lead_id(lead) if lead is not None else None

    def find_lead(self, row: PushRow) -> Optional[Mapping[str, Any]]:
        """The lead with ``row``'s email, through the documented ``search`` (a full-text
        match: the email must be equal, ignoring case); None when no lead has it."""
        wanted = row.key
        page, last_page = 1, 1
        while page <= last_page:
            self._count("lookups")
            body = self.client.get(S.LEADS_PATH, {S.SEARCH_PARAM: row.email, "page": page,
                                                  "per_page": S.MAX_PER_PAGE})
            for lead in body.get("data") or []:
                email = lead.get("email") if isinstance(lead, dict) else None
                if isinstance(email, str) and email.strip().lower() == wanted:
                    return dict(lead)
            meta = body.get("meta") or {}
            last_page = int(meta.get("last_page") or page)
            page += 1
        return None

    def _record(self, outcome: Outcome) -> None:
        self._count(outcome.status)
        if outcome.status == "rejected":
            self.note_reject(outcome.key, outcome.errors or {})

    def note_reject(self, key: str, errors: FieldErrors) -> None:
        """Keeps the first rejects for the summary (a few: a push may reject a million rows)."""
        with self._counts_lock:
            if len(self.rejects) < S.PUSH_SHOWN_REJECTS:
                self.rejects.append((key, errors))

    def _count(self, what: str) -> None:
        with self._counts_lock:
            self.counts[what] += 1


def _lead_id(lead: Mapping[str, Any]) -> str:
    return str(lead.get("id"))


def _created_at(lead: Mapping[str, Any]) -> Optional[datetime]:
    """The lead's documented ``created_at`` (ISO 8601), None when it is not a timestamp."""
    value = lead.get(S.LEAD_CREATED_FIELD)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _created_id(body: Any) -> Optional[str]:
    data = body.get("data") if isinstance(body, dict) else None
    lead_id = data.get("id") if isinstance(data, dict) else None
    return lead_id if isinstance(lead_id, str) and lead_id else None


def _field_errors(body: Any) -> FieldErrors:
    """The documented error shape's ``errors`` (field to messages); the message alone when the
    API sent no field errors."""
    if not isinstance(body, dict):
        return {"request": ["The API refused the row without a readable reason."]}
    errors = body.get("errors")
    if isinstance(errors, dict) and errors:
        return {str(k): [str(m) for m in (v if isinstance(v, list) else [v])]
                for k, v in errors.items()}
    return {"request": [str(body.get("message") or "The API refused the row.")]}


def outcome_counts(counts: Mapping[str, int]) -> Dict[str, int]:
    """The counts a summary shows, every outcome present (0 when none)."""
    return {name: int(counts.get(name, 0)) for name in (*S.PUSH_OUTCOMES, UNCHANGED)}


def settled_rows(journal: PushJournal, rows: Sequence[PushRow]) -> Dict[str, Outcome]:
    """The outcomes standing for ``rows``, by key."""
    found = {}
    for row in rows:
        outcome = journal.settled(row)
        if outcome is not None:
            found[row.key] = outcome
    return found
