"""The command's small rules at its edges, without a run: where dbt writes, which of dlt's log
lines a user sees, and when a state belongs to another warehouse."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipelines import signals
from pipelines.dbt_command import work_paths
from pipelines.cli import SwitchSaidOnce
from rackwave_source.warehouse.target import STATE_WAREHOUSE, claim_state


def record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("dlt", level, __file__, 1, message, None, None)


def test_dbt_writes_target_and_logs_in_the_users_folder_unless_told_otherwise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("DBT_TARGET_PATH", "DBT_LOG_PATH", "DBT_SEND_ANONYMOUS_USAGE_STATS"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "rackwave_dbt"
    assert work_paths([]) == ["--target-path", str(work / "target"), "--log-path",
                              str(work / "logs"), "--no-send-anonymous-usage-stats"]
    assert work_paths(["--target-path=/elsewhere", "--send-anonymous-usage-stats"]) == \
        ["--log-path", str(work / "logs")]
    monkeypatch.setenv("DBT_LOG_PATH", "/var/log/dbt")
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "true")
    assert work_paths([]) == ["--target-path", str(work / "target")]


def test_dlts_warnings_about_a_stop_are_left_out_only_once_a_signal_arrived(
        monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = signals._QuietStop()
    monkeypatch.setattr(signals, "_stopping", False)
    assert quiet.filter(record("Exiting runner due to signal 15"))
    monkeypatch.setattr(signals, "_stopping", True)
    assert not quiet.filter(record("Exiting runner due to signal 15"))
    assert not quiet.filter(record("Transient exception in job", logging.ERROR))
    assert quiet.filter(record("Closing processing pool", logging.INFO))


def test_only_dlts_words_on_a_change_of_destination_are_left_out() -> None:
    switch = SwitchSaidOnce()
    assert not switch.filter(record(
        "The destination dlt.destinations.duckdb:None in state differs from destination "
        "dlt.destinations.postgres:postgres in pipeline and will be ignored"))
    assert switch.filter(record("Package 1.2 was not fully loaded"))


def test_a_state_written_for_another_warehouse_is_set_aside_and_marked_for_this_one() -> None:
    state = {"cursor": "2026-01-01T00:00:00Z", STATE_WAREHOUSE: "elsewhere"}
    claim_state(state, "here", "leads")
    assert state == {STATE_WAREHOUSE: "here"}  # a first run: everything read again

    ours = {"cursor": "2026-01-01T00:00:00Z", STATE_WAREHOUSE: "here"}
    claim_state(ours, "here", "leads")
    unmarked = {"cursor": "2026-01-01T00:00:00Z"}  # from before marks: kept, and marked
    claim_state(unmarked, "here", "leads")
    unknown = {"cursor": "2026-01-01T00:00:00Z", STATE_WAREHOUSE: "elsewhere"}
    claim_state(unknown, None, "leads")  # where this run loads cannot be told: left alone
    assert ours["cursor"] == unmarked["cursor"] == unknown["cursor"] == "2026-01-01T00:00:00Z"
    assert unmarked[STATE_WAREHOUSE] == "here" and unknown[STATE_WAREHOUSE] == "elsewhere"
