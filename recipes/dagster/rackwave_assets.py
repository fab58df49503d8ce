"""Rackwave -> DuckDB every 30 minutes, as Dagster assets loaded with dagster-dlt.

Install, then start Dagster on this file:

    pip install "rackwave-source[dagster]" dagster-webserver   # dagster, dagster-dlt; the UI
    dagster dev -f rackwave_assets.py      # the UI on http://127.0.0.1:3000, and the daemon

and switch the schedule on in the UI (Automation), or press "Materialize all" for a load now. With
no UI: ``dagster job execute -f rackwave_assets.py -j rackwave`` (or ``dg launch --job rackwave``
with the newer dg CLI) loads once.

Settings are read the dlt way, from environment variables (``dagster dev`` also reads a ``.env``
file of the folder it starts in) or from ``.dlt/config.toml`` / ``.dlt/secrets.toml`` of that
folder:

* ``SOURCES__RACKWAVE__CLIENT_ID`` and ``SOURCES__RACKWAVE__CLIENT_SECRET``: needed wherever this
  file is loaded (the code location, and each run's process), because ``rackwave_source()`` is
  called here to list its tables as assets, and checks every setting then;
* ``DESTINATION__DUCKDB__CREDENTIALS``: the DuckDB file (an absolute path is best; without it,
  ``rackwave.duckdb`` in the folder Dagster runs in);
* any other setting of docs/configuration.md (``SOURCES__RACKWAVE__FULL_SCAN_EVERY``, ...).

Why DuckDB here: Dagster's own deployment (``dagster dev``, or a daemon with the default run
launcher) starts every run as a process on one machine, so a DuckDB file there is the simplest
warehouse, and the next assets of your graph can read it. With runs on Kubernetes or ECS (a new
machine per run), use a database server: ``destination="postgres"`` and
``DESTINATION__POSTGRES__CREDENTIALS`` (extra ``[postgres]``). dlt keeps the pipeline's state (the
incremental cursor) in the destination with the data, and dagster-dlt restores it from there
before every run, so a run on a fresh machine still resumes from the right cursor.
"""

from collections.abc import Iterator
from typing import Any

import dlt
from dagster import (
    AssetExecutionContext,
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    ScheduleDefinition,
    define_asset_job,
)
from dagster_dlt import DagsterDltResource, dlt_assets

from rackwave_source import rackwave_source


@dlt_assets(
    dlt_source=rackwave_source(),
    dlt_pipeline=dlt.pipeline(pipeline_name="rackwave", destination="duckdb",
                              dataset_name="rackwave"),
    name="rackwave",
    group_name="rackwave",
    # At most one load at a time (two would race for the same cursor) once the pool has a limit
    # of 1: `dagster instance concurrency set rackwave 1`, or in dagster.yaml.
    pool="rackwave",
)
def rackwave_assets(context: AssetExecutionContext, dlt: DagsterDltResource) -> Iterator[Any]:
    """The `leads` and `contacts` tables (assets dlt_rackwave_leads, dlt_rackwave_contacts)."""
    yield from dlt.run(context=context)


rackwave_job = define_asset_job("rackwave", selection=AssetSelection.assets(rackwave_assets))

rackwave_schedule = ScheduleDefinition(
    name="rackwave_every_30_minutes",
    job=rackwave_job,
    cron_schedule="*/30 * * * *",
    execution_timezone="UTC",
    # Off until switched on in the UI (or set DefaultScheduleStatus.RUNNING to have it on as soon
    # as the daemon loads this file). A failed run (API down, rate limited) is left to the next
    # slot, which starts from the cursor of the last successful run.
    default_status=DefaultScheduleStatus.STOPPED,
)

defs = Definitions(
    assets=[rackwave_assets],
    jobs=[rackwave_job],
    schedules=[rackwave_schedule],
    resources={"dlt": DagsterDltResource()},
)
