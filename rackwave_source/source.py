"""The ``rackwave`` dlt source: validates settings, then composes the resources."""

from __future__ import annotations

import logging
import re
import textwrap
from typing import Any, Callable, List, Optional, Sequence, TypeVar

import dlt
from dlt.common.typing import TSecretStrValue
from dlt.extract.resource import DltResource
from dlt.extract.source import DltSource

from rackwave_source import settings as S
from rackwave_source.api.client import RackwaveClient
from rackwave_source.options import (
    readable_setting_errors,
    require_secret,
    unknown_settings,
    validated_options,
)
from rackwave_source.warehouse.recovery import prepare_resume, set_aside_other_warehouse
from rackwave_source.dlt_internals import active_pipeline
from rackwave_source.read.progress import Progress
from rackwave_source.resources import make_resource

logger = logging.getLogger("rackwave_source")
F = TypeVar("F", bound=Callable[..., Any])


def rackwave_source(*args: Any, **kwargs: Any) -> DltSource:
    """Rackwave leads and contacts, loaded incrementally and merged on ``id`` (see
    :func:`_rackwave_source` for every setting).

    dlt fills the settings from ``.dlt/*.toml`` and the environment before the source runs; a
    value it cannot read as the setting's type (``SOURCES__RACKWAVE__PER_PAGE=abc``) is turned
    here into a :class:`ConfigurationError` naming the setting and the values it accepts.
    Made after its pipeline, it first prepares that pipeline (:func:`before_reading`).
    """
    pipeline = active_pipeline()
    if pipeline is not None:  # ``pipeline.run(rackwave_source())``: made before the source
        before_reading(pipeline)
    with readable_setting_errors():
        return _rackwave_source(*args, **kwargs)


def before_reading(pipeline: Any) -> None:
    """Everything the source does beyond reading the API and yielding rows, in one list.

    Plain dlt code needs each of these, so the source does them itself, not only the command:

    * **The pipeline's local state**, when its loads went to another warehouse or dataset: set
      aside (``pipeline.drop()``), so dlt restores this warehouse's own state; a load left
      unfinished for the other warehouse is refused (``recovery.set_aside_other_warehouse``).
    * **What a killed run left for dlt to resume** (``recovery.prepare_resume``): the extracted
      copy of a package whose normalize had committed is deleted; on SQL warehouses, the rows a
      killed load job may have written are deleted before dlt runs the job again, so each row
      is copied once.
    * **dlt's logger** (once per process, where the choice is made): a filter drops dlt's warning
      about the JSONL files the source asks for on BigQuery and Snowflake
      (``warehouse/target.loader_hints``); around a Postgres read-back only, another drops its
      notes on JSON columns made text (``warehouse/loaded.py``).
    """
    set_aside_other_warehouse(pipeline)
    prepare_resume(pipeline)


def _documented(function: F) -> F:
    """Appends the ``Args:`` of the source's docstring, made from ``settings.SPEC`` (links as
    their text)."""
    lines = ["", "    Args:"]
    for setting in S.SPEC:
        if setting.source:
            meaning = re.sub(r"\[([^]]+)\]\([^)]+\)", r"\1", setting.meaning)
            lines += textwrap.wrap(f"{setting.name}: {meaning} (default: "
                                   f"{setting.default_text.strip('`')}).", 96,
                                   initial_indent="        ", subsequent_indent="            ")
    function.__doc__ = (function.__doc__ or "") + "\n".join(lines) + "\n"
    return function


@dlt.source(name=S.SOURCE_NAME, section=S.SOURCE_NAME)
@_documented
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
    is checked here, before any request is sent. The settings are declared in
    ``settings.SPEC``; the list below is made from it. ``progress`` is no setting: an object
    told of each resource's pages and phases (``read/progress.Progress``), by default the
    running pipeline's collector when it is one.
    """
    settings = {name: value for name, value in locals().items() if name != "progress"}
    for message in unknown_settings({**S.SETTINGS, **S.PUSH_SETTINGS}, S.RESOURCE_NAMES):
        logger.warning(message)
    config = validated_options(settings)
    client = RackwaveClient(
        config.base_url,
        require_secret("client_id", client_id),
        require_secret("client_secret", client_secret),
        max_rate_limit_wait=config.max_rate_limit_wait,
        max_requests_per_second=config.max_requests_per_second,
        max_connections=config.concurrency,
        ca_bundle=config.ca_bundle,
    )
    resources = tuple(make_resource(config.privacy.spec(spec), client, config, progress)
                      for spec in S.RESOURCES)
    if config.schema_contract == "freeze":
        for resource in resources:
            resource.apply_hints(schema_contract=S.FROZEN_CONTRACT)
    return resources
