"""Rackwave -> Postgres every 30 minutes, on Airflow 3 with dlt's Airflow helper.

Install on the scheduler, the DAG processor and the workers (one environment, as Airflow wants):

    pip install "rackwave-source[airflow]"      # apache-airflow 3 + dlt[postgres]

and copy this file into your DAGs folder. Settings are read the dlt way, on the worker, when the
task runs (never when Airflow parses this file):

* ``SOURCES__RACKWAVE__CLIENT_ID`` and ``SOURCES__RACKWAVE__CLIENT_SECRET`` (environment
  variables of the workers), or the same keys in the Airflow Variable ``dlt_secrets_toml`` holding
  a secrets.toml document (``[sources.rackwave]`` / ``client_id = "..."``), or in
  ``<dags folder>/.dlt/secrets.toml``;
* ``DESTINATION__POSTGRES__CREDENTIALS`` (``postgresql://user:password@host:5432/db``), the same
  ways;
* any other setting of docs/configuration.md (``SOURCES__RACKWAVE__FULL_SCAN_EVERY``, ...), the same ways.

Why Postgres and not a DuckDB file: Airflow runs each task on whichever worker is free, and dlt's
helper gives every run a fresh temporary folder that it deletes afterwards. The data and the
pipeline's state (the incremental cursor) must live where every worker finds them: in a database
server. dlt keeps the state in the destination with the data, so each run resumes from the right
cursor although its local folder is new. (A DuckDB file works only with every task on one machine
and an absolute path in DESTINATION__DUCKDB__CREDENTIALS; a relative path would land in the
deleted temporary folder.) Any other dlt destination of docs/destinations.md works the same way: change
``destination=`` and install its extra.

Try it once, here, with no scheduler: ``airflow dags test rackwave``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dlt
from airflow.sdk import dag
from dlt.helpers.airflow_helper import PipelineTasksGroup

from rackwave_source import rackwave_source


@dag(
    dag_id="rackwave",
    schedule="*/30 * * * *",  # every 30 minutes
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,  # a missed slot is not made up: the next run loads everything new anyway
    max_active_runs=1,  # one run at a time: two runs would race for the same cursor
    dagrun_timeout=timedelta(minutes=25),
    default_args={"owner": "data", "retries": 0},
    tags=["rackwave", "dlt"],
)
def rackwave() -> None:
    # The task group first: it points dlt at a fresh data folder and at the DAGs folder's .dlt/.
    tasks = PipelineTasksGroup("rackwave", use_data_folder=False, wipe_local_data=True)
    pipeline = dlt.pipeline(pipeline_name="rackwave", destination="postgres",
                            dataset_name="rackwave")
    # The source function itself, not rackwave_source(): the helper calls it in the task, so the
    # credentials are read (and every setting checked) on the worker, not at each parse of this
    # file. One task loads leads and contacts. A failed run (API down, rate limited) is left to the
    # next slot, 30 minutes later, which starts from the cursor of the last successful run.
    tasks.add_run(pipeline, rackwave_source, decompose="none", trigger_rule="all_done",
                  retries=0, execution_timeout=timedelta(minutes=25))


rackwave()
