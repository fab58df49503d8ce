"""Real cloud warehouses: BigQuery, Snowflake and MotherDuck, with accounts of yours.

Nothing here can run without network and credentials, so each test is marked ``live`` and skipped,
saying why, unless both are given:

* ``RACKWAVE_LIVE_BIGQUERY=1`` and dlt's BigQuery credentials, e.g.
  ``DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID``, ``__PRIVATE_KEY``, ``__CLIENT_EMAIL``;
* ``RACKWAVE_LIVE_SNOWFLAKE=1`` and ``DESTINATION__SNOWFLAKE__CREDENTIALS`` (a connection string);
* ``RACKWAVE_LIVE_MOTHERDUCK=1`` and ``DESTINATION__MOTHERDUCK__CREDENTIALS``.

Run them with ``pytest -m live``. Each loads the local sandbox into a new dataset
(``rackwave_live_<random>``), checks a first load, an incremental run and a full scan whose tags
shrink, and drops the dataset afterwards.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Dict

import pytest

from support import Loader, sandbox_ids

#: read at import, before the per-test isolation clears DESTINATION__* from the environment
LIVE_ENV: Dict[str, str] = {k: v for k, v in os.environ.items()
                            if k.startswith(("DESTINATION__", "GOOGLE_APPLICATION_CREDENTIALS"))}
WAREHOUSES = {
    "bigquery": ("RACKWAVE_LIVE_BIGQUERY", "DESTINATION__BIGQUERY__CREDENTIALS"),
    "snowflake": ("RACKWAVE_LIVE_SNOWFLAKE", "DESTINATION__SNOWFLAKE__CREDENTIALS"),
    "motherduck": ("RACKWAVE_LIVE_MOTHERDUCK", "DESTINATION__MOTHERDUCK__CREDENTIALS"),
}


def _why_not(destination: str) -> str:
    switch, prefix = WAREHOUSES[destination]
    if os.environ.get(switch) != "1":
        return f"{destination}: set {switch}=1 and its credentials to run against a real account"
    if not any(k.startswith(prefix) for k in LIVE_ENV) and not (
        destination == "bigquery" and "GOOGLE_APPLICATION_CREDENTIALS" in LIVE_ENV
    ):
        return f"{destination}: {switch}=1 but no {prefix}* credentials in the environment"
    return ""


def _drop_dataset(loader: Loader) -> None:
    """Removes the test's dataset from the cloud warehouse (best effort)."""
    import dlt

    try:
        pipeline = dlt.attach(pipeline_name=loader.pipeline_name,
                              pipelines_dir=str(loader.pipelines_dir))
        with pipeline.sql_client() as client:
            client.drop_dataset()
    except Exception:  # noqa: BLE001 - cleanup must not hide the test's own result
        pass


@pytest.mark.live
@pytest.mark.parametrize("destination", list(WAREHOUSES))
def test_live_warehouse_load_incremental_and_full_scan(
    destination, sandbox, make_loader, monkeypatch
):
    reason = _why_not(destination)
    if reason:
        pytest.skip(reason)
    for key, value in LIVE_ENV.items():
        monkeypatch.setenv(key, value)
    dataset = f"rackwave_live_{uuid.uuid4().hex[:8]}"
    loader: Loader = make_loader(sandbox)
    tagged = sandbox.admin.records("leads")[7]
    sandbox.admin.update("leads", tagged["id"], tags=["a", "b", "c"])
    try:
        first = loader.run(destination=destination, dataset=dataset)
        assert [t.rows_after for t in first.tables] == [250, 120]

        sandbox.admin.insert("leads", count=4)
        second = loader.run(destination=destination, dataset=dataset)
        assert [t.new for t in second.tables] == [4, 0]

        sandbox.admin.update("leads", tagged["id"], tags=["a", "c"])
        third = loader.run(destination=destination, dataset=dataset, full_scan=True)
        with third.pipeline.sql_client() as client:
            leads = client.make_qualified_table_name("leads")
            ids = sorted(r[0] for r in client.execute_sql(f"SELECT id FROM {leads}"))
            ((tags,),) = client.execute_sql(f"SELECT tags FROM {leads} WHERE id = %s",
                                            tagged["id"])
        assert ids == sandbox_ids(sandbox, "leads")
        assert (json.loads(tags) if isinstance(tags, str) else tags) == ["a", "c"]
    finally:
        _drop_dataset(loader)
