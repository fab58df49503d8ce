"""Every setting is checked before any request, with an error that names it and says what to do
(``rackwave_source/options.py``; no server, no pipeline). Hand-picked cases, then generated ones."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackwave_source import settings as S
from rackwave_source.exceptions import ConfigurationError
from rackwave_source.options import (
    parse_duration,
    parse_timestamp,
    require_secret,
    resolve_base_url,
    validate_choice,
    validate_concurrency,
    validate_per_page,
    validate_rate,
    validate_wait,
)

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def test_the_environment_picks_the_documented_url_and_base_url_overrides_it() -> None:
    assert resolve_base_url("production", None) == S.ENVIRONMENTS["production"]
    assert resolve_base_url(" Sandbox ", None) == S.ENVIRONMENTS["sandbox"]
    assert resolve_base_url("production", "https://eu.example.com/v1/") == \
        "https://eu.example.com/v1"


@pytest.mark.parametrize("url, problem", [
    ("http://api.example.com/v1", "is not HTTPS"),
    ("ftp://api.example.com", "is not an absolute http(s) URL"),
    ("api.example.com/v1", "is not an absolute http(s) URL"),
    ("https://user:pw@api.example.com/v1", "carries user info"),
])
def test_a_url_that_is_not_https_or_carries_credentials_is_refused(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url") as refused:
        resolve_base_url(None, url)
    assert problem in str(refused.value) and "pw" not in str(refused.value)


def test_an_unknown_environment_names_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="production") as refused:
        resolve_base_url("staging", None)
    assert "`environment`" in str(refused.value)


@given(host=st.sampled_from(["127.0.0.1", "127.5.6.7", "localhost", "[::1]"]),
       port=st.integers(1, 65535))
def test_plain_http_is_allowed_to_loopback_only(host: str, port: int) -> None:
    assert resolve_base_url(None, f"http://{host}:{port}/v1") == f"http://{host}:{port}/v1"


@given(octets=st.tuples(st.integers(1, 126), st.integers(0, 255), st.integers(0, 255),
                        st.integers(1, 254)))
def test_plain_http_to_any_other_address_is_refused(octets: tuple) -> None:
    with pytest.raises(ConfigurationError, match="is not HTTPS"):
        resolve_base_url(None, "http://{}.{}.{}.{}/v1".format(*octets))


@given(amount=st.integers(0, 10_000), unit=st.sampled_from(sorted(UNITS)))
def test_a_duration_with_any_unit_reads_as_that_many_seconds(amount: int, unit: str) -> None:
    assert parse_duration("lookback", f"{amount}{unit}") == \
        timedelta(seconds=amount * UNITS[unit])
    assert parse_duration("lookback", amount) == timedelta(seconds=amount)


@pytest.mark.parametrize("value", ["soon", "-5m", "1y", "", True, -1])
def test_a_duration_that_is_not_one_names_the_setting(value: object) -> None:
    with pytest.raises(ConfigurationError, match="`full_scan_every`"):
        parse_duration("full_scan_every", value)  # type: ignore[arg-type]


def test_timestamps_are_utc_and_naive_ones_are_taken_as_utc() -> None:
    assert parse_timestamp("start_date", "2026-01-31") == datetime(2026, 1, 31, tzinfo=timezone.utc)
    assert parse_timestamp("start_date", "2026-01-31T10:00:00+02:00") == \
        datetime(2026, 1, 31, 8, tzinfo=timezone.utc)
    assert parse_timestamp("start_date", "") is None
    with pytest.raises(ConfigurationError, match="not an ISO 8601"):
        parse_timestamp("start_date", "31/01/2026")


@settings(max_examples=200)
@given(value=st.one_of(st.integers(-50, 200), st.integers(-50, 200).map(str),
                       st.floats(allow_nan=False), st.booleans(), st.none()))
def test_per_page_accepts_exactly_the_whole_numbers_the_api_accepts(value: object) -> None:
    whole = not isinstance(value, (bool, float)) and value is not None and \
        str(value).strip().lstrip("-").isdigit()
    if whole and S.MIN_PER_PAGE <= int(str(value)) <= S.MAX_PER_PAGE:
        assert validate_per_page(value) == int(str(value))
    else:
        with pytest.raises(ConfigurationError, match="`per_page`"):
            validate_per_page(value)


def test_choices_are_normalised_and_an_unknown_one_lists_the_known() -> None:
    assert validate_choice("deleted_records", " FLAG ", S.DELETED_RECORDS_MODES) == "flag"
    assert validate_choice("lead_status", "", S.LEAD_STATUSES) is None
    with pytest.raises(ConfigurationError, match="Use one of: delete, flag"):
        validate_choice("deleted_records", "purge", S.DELETED_RECORDS_MODES)


def test_numbers_out_of_range_are_refused_with_the_default_named() -> None:
    assert validate_concurrency("4") == 4
    with pytest.raises(ConfigurationError, match=str(S.DEFAULT_CONCURRENCY)):
        validate_concurrency(S.MAX_CONCURRENCY + 1)
    assert validate_rate(None) is None and validate_rate("0") is None and validate_rate(2.5) == 2.5
    with pytest.raises(ConfigurationError, match="positive"):
        validate_rate("-3")
    assert validate_wait("0") == 0.0
    with pytest.raises(ConfigurationError, match="`max_rate_limit_wait`"):
        validate_wait(True)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_missing_secret_says_where_to_put_it(value: object) -> None:
    with pytest.raises(ConfigurationError, match="SOURCES__RACKWAVE__CLIENT_SECRET"):
        require_secret("client_secret", value)  # type: ignore[arg-type]


def test_a_secret_is_never_echoed_and_is_trimmed() -> None:
    assert require_secret("client_secret", "  sk_live_abc  ") == "sk_live_abc"
    try:
        require_secret("client_secret", "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx")  # the example's
    except ConfigurationError as refused:
        assert "sk_live_x" not in str(refused) and "placeholder" in str(refused)
    else:
        pytest.fail("the example's placeholder was accepted")
