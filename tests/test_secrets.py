"""The client secret and every token stay out of logs, errors, state, traces, files and the data."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from rackwave_source import AuthenticationError

SECRET = "sk_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def every_file_under(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


@pytest.fixture
def debug_logs(caplog, monkeypatch):
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "DEBUG")
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "requests", "dlt", "rackwave_source"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    return caplog


def test_secret_and_tokens_absent_everywhere_after_a_debug_run(
    sandbox_factory, make_loader, debug_logs, capfd
):
    # Short tokens so that several are issued and each must stay hidden.
    server = sandbox_factory(leads=600, contacts=200, client_secret=SECRET, token_ttl=1,
                             latency_ms=10)
    loader = make_loader(server, per_page=50)
    loader.client_secret = SECRET

    result = loader.run()

    tokens = server.issued_tokens()
    assert len(tokens) >= 2, "the run should have needed more than one token"
    needles = [SECRET, *tokens]
    out, err = capfd.readouterr()
    haystacks = {
        "logs": "\n".join(r.getMessage() + str(r.args) for r in debug_logs.records),
        "stdout/stderr": out + err,
        "pipeline state": repr(result.pipeline.state),
        "trace": repr(result.pipeline.last_trace) + repr(pickle.dumps(result.pipeline.last_trace)),
        "pipeline folder (state, schemas, load packages, trace)": every_file_under(
            loader.pipelines_dir).decode("utf-8", "replace"),
        "duckdb file": loader.duckdb_path.read_bytes().decode("utf-8", "replace"),
    }
    assert debug_logs.records, "DEBUG logging was expected to capture requests"
    for where, text in haystacks.items():
        for needle in needles:
            assert needle not in text, f"a secret or token leaked into the {where}"


def test_rejected_secret_is_not_echoed_in_the_error_or_logs(sandbox, make_loader, debug_logs):
    loader = make_loader(sandbox)
    loader.client_secret = SECRET

    with pytest.raises(AuthenticationError) as raised:
        loader.run()

    chain = []
    error: BaseException | None = raised.value
    while error is not None and len(chain) < 20:
        chain.append(repr(error) + str(error))
        error = error.__cause__ or error.__context__
    assert SECRET not in "".join(chain)
    assert SECRET not in "\n".join(r.getMessage() + str(r.args) for r in debug_logs.records)


def test_the_example_secrets_file_copied_unedited_is_refused_before_any_request(sandbox,
                                                                                 tmp_path):
    import shutil
    import subprocess
    import sys

    from support import REPO, command_environment

    (tmp_path / ".dlt").mkdir()
    shutil.copy(REPO / ".dlt" / "secrets.toml.example", tmp_path / ".dlt" / "secrets.toml")
    environment = command_environment(tmp_path / "dlt")
    for command in (["--base-url", sandbox.base_url], ["check", "--base-url", sandbox.base_url]):
        run = subprocess.run([sys.executable, "-m", "pipelines.rackwave_pipeline", *command],
                             cwd=tmp_path, env=environment, capture_output=True, text=True,
                             timeout=120)

        assert run.returncode == 2, run.stderr
        assert "`client_id`: it is still a placeholder" in run.stderr
        assert "xxxx" not in run.stderr  # the value itself is never echoed
    assert sandbox.admin.stats()["requests"] == {}
