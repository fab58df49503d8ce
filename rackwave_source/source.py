"""The ``rackwave`` dlt source: validates settings, then composes the resources."""

from __future__ import annotations

import logging
from typing import Any, List, Optional, Sequence

import dlt
from dlt.common.typing import TSecretStrValue
from dlt.extract.resource import DltResource
from dlt.extract.source import DltSource

from rackwave_source import settings as S
from rackwave_source.api.client import RackwaveClient
from rackwave_source.options import (
    ValidatedOptions,
    parse_duration,
    parse_timestamp,
    readable_setting_errors,
    require_secret,
    resolve_base_url,
    unknown_settings,
    validate_ca_bundle,
    validate_choice,
    validate_concurrency,
    validate_per_page,
    validate_rate,
    validate_wait,
)
from rackwave_source.warehouse.recovery import prepare_resume, set_aside_other_warehouse
from rackwave_source.dlt_internals import active_pipeline
from rackwave_source.rows.privacy import validate_privacy
from rackwave_source.read.progress import Progress
from rackwave_source.resources import make_resource

_NEVER = ("", "never", "off", "none", "false")
logger = logging.getLogger("rackwave_source")


def rackwave_source(*args: Any, **kwargs: Any) -> DltSource:
    """Rackwave leads and contacts, loaded incrementally and merged on ``id`` (see
    :func:`_rackwave_source` for every setting).

    dlt fills the settings from ``.dlt/*.toml`` and the environment before the source runs; a
    value it cannot read as the setting's type (``SOURCES__RACKWAVE__PER_PAGE=abc``) is turned
    here into a :class:`ConfigurationError` naming the setting and the values it accepts. Made
    after its pipeline (``pipeline.run(rackwave_source())``), it first sets aside a local state
    written by loads into another warehouse, and repairs what a killed run left for dlt to
    resume (``recovery.py``).
    """
    pipeline = active_pipeline()
    if pipeline is not None:  # ``pipeline.run(rackwave_source())``: made before the source
        set_aside_other_warehouse(pipeline)
        prepare_resume(pipeline)
    with readable_setting_errors():
        return _rackwave_source(*args, **kwargs)


