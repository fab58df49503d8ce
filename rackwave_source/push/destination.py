"""``rackwave_push()``: a dlt destination that creates leads in Rackwave, exactly once.

    pipeline = dlt.pipeline("rackwave_push", destination=rackwave_push())
    pipeline.run(rows, table_name="leads")   # dicts, a DataFrame, an Arrow table...

It is dlt's ``@dlt.destination`` (so dlt batches the rows, keeps them in a load package until they
are sent, and resumes a killed push from the last batch done), around ``push.LeadPusher`` (the
exactly-once rules) and ``journal.PushJournal`` (what was sent, on disk). Its settings come
from ``[sources.rackwave]`` like the source's, with the same client, token renewal and rate budget.

``push_log(journal)`` is the resource that writes the outcomes to the warehouse table
``rackwave_push_log`` (merged on the row's key: one current outcome per row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional, Sequence

import dlt
from dlt.common.configuration import known_sections
from dlt.common.configuration.inject import with_config
from dlt.common.destination.exceptions import (
    DestinationTerminalException,
    DestinationTransientException,
)
from dlt.common.destination.reference import Destination
from dlt.common.schema.typing import TTableSchema
from dlt.common.storages.load_package import load_package_state
from dlt.common.typing import TDataItems
from dlt.extract.resource import DltResource

from rackwave_source import settings as S
from rackwave_source.rows.arrow_shape import arrow_schema
from rackwave_source.api.client import RackwaveClient
from rackwave_source.exceptions import RackwaveFatalError, RackwaveTransientError
from rackwave_source.options import (
    readable_setting_errors,
    require_secret,
    resolve_base_url,
    validate_ca_bundle,
    validate_rate,
    validate_wait,
    whole_number,
)
from rackwave_source.push.sender import LeadPusher
from rackwave_source.push.journal import Outcome, PushJournal, default_journal_path
from rackwave_source.warehouse.target import with_load_id
from rackwave_source.schema import LOAD_ID_COLUMN

DESTINATION_NAME = "rackwave_push"


@dataclass
class PushSettings:
    """The push's validated settings (secrets kept out of its repr)."""

    base_url: str
    concurrency: int
    batch_size: int
    read_chunk_size: int
    phone_separators: str
    journal_path: str


class RackwavePush:
    """What ``rackwave_push()`` made: the dlt destination and the pusher behind it (its counts,
    its journal, its client's request counts)."""

    def __init__(self, pusher: LeadPusher, settings: PushSettings) -> None:
        self.pusher = pusher
        self.settings = settings
        def push_batch(items: TDataItems, table: TTableSchema) -> None:
            self._push_batch(items, table)  # dlt takes a function, not a bound method

        self.destination: Destination[Any, Any] = dlt.destination(
            push_batch,
            name=DESTINATION_NAME,
            batch_size=settings.batch_size,
            naming_convention="direct",
            max_table_nesting=0,
            # one job at a time: the pusher already sends concurrently within a batch
            max_parallel_load_jobs=1,
        )()

    @property
    def journal(self) -> PushJournal:
        return self.pusher.journal

    def _push_batch(self, items: TDataItems, table: TTableSchema) -> None:
        if table["name"] != S.PUSH_TABLE:
            raise DestinationTerminalException(
                f"rackwave_push creates leads only: run it with table_name=\"{S.PUSH_TABLE}\", "
                f"not {table['name']!r}.")
        try:
            self.pusher.push(items, load_package_state()["load_id"])
        except RackwaveFatalError as exc:  # dlt fails the job: retrying would not help
            raise DestinationTerminalException(str(exc)) from exc
        except RackwaveTransientError as exc:  # dlt runs the job again from its last batch
            raise DestinationTransientException(str(exc)) from exc


