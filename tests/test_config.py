"""Settings: every mistake is named before a request is sent; env vars work the dlt way."""

from __future__ import annotations

import pytest

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from rackwave_source import ConfigurationError, rackwave_source
from rackwave_source.options import resolve_base_url
from support import sandbox_ids, write_dlt_settings


@pytest.mark.parametrize(
    ("options", "setting", "hint"),
    [
        ({"per_page": 0}, "per_page", "1 to 100"),
        ({"per_page": 101}, "per_page", "1 to 100"),
        ({"per_page": "many"}, "per_page", "1 to 100"),
        ({"environment": "staging"}, "environment", "production, sandbox"),
        ({"start_date": "last tuesday"}, "start_date", "ISO 8601"),
        ({"lookback": "a while"}, "lookback", "unit s, m, h, d or w"),
        ({"full_scan_every": "-1h"}, "full_scan_every", "unit s, m, h, d or w"),
        ({"lead_status": "hot"}, "lead_status", "new, contacted, qualified, won, lost"),
        ({"deleted_records": "ignore"}, "deleted_records", "delete, flag"),
        ({"concurrency": 0}, "concurrency", "1..64"),
        ({"bad_records": "skip"}, "bad_records", "fail, quarantine"),
        ({"max_requests_per_second": "fast"}, "max_requests_per_second", "requests per second"),
    ],
)
def test_bad_settings_are_named_before_any_request(sandbox, make_loader, options, setting, hint):
    loader = make_loader(sandbox, **options)

    with pytest.raises(ConfigurationError) as raised:
        loader.run()

    assert f"`{setting}`" in str(raised.value) and hint in str(raised.value)
    assert sandbox.admin.stats()["total"] == 0


def test_unknown_resource_is_named(sandbox, loader):
    with pytest.raises(ConfigurationError, match="Available resources: leads, contacts"):
        loader.run(resources=["deals"])
    assert sandbox.admin.stats()["total"] == 0


@pytest.mark.parametrize(
    "url", ["http://api.example.com/v1", "http://10.0.0.8/v1", "ftp://api.rackwave.io/v1"]
)
def test_plain_http_is_refused_off_loopback(url):
    with pytest.raises(ConfigurationError) as raised:
        rackwave_source(client_id="x", client_secret="y", base_url=url)
    assert "`base_url`" in str(raised.value)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8765/v1", "http://127.5.6.7/v1", "http://localhost:1/v1",
     "http://[::1]:8765/v1", "https://api.example.com/v1"],
)
def test_https_or_loopback_is_accepted(url):
    assert resolve_base_url("production", url) == url


def test_environments_pick_the_documented_urls():
    assert resolve_base_url("production", None) == "https://api.rackwave.io/v1"
    assert resolve_base_url("sandbox", None) == "https://sandbox.api.rackwave.io/v1"


def test_credentials_and_base_url_come_from_environment_variables(sandbox, make_loader,
                                                                  monkeypatch):
    monkeypatch.setenv("SOURCES__RACKWAVE__CLIENT_ID", DEMO_CLIENT_ID)
    monkeypatch.setenv("SOURCES__RACKWAVE__CLIENT_SECRET", DEMO_CLIENT_SECRET)
    monkeypatch.setenv("SOURCES__RACKWAVE__BASE_URL", sandbox.base_url)
    loader = make_loader(sandbox)
    loader.client_id = loader.client_secret = None

    loader.run(base_url=None)

    assert loader.ids("leads") == sandbox_ids(sandbox, "leads")


def test_missing_credentials_say_where_to_put_them(sandbox, make_loader):
    loader = make_loader(sandbox)
    loader.client_id = loader.client_secret = None

    with pytest.raises(ConfigurationError) as raised:
        loader.run()

    assert "SOURCES__RACKWAVE__CLIENT_ID" in str(raised.value)
    assert ".dlt/secrets.toml" in str(raised.value)
    assert sandbox.admin.stats()["total"] == 0


# --- every setting from config.toml, secrets.toml and the environment ------------------------

import inspect  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

from rackwave_source import settings as S
from rackwave_source.source import _rackwave_source

