"""The user's settings, validated into one immutable :class:`ValidatedOptions`.

(``settings.py`` holds the connector's own literals; this module holds what the user chose.)

Every check here runs before the first request is sent, so a typo in ``config.toml`` costs a clear
message and no API call. Each error names the setting, what is wrong, and the accepted values.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import (
    Any, Collection, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union,
)
from urllib.parse import urlsplit

from dlt.common.configuration.exceptions import (
    ConfigValueCannotBeCoercedException,
    ValueNotSecretException,
)

from rackwave_source import settings as S
from rackwave_source.exceptions import ConfigurationError
from rackwave_source.rows.privacy import Privacy, validate_privacy

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class ValidatedOptions:
    """What the user chose for one source instance, validated (credentials excluded; the hash
    key only inside ``privacy``, whose repr does not show it)."""

    base_url: str
    per_page: int
    start_date: Optional[datetime]
    lookback: timedelta
    full_scan_every: Optional[timedelta]
    force_full_scan: bool
    deleted_records: str
    bad_records: str
    lead_status: Optional[str]
    lead_search: Optional[str]
    max_rate_limit_wait: float
    concurrency: int
    ca_bundle: Optional[str]
    max_requests_per_second: Optional[float]
    privacy: Privacy = Privacy()  # hash_columns, exclude_columns (privacy.py); holds the key
    history: str = S.DEFAULT_HISTORY  # "scd2": also keep <resource>_history (warehouse/versions.py)
    schema_contract: str = S.DEFAULT_SCHEMA_CONTRACT  # "freeze": drift fails the run


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: the only hosts allowed over plain HTTP."""
    host = host.strip("[]").lower()
    if host in S.LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_base_url(environment: Optional[str], base_url: Optional[str]) -> str:
    """Picks the documented base URL of ``environment`` unless ``base_url`` overrides it.

    Raises:
        ConfigurationError: unknown environment, malformed URL, or plain HTTP off loopback.
    """
    env = (environment or S.DEFAULT_ENVIRONMENT).strip().lower()
    if env not in S.ENVIRONMENTS:
        raise ConfigurationError(
            "environment",
            f"unknown environment {environment!r}",
            f"Use one of: {', '.join(S.ENVIRONMENTS)}; or set `base_url` to point elsewhere.",
        )
    url = (base_url or S.ENVIRONMENTS[env]).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            "base_url",
            f"{url!r} is not an absolute http(s) URL",
            "Use e.g. https://api.rackwave.io/v1.",
        )
    if parts.username or parts.password:
        raise ConfigurationError(
            "base_url",
            "the URL carries user info",
            "Remove it: credentials go in client_id and client_secret.",
        )
    if parts.scheme != "https" and not is_loopback(parts.hostname):
        raise ConfigurationError(
            "base_url",
            f"{parts.scheme}://{parts.hostname} is not HTTPS",
            "The Rackwave API requires HTTPS; plain HTTP is only allowed to loopback "
            "(127.0.0.0/8, localhost, ::1), e.g. for the local sandbox.",
        )
    return url


