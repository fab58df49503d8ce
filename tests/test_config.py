"""Settings: every mistake is named before a request is sent; env vars work the dlt way."""

from __future__ import annotations

import pytest

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from rackwave_source import ConfigurationError, rackwave_source
from rackwave_source.options import resolve_base_url
from support import sandbox_ids


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