#: A value each setting refuses: if the error names the setting, the value reached it.
REFUSED = {
    "environment": "staging", "base_url": "ftp://api.rackwave.io/v1", "per_page": 0,
    "start_date": "yesterday", "lookback": "soon", "full_scan_every": "often",
    "full_scan": "maybe", "deleted_records": "archive", "bad_records": "ignore",
    "lead_status": "cold", "max_rate_limit_wait": "forever", "concurrency": 0,
    "max_requests_per_second": -5, "ca_bundle": "/nonexistent/ca.pem", "schema_contract": "loose",
    "client_id": " ", "client_secret": " ",
    "hash_columns": "id", "exclude_columns": "created_at", "hash_normalization": "upper",
    "hash_key": " ", "history": "scd3",
}


def _toml(value: object) -> str:
    return str(value) if isinstance(value, int) else f'"{value}"'


def test_the_settings_table_lists_every_parameter_of_the_source():
    code_only = {"progress"}  # an object passed in code (rackwave_source(progress=...)): no setting
    assert set(S.SETTINGS) == set(inspect.signature(_rackwave_source).parameters) - code_only
    assert set(REFUSED) == set(S.SETTINGS) - {"lead_search"}  # any text is a search


@pytest.mark.parametrize("where", ["environment", "config.toml", "secrets.toml"])
@pytest.mark.parametrize("setting", sorted(REFUSED))
def test_every_setting_is_read_from_config_secrets_and_the_environment(
        setting, where, monkeypatch, isolated_dlt: Path):
    # the credentials the other settings need, from the environment unless under test
    for name, value in (("client_id", "x"), ("client_secret", "y")):
        if name != setting:
            monkeypatch.setenv(f"SOURCES__RACKWAVE__{name.upper()}", value)
    value = REFUSED[setting]
    if where == "environment":
        monkeypatch.setenv(f"SOURCES__RACKWAVE__{setting.upper()}", str(value))
    else:
        write_dlt_settings(isolated_dlt, where, f"[sources.rackwave]\n{setting} = {_toml(value)}\n")

    with pytest.raises(ConfigurationError) as raised:
        rackwave_source()

    assert raised.value.setting == setting, str(raised.value)


def test_a_value_of_the_wrong_type_names_the_setting_and_exits_2(sandbox, monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.setenv("SOURCES__RACKWAVE__PER_PAGE", "abc")
    monkeypatch.setenv("SOURCES__RACKWAVE__CLIENT_ID", DEMO_CLIENT_ID)
    monkeypatch.setenv("SOURCES__RACKWAVE__CLIENT_SECRET", DEMO_CLIENT_SECRET)

    assert main(["--base-url", sandbox.base_url]) == 2

    err = capsys.readouterr().err
    assert "`per_page`" in err and "'abc'" in err and "1 to 100" in err
    assert "Traceback" not in err
    assert sandbox.admin.stats()["total"] == 0


def test_a_misspelled_key_is_reported_with_the_setting_it_resembles(
        monkeypatch, isolated_dlt: Path, caplog):
    monkeypatch.setenv("SOURCES__RACKWAVE__PERPAGE", "50")
    write_dlt_settings(isolated_dlt, "config.toml",
                       "[sources.rackwave]\nlookbak = \"1h\"\n[sources.rackwave.leads]\nanything = 1\n")

    with caplog.at_level(logging.WARNING, logger="rackwave_source"):
        rackwave_source(client_id="x", client_secret="y")

    messages = [r.getMessage() for r in caplog.records]
    assert any("`perpage`" in m and "SOURCES__RACKWAVE__PERPAGE" in m and "`per_page`" in m
               for m in messages), messages
    assert any("`lookbak`" in m and "config.toml" in m and "`lookback`" in m for m in messages)
    assert not any("leads" in m for m in messages)  # a resource's section is dlt's own


def test_lookback_from_config_toml_rereads_that_window(sandbox, make_loader, isolated_dlt: Path):
    loader = make_loader(sandbox, full_scan_every="never")
    loader.run(resources=["leads"])
    # ten years, as a number of seconds
    write_dlt_settings(isolated_dlt, "config.toml", "[sources.rackwave]\nlookback = 315360000\n")
    sandbox.admin.reset_stats()

    result = loader.run(resources=["leads"])

    # the whole account lies within the window: every page is read again
    assert loader.last_run("leads", result)["pages"] == 3
    assert loader.ids("leads") == sandbox_ids(sandbox, "leads")