def parse_duration(setting: str, value: Union[str, int, float, timedelta, None]) -> timedelta:
    """Reads ``90``, ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"`` or ``"1w"`` as a duration."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        seconds = -1.0
    elif isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value or ""))
        if not match:
            raise ConfigurationError(
                setting,
                f"{value!r} is not a duration",
                "Write a number of seconds or a number with a unit s, m, h, d or w, e.g. '24h'.",
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if seconds < 0:
        raise ConfigurationError(setting, f"{value!r} is negative", "Use a duration of 0 or more.")
    return timedelta(seconds=seconds)


def parse_timestamp(setting: str, value: Union[str, datetime, None]) -> Optional[datetime]:
    """Reads an ISO 8601 date or timestamp as an aware UTC datetime (naive values are UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ConfigurationError(
                setting,
                f"{value!r} is not an ISO 8601 date or timestamp",
                "Write e.g. '2026-01-31' or '2026-01-31T08:00:00Z'.",
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def validate_per_page(value: object) -> int:
    """Checks the documented 1..100 range; the API itself would answer 422 much later."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        ok = False
    else:
        ok = str(value).strip().isdigit()
    number = int(str(value).strip()) if ok else -1
    if not S.MIN_PER_PAGE <= number <= S.MAX_PER_PAGE:
        raise ConfigurationError(
            "per_page",
            f"{value!r} is outside {S.MIN_PER_PAGE}..{S.MAX_PER_PAGE}",
            f"The API accepts {S.MIN_PER_PAGE} to {S.MAX_PER_PAGE} records per page; "
            f"{S.DEFAULT_PER_PAGE} is fastest.",
        )
    return number


def validate_choice(setting: str, value: Optional[str], choices: Sequence[str]) -> Optional[str]:
    """Normalises an optional enumerated setting, rejecting values outside ``choices``."""
    if value is None or value == "":
        return None
    normalised = str(value).strip().lower()
    if normalised not in choices:
        raise ConfigurationError(
            setting, f"unknown value {value!r}", f"Use one of: {', '.join(choices)}."
        )
    return normalised


def validate_resources(requested: Sequence[str], available: Sequence[str]) -> Tuple[str, ...]:
    """Checks resource names given on the command line or to ``with_resources``."""
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise ConfigurationError(
            "resources",
            f"unknown resource {', '.join(map(repr, unknown))}",
            f"Available resources: {', '.join(available)}.",
        )
    return tuple(requested)


def require_secret(setting: str, value: Optional[str]) -> str:
    """Rejects a missing or blank credential without ever echoing the value."""
    if value is None or not str(value).strip():
        env = f"SOURCES__RACKWAVE__{setting.upper()}"
        raise ConfigurationError(
            setting,
            "it is missing or empty",
            f"Put it in .dlt/secrets.toml under [sources.rackwave] or in the environment "
            f"variable {env}.",
        )
    text = str(value).strip()
    if re.search(S.CREDENTIAL_PLACEHOLDER, text):
        raise ConfigurationError(
            setting,
            "it is still a placeholder (the example's value, e.g. from "
            ".dlt/secrets.toml.example), not a real credential; nothing was sent",
            f"Put the {setting} of your Rackwave API client in .dlt/secrets.toml under "
            f"[sources.rackwave] or in SOURCES__RACKWAVE__{setting.upper()}.",
        )
    return text


def whole_number(setting: str, value: object, highest: int, fix: str) -> int:
    """A whole number from 1 to ``highest`` (as text too: the environment gives text)."""
    text = str(value).strip()
    number = int(text) if text.isdigit() and not isinstance(value, bool) else -1
    if not 1 <= number <= highest:
        raise ConfigurationError(setting, f"{value!r} is outside 1..{highest}", fix)
    return number


def validate_concurrency(value: object) -> int:
    """Parallel page requests of a full scan: 1 (sequential) .. MAX_CONCURRENCY."""
    return whole_number(
        "concurrency", value, S.MAX_CONCURRENCY,
        f"Use a whole number of parallel requests; {S.DEFAULT_CONCURRENCY} is the default.")


def validate_rate(value: object) -> Optional[float]:
    """An optional requests-per-second quota; None or 0 means "learn it from 429s"."""
    if value is None or value == "" or value == 0:
        return None
    try:
        rate = float(str(value))
    except ValueError:
        rate = -1.0
    if rate == 0:  # "0" as text too (a value from the environment)
        return None
    if not rate > 0:
        raise ConfigurationError(
            "max_requests_per_second",
            f"{value!r} is not a positive number",
            "Set the account's quota in requests per second (e.g. 50), or leave it unset.",
        )
    return rate


def validate_wait(value: object) -> float:
    """Seconds one request may spend waiting on 429 answers: a number of 0 or more."""
    try:
        seconds = float(str(value))
    except ValueError:
        seconds = -1.0
    if isinstance(value, bool) or not seconds >= 0:
        raise ConfigurationError(
            "max_rate_limit_wait", f"{value!r} is not a number of seconds",
            f"Use a number of seconds of 0 or more; {S.MAX_RATE_LIMIT_WAIT_S:.0f} is the default.",
        )
    return seconds


def validate_ca_bundle(value: Optional[str]) -> Optional[str]:
    """A PEM file of certificate authorities to trust instead of the default bundle."""
    if value is None or not str(value).strip():
        return None
    path = os.path.abspath(os.path.expanduser(str(value).strip()))
    if not os.path.isfile(path):
        raise ConfigurationError(
            "ca_bundle",
            f"{value!r} is not a file",
            "Point it at a PEM file of the certificate authorities to trust (e.g. your "
            "company's TLS-inspecting proxy), or leave it unset for the default bundle.",
        )
    return path


def unknown_settings(known: Collection[str], allowed_sections: Collection[str] = ()) -> List[str]:
    """One message per key under ``[sources.rackwave]`` (config.toml, secrets.toml) or
    ``SOURCES__RACKWAVE__*`` that is no setting, naming where it is and the closest setting.

    dlt ignores such keys silently, so a misspelled ``perpage = 50`` would change nothing. These
    are warnings, not errors: a key meant for another version of the connector must not stop a
    scheduled load. Subsections (``[sources.rackwave.leads]``) are dlt's own and pass.
    """
    import dlt

    found: Dict[str, str] = {}
    prefix = f"SOURCES__{S.SOURCE_NAME.upper()}__"
    for name in os.environ:
        if name.upper().startswith(prefix) and "__" not in name[len(prefix):]:
            found.setdefault(name[len(prefix):].lower(), f"environment variable {name}")
    for provider in dlt.config.config_providers:
        if not provider.supports_sections or provider.name.startswith("Environment"):
            continue
        try:
            section, _ = provider.get_value(S.SOURCE_NAME, Any, None, "sources")
        except Exception:  # noqa: BLE001 - a provider that cannot answer has nothing to report
            continue
        if isinstance(section, Mapping):
            for key, value in section.items():
                if not isinstance(value, Mapping):
                    found.setdefault(str(key).lower(),
                                     f"[sources.{S.SOURCE_NAME}] in {provider.name}")
    messages = []
    for key, where in sorted(found.items()):
        if key in known or key in allowed_sections:
            continue
        close = difflib.get_close_matches(key, list(known), n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"the settings are: {', '.join(known)}."
        messages.append(f"Unknown Rackwave setting `{key}` ({where}) is ignored: {hint}")
    return messages


@contextmanager
def readable_setting_errors() -> Iterator[None]:
    """Turns dlt's errors on reading a setting into a :class:`ConfigurationError` naming the
    setting and what it takes: a value that is not of the setting's type
    (``SOURCES__RACKWAVE__PER_PAGE=abc``), or a secret kept where dlt refuses secrets."""
    try:
        yield
    except ConfigValueCannotBeCoercedException as exc:
        # a secret's value is never echoed
        shown = "its value" if exc.field_name in S.SECRET_SETTINGS else repr(exc.field_value)
        raise ConfigurationError(
            exc.field_name, f"{shown} cannot be read as its type",
            f"It takes {_takes(exc.field_name, exc.hint)}.",
        ) from None
    except ValueNotSecretException as exc:
        setting = str(exc.key).rsplit(".", 1)[-1]
        raise ConfigurationError(
            setting, f"it is in {exc.provider_name}, which dlt does not let hold secrets",
            f"Move it to .dlt/secrets.toml under [sources.{S.SOURCE_NAME}] or to the "
            f"environment variable SOURCES__{S.SOURCE_NAME.upper()}__{setting.upper()}.",
        ) from None


_NEVER = ("", "never", "off", "none", "false")


def validated_options(values: Mapping[str, Any]) -> ValidatedOptions:
    """Every setting of the source checked, from ``values`` (name -> value as dlt resolved it,
    for each setting of ``settings.SPEC`` the source reads; the credentials are checked where the
    client is made). The first wrong one raises a :class:`ConfigurationError`."""
    every = values["full_scan_every"]
    return ValidatedOptions(
        base_url=resolve_base_url(values["environment"], values["base_url"]),
        per_page=validate_per_page(values["per_page"]),
        start_date=parse_timestamp("start_date", values["start_date"]),
        lookback=parse_duration("lookback", values["lookback"]),
        full_scan_every=None if every is None or str(every).strip().lower() in _NEVER
        else parse_duration("full_scan_every", every),
        force_full_scan=bool(values["full_scan"]),
        deleted_records=_choice(values, "deleted_records", S.DELETED_RECORDS_MODES),
        bad_records=_choice(values, "bad_records", S.BAD_RECORDS_MODES),
        lead_status=validate_choice("lead_status", values["lead_status"], S.LEAD_STATUSES),
        lead_search=(values["lead_search"] or None),
        max_rate_limit_wait=validate_wait(values["max_rate_limit_wait"]),
        concurrency=validate_concurrency(values["concurrency"]),
        max_requests_per_second=validate_rate(values["max_requests_per_second"]),
        ca_bundle=validate_ca_bundle(values["ca_bundle"]),
        privacy=validate_privacy(values["hash_columns"], values["hash_key"],
                                 values["exclude_columns"], values["hash_normalization"]),
        history=_choice(values, "history", S.HISTORY_MODES),
        schema_contract=_choice(values, "schema_contract", S.SCHEMA_CONTRACTS),
    )


def _choice(values: Mapping[str, Any], name: str, choices: Sequence[str]) -> str:
    """One of ``choices``; unset means the setting's default."""
    return validate_choice(name, values[name], choices) or str(S.default(name))


def _takes(setting: str, hint: Any) -> str:
    """What a setting accepts, in words (the source's settings and the push's)."""
    return S.SETTINGS.get(setting) or S.PUSH_SETTINGS.get(setting) or str(hint)