def rackwave_push(**overrides: Any) -> Destination[Any, Any]:
    """A dlt destination creating leads in Rackwave (see the module). Settings from
    ``[sources.rackwave]`` or ``SOURCES__RACKWAVE__*``; keyword arguments override them."""
    return push_target(**overrides).destination


def push_target(**overrides: Any) -> RackwavePush:
    """``rackwave_push()`` with its pusher in reach (the command reads its counts)."""
    with readable_setting_errors():
        settings, client = _resolved(**overrides)
    journal = PushJournal(settings.journal_path)
    pusher = LeadPusher(client, journal, settings.concurrency, settings.phone_separators)
    return RackwavePush(pusher, settings)


@with_config(sections=(known_sections.SOURCES, S.SOURCE_NAME))
def _resolved(
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    environment: str = S.DEFAULT_ENVIRONMENT,
    base_url: Optional[str] = None,
    max_rate_limit_wait: float = S.MAX_RATE_LIMIT_WAIT_S,
    max_requests_per_second: Optional[float] = None,
    ca_bundle: Optional[str] = None,
    push_concurrency: int = S.DEFAULT_PUSH_CONCURRENCY,
    push_batch_size: int = S.DEFAULT_PUSH_BATCH_SIZE,
    push_read_chunk_size: int = S.DEFAULT_PUSH_READ_CHUNK_SIZE,
    push_phone_separators: str = S.DEFAULT_PUSH_PHONE_SEPARATORS,
    push_journal: Optional[str] = None,
) -> tuple[PushSettings, RackwaveClient]:
    """Every push setting checked before anything is read or sent."""
    url = resolve_base_url(environment, base_url)
    cid = require_secret("client_id", client_id)
    secret = require_secret("client_secret", client_secret)
    settings = PushSettings(
        base_url=url,
        concurrency=_whole("push_concurrency", push_concurrency, S.MAX_CONCURRENCY),
        batch_size=_whole("push_batch_size", push_batch_size, S.MAX_PUSH_BATCH_SIZE),
        read_chunk_size=_whole("push_read_chunk_size", push_read_chunk_size,
                               S.MAX_PUSH_READ_CHUNK_SIZE),
        phone_separators=str(push_phone_separators or ""),
        journal_path=push_journal or default_journal_path(url, cid),
    )
    client = RackwaveClient(
        url, cid, secret,
        max_rate_limit_wait=validate_wait(max_rate_limit_wait),
        max_requests_per_second=validate_rate(max_requests_per_second),
        max_connections=settings.concurrency,
        ca_bundle=validate_ca_bundle(ca_bundle),
    )
    return settings, client


def _whole(setting: str, value: object, highest: int) -> int:
    return whole_number(setting, value, highest, f"Set a whole number from 1 to {highest}.")


def push_log(outcomes: Sequence[Outcome]) -> DltResource:
    """The outcomes as rows of ``rackwave_push_log``, merged on ``row_key``."""
    return push_log_chunks([outcomes])


def push_log_chunks(chunks: Iterable[Sequence[Outcome]]) -> DltResource:
    """``push_log`` for outcomes that come chunk by chunk (a million of them do not fit in
    memory at once): one Arrow table per chunk, so dlt normalizes each without a row-by-row pass
    (far slower as dicts) and holds one chunk at a time."""
    import pyarrow as pa

    schema = arrow_schema(S.PUSH_LOG_COLUMNS)  # nullability too: dlt warns when it differs

    def log_rows() -> Iterator[Any]:
        for outcomes in chunks:
            rows = [o.log_row() for o in outcomes]
            table = pa.table({field.name: pa.array([row[field.name] for row in rows], field.type)
                              for field in schema}, schema=schema)
            yield with_load_id(table)  # stamped as the loaded tables' rows are

    return dlt.resource(
        log_rows, name=S.PUSH_LOG_TABLE, write_disposition="merge", primary_key="row_key",
        columns={**S.PUSH_LOG_COLUMNS, **LOAD_ID_COLUMN},
    )()
