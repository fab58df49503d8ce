"""MotherDuck, with an account of yours: the one real warehouse the ``warehouse`` and ``cloud``
fixtures do not cover (their ``bigquery-live`` and ``snowflake-live`` params run every warehouse
story on real BigQuery and Snowflake accounts, ``conftest.LIVE``).

Marked ``live`` and skipped, saying why, unless ``RACKWAVE_LIVE_MOTHERDUCK=1`` and
``DESTINATION__MOTHERDUCK__CREDENTIALS`` are set. Run it with ``pytest -m live``. It loads the
local sandbox into a new dataset (``rackwave_live_<random>``), checks a first load, an
incremental run and a full scan whose tags shrink, and drops the dataset afterwards.
"""

from __future__ import annotations

import json
import uuid

import pytest

from support import Loader, sandbox_ids
from warehouses import LIVE_ENV, why_not_live


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
def test_live_motherduck_load_incremental_and_full_scan(sandbox, make_loader, monkeypatch):
    destination = "motherduck"
    reason = why_not_live(destination)
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
