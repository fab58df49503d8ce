"""What the project reads of dlt 1.31's working folder without making a pipeline: the local state
``rackwave check`` shows, and which load packages and jobs a killed run left for the next run to
finish (``rackwave_source/dlt_internals.py``). Folder trees are built in ``tmp_path`` as dlt lays
them out, one with dlt's own package storage; no pipeline, no destination."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from dlt.common.storages.file_storage import FileStorage
from dlt.common.storages.load_package import PackageStorage
from dlt.common.versioned_state import json_encode_state

from rackwave_source.dlt_internals import (
    LOCAL_STATE_FILE,
    extracted_packages,
    interrupted_jobs,
    normalized_package,
    read_local_state,
)

COMMITTED = PackageStorage.PENDING_TRANSITIONS_FOLDER


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def started_job(working: Path, load_id: str, job: str, committed: bool = False) -> Path:
    """A job file in a normalized package's ``started_jobs``, with dlt's commit marker if
    ``committed``."""
    package = working / "load" / "normalized" / load_id
    path = touch(package / PackageStorage.STARTED_JOBS_FOLDER / job)
    (package / COMMITTED).mkdir(exist_ok=True)
    if committed:
        touch(package / COMMITTED / job, "completed")
    return path


# -- the local state -------------------------------------------------------------------------------

def test_a_working_folder_without_state_reads_as_no_state(tmp_path):
    assert read_local_state(str(tmp_path)) == {}
    assert read_local_state(str(tmp_path / "never-made")) == {}
    assert not (tmp_path / "never-made").exists()  # reading makes nothing


def test_the_state_dlt_wrote_is_read_back_with_its_types(tmp_path):
    when = datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=timezone.utc)
    state = {"_state_version": 7, "pipeline_name": "rackwave",
             "sources": {"rackwave": {"resources": {"leads": {
                 "cursor": "2026-11-29T11:59:00Z", "cursor_ids": ["L1", "L2"],
                 "count_offset": -2, "seen_at": when}}}}}
    touch(tmp_path / LOCAL_STATE_FILE, json_encode_state(state))  # dlt's own encoding

    read = read_local_state(str(tmp_path))

    assert read == state
    leads = read["sources"]["rackwave"]["resources"]["leads"]
    assert leads["seen_at"] == when  # a datetime again, not dlt's typed text


@pytest.mark.parametrize("content", ["[1, 2, 3]", '"rackwave"', "42", "null"])
def test_a_state_file_that_is_not_an_object_reads_as_no_state(tmp_path, content):
    touch(tmp_path / LOCAL_STATE_FILE, content)
    assert read_local_state(str(tmp_path)) == {}


# -- packages a killed run left --------------------------------------------------------------------

def test_extracted_packages_are_listed_oldest_load_id_first_and_nothing_else(tmp_path):
    extracted = tmp_path / "normalize" / "extracted"
    for load_id in ("1764417600.5", "1764417000.1", "1764417300.9"):
        (extracted / load_id).mkdir(parents=True)
    (tmp_path / "load" / "normalized" / "1764417900.0").mkdir(parents=True)  # not extracted

    assert [p.name for p in extracted_packages(str(tmp_path))] == [
        "1764417000.1", "1764417300.9", "1764417600.5"]
    assert all(p.parent == extracted for p in extracted_packages(str(tmp_path)))


def test_a_working_folder_that_never_extracted_has_no_package_and_no_job(tmp_path):
    assert extracted_packages(str(tmp_path)) == []
    assert interrupted_jobs(str(tmp_path)) == []
    (tmp_path / "normalize" / "extracted").mkdir(parents=True)
    (tmp_path / "load" / "normalized").mkdir(parents=True)
    assert extracted_packages(str(tmp_path)) == []
    assert interrupted_jobs(str(tmp_path)) == []


def test_a_package_extracted_and_also_normalized_is_found_where_normalize_commits_it(tmp_path):
    load_id = "1764417600.5"
    (tmp_path / "normalize" / "extracted" / load_id).mkdir(parents=True)
    assert not normalized_package(str(tmp_path), load_id).is_dir()  # normalize not committed

    (tmp_path / "load" / "normalized" / load_id).mkdir(parents=True)

    [package] = extracted_packages(str(tmp_path))
    assert normalized_package(str(tmp_path), package.name) == \
        tmp_path / "load" / "normalized" / load_id
    assert normalized_package(str(tmp_path), package.name).is_dir()


def test_only_started_jobs_without_a_commit_marker_were_interrupted(tmp_path):
    running = started_job(tmp_path, "1764417000.1", "leads.a1b2c3.0.parquet")
    started_job(tmp_path, "1764417000.1", "contacts.d4e5f6.0.parquet", committed=True)
    later = started_job(tmp_path, "1764417600.5", "_dlt_pipeline_state.0a1b.0.insert_values")
    package = tmp_path / "load" / "normalized" / "1764417300.9"
    touch(package / "new_jobs" / "leads.ffff.0.parquet")  # not started: dlt runs it as usual
    touch(package / "completed_jobs" / "contacts.eeee.0.parquet")

    found = interrupted_jobs(str(tmp_path))

    assert [(p.name, j) for p, j in found] == [("1764417000.1", running),
                                               ("1764417600.5", later)]


def test_a_job_dlt_marked_committed_with_its_own_package_storage_is_not_run_again(tmp_path):
    load_id = "1764417000.1"
    storage = PackageStorage(FileStorage(str(tmp_path / "load" / "normalized"), makedirs=True),
                             "normalized")
    storage.create_package(load_id)
    started = normalized_package(str(tmp_path), load_id) / PackageStorage.STARTED_JOBS_FOLDER
    assert started.is_dir()  # dlt made its package where the project looks for it
    for job in ("leads.a1b2c3.0.parquet", "contacts.d4e5f6.0.parquet"):
        touch(started / job)
    assert len(interrupted_jobs(str(tmp_path))) == 2  # both killed mid-load

    storage.save_pending_transition(load_id, "leads.a1b2c3.0.parquet", "completed")

    assert [job.name for _, job in interrupted_jobs(str(tmp_path))] == [
        "contacts.d4e5f6.0.parquet"]
    assert (started.parent / COMMITTED / "leads.a1b2c3.0.parquet").is_file()  # dlt's marker