@dlt.source(name=S.SOURCE_NAME, section=S.SOURCE_NAME)
def _rackwave_source(
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    environment: str = S.DEFAULT_ENVIRONMENT,
    base_url: Optional[str] = None,
    per_page: int = S.DEFAULT_PER_PAGE,
    start_date: Optional[str] = None,
    # Optional[str], not Union[str, int]: dlt makes no config field of a Union, and would ignore
    # `lookback` in config.toml or SOURCES__RACKWAVE__LOOKBACK. Numbers arrive as text.
    lookback: Optional[str] = S.DEFAULT_LOOKBACK,
    full_scan_every: Optional[str] = S.DEFAULT_FULL_SCAN_EVERY,
    full_scan: bool = False,
    deleted_records: str = S.DEFAULT_DELETED_RECORDS,
    bad_records: str = S.DEFAULT_BAD_RECORDS,
    lead_status: Optional[str] = None,
    lead_search: Optional[str] = None,
    max_rate_limit_wait: float = S.MAX_RATE_LIMIT_WAIT_S,
    concurrency: int = S.DEFAULT_CONCURRENCY,
    max_requests_per_second: Optional[float] = None,
    ca_bundle: Optional[str] = None,
    schema_contract: str = S.DEFAULT_SCHEMA_CONTRACT,
    hash_columns: Optional[List[str]] = None,
    hash_key: Optional[TSecretStrValue] = None,
    hash_normalization: str = S.DEFAULT_HASH_NORMALIZATION,
    exclude_columns: Optional[List[str]] = None,
    history: str = S.DEFAULT_HISTORY,
    progress: Optional[Progress] = None,  # no config field: dlt skips a parameter of this type
) -> Sequence[DltResource]:
    """Rackwave leads and contacts, loaded incrementally and merged on ``id``.

    Configured from ``[sources.rackwave]`` (or ``SOURCES__RACKWAVE__*`` variables). Every setting
    is checked here, before any request is sent.

    Args:
        client_id: API client id (secret).
        client_secret: API client secret (secret).
        environment: ``production`` or ``sandbox``: picks the documented base URL.
        base_url: Overrides the environment's URL (HTTPS required except on loopback).
        per_page: Records per request, 1..100.
        start_date: Oldest ``created_at`` to load (ISO 8601); older records are never read.
        lookback: How far behind the stored cursor each incremental run re-reads, e.g. ``"1h"``.
        full_scan_every: How often a run re-reads everything to pick up updates and deletes,
            e.g. ``"24h"``; ``"never"`` to disable.
        full_scan: Force a full scan on this run.
        deleted_records: What a full scan does with records gone from the API: ``delete`` or
            ``flag``.
        bad_records: A record that breaks the API contract: ``fail`` the run, or ``quarantine``
            it in the ``rackwave_quarantine`` table and load the rest.
        lead_status: Only leads with this status (passed to the API).
        lead_search: Only leads matching this text (passed to the API).
        max_rate_limit_wait: Seconds one request may spend waiting on 429 answers in total.
        concurrency: Pages a full scan fetches at once.
        max_requests_per_second: The account's known quota; unset, the rate is learned from 429s.
        ca_bundle: A PEM file of certificate authorities to trust (TLS is always verified).
        schema_contract: ``evolve``: new fields become columns, a changed type a variant column;
            ``freeze``: either fails the run with a ``SchemaContractError``.
        hash_columns: Columns loaded as the hex HMAC-SHA256 of their value under ``hash_key``,
            the same on every table (``privacy.py``).
        hash_key: The key of those hashes (secret, at least 16 characters).
        hash_normalization: ``email`` (emails trimmed and lower-cased, other values trimmed),
            ``trim`` or ``none``: what is done to a value before it is hashed.
        exclude_columns: Columns never loaded.
        history: ``scd2``: also keep ``<resource>_history``, every observed version of a
            record with dlt's validity columns (``warehouse/versions.py``); ``off`` (default): don't.
        progress: An object told of each resource's pages and phases (``progress.Progress``),
            not a setting; by default the running pipeline's collector when it is one.
    """
    for message in unknown_settings({**S.SETTINGS, **S.PUSH_SETTINGS}, S.RESOURCE_NAMES):
        logger.warning(message)
    every = None
    if full_scan_every is not None and str(full_scan_every).strip().lower() not in _NEVER:
        every = parse_duration("full_scan_every", full_scan_every)
    config = ValidatedOptions(
        base_url=resolve_base_url(environment, base_url),
        per_page=validate_per_page(per_page),
        start_date=parse_timestamp("start_date", start_date),
        lookback=parse_duration("lookback", lookback),
        full_scan_every=every,
        force_full_scan=bool(full_scan),
        deleted_records=validate_choice(
            "deleted_records", deleted_records, S.DELETED_RECORDS_MODES
        )
        or S.DEFAULT_DELETED_RECORDS,
        bad_records=validate_choice("bad_records", bad_records, S.BAD_RECORDS_MODES)
        or S.DEFAULT_BAD_RECORDS,
        lead_status=validate_choice("lead_status", lead_status, S.LEAD_STATUSES),
        lead_search=(lead_search or None),
        max_rate_limit_wait=validate_wait(max_rate_limit_wait),
        concurrency=validate_concurrency(concurrency),
        max_requests_per_second=validate_rate(max_requests_per_second),
        ca_bundle=validate_ca_bundle(ca_bundle),
        privacy=validate_privacy(hash_columns, hash_key, exclude_columns, hash_normalization),
        history=validate_choice("history", history, S.HISTORY_MODES) or S.DEFAULT_HISTORY,
    )
    client = RackwaveClient(
        config.base_url,
        require_secret("client_id", client_id),
        require_secret("client_secret", client_secret),
        max_rate_limit_wait=config.max_rate_limit_wait,
        max_requests_per_second=config.max_requests_per_second,
        max_connections=config.concurrency,
        ca_bundle=config.ca_bundle,
    )
    contract = validate_choice("schema_contract", schema_contract, S.SCHEMA_CONTRACTS)
    resources = tuple(make_resource(config.privacy.spec(spec), client, config, progress)
                      for spec in S.RESOURCES)
    if contract == "freeze":
        for resource in resources:
            resource.apply_hints(schema_contract=S.FROZEN_CONTRACT)
    return resources
