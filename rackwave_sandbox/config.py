"""Configuration, demo credentials and API constants of the Rackwave sandbox.

Everything that the HTTP layer, the data generator and the tests must agree on
lives here so that a single import gives the exact strings the real API uses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

DEMO_CLIENT_ID = "rw_test_sandbox"
DEMO_CLIENT_SECRET = "sk_test_sandbox"

LEAD_STATUSES: tuple[str, ...] = ("new", "contacted", "qualified", "won", "lost")
LEAD_SOURCES: tuple[str, ...] = ("api", "website", "referral", "manual")
KINDS: tuple[str, ...] = ("leads", "contacts")
ID_PREFIXES: dict[str, str] = {"leads": "lead_", "contacts": "contact_"}

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100

# Exact messages, shared by server and tests (the connector may match on them).
MSG_INVALID_DATA = "The given data was invalid."
MSG_PER_PAGE = "The per page must be between 1 and 100."
MSG_PAGE_INTEGER = "The page must be an integer."
MSG_PAGE_MIN = "The page must be at least 1."
MSG_STATUS_INVALID = "The selected status is invalid."
MSG_UNAUTHENTICATED = "Unauthenticated."
MSG_TOKEN_INVALID = "Invalid access token."
MSG_TOKEN_EXPIRED = "Access token has expired."
MSG_BAD_CREDENTIALS = "Invalid client credentials."
MSG_BAD_JSON = "The request body must be a valid JSON object."
MSG_BAD_GRANT = "Unsupported grant type. Only client_credentials is supported."
MSG_NOT_FOUND = "Not Found."
MSG_METHOD_NOT_ALLOWED = "Method Not Allowed."
MSG_TOO_MANY = "Too Many Attempts."
MSG_SERVER_ERROR = "Server Error."

#: Settings that may be changed while the server runs (``POST /_admin/config``).
RUNTIME_SETTINGS: tuple[str, ...] = (
    "latency_ms",
    "rate_limit",
    "rate_burst",
    "error_rate",
    "drop_rate",
    "token_ttl",
    "churn_creates",
    "churn_deletes",
    "churn_on_filtered",
    "count_lag",
    "count_lag_jitter",
    "page_cap",
)

#: Upper bound of ``churn_creates``/``churn_deletes``: churn runs under the store lock, so a
#: typo such as 1e9 would otherwise freeze the whole server inside one request.
MAX_CHURN_PER_REQUEST = 10_000.0


@dataclass
class SandboxConfig:
    """All knobs of one sandbox instance.

    Attributes:
        leads: Number of seeded leads.
        contacts: Number of seeded contacts.
        seed: Seed of the data generator and of the random-fault RNG; the same
            seed yields byte-identical records.
        token_ttl: Lifetime of issued bearer tokens in seconds (float allowed so
            tests can exercise expiry quickly).
        latency_ms: Artificial delay added to every ``/v1`` request.
        rate_limit: Token-bucket refill rate in requests per second, ``None``
            disables rate limiting.
        rate_burst: Bucket capacity; ``None`` means ``ceil(rate_limit)``.
        error_rate: Share of ``/v1`` requests answered with a JSON 500.
        drop_rate: Share of ``/v1`` requests whose connection is closed
            without any response.
        client_id: Accepted client id for ``POST /v1/auth/token``.
        client_secret: Accepted client secret.
        churn_creates: Expected number of records created per list request
            (``GET /v1/leads`` or ``/v1/contacts``) in the collection being
            listed, so a full scan meets an API that keeps growing under it.
            The integer part is applied on every request, the fractional part
            with that probability (2.5 -> 2 or 3). New records are created
            "now" and sort first (newest-first order). Churn happens under the
            store lock right before the page is computed, i.e. "between two
            requests", and only for list requests that are answered with a
            page (not 401/422/429 or an injected fault). Its decisions come
            from a RNG seeded with ``seed`` (reset by ``/_admin/reset``), so a
            run is replayable. At most ``MAX_CHURN_PER_REQUEST``.
        churn_deletes: Expected number of records deleted per list request, in
            the same way; victims are drawn uniformly from the whole collection
            (any position, churn-created records included), because deletions
            above the read position are what shift pages under a paging
            client. ``churn_creates == churn_deletes`` is "balanced churn": the
            total stays flat (exactly when both are integers) while the ids
            change.
        churn_on_filtered: Whether churn also runs on filtered list requests
            (``status=`` or ``search=``); True by default because a busy API
            does not care what its clients ask. False restricts churn to
            unfiltered lists, e.g. to keep a filtered cross-check stable.
        count_lag: ``meta.total`` (and ``last_page``, computed from it) trails
            the data by this many records, as if they had been created between
            the server counting and listing: the reported total is
            ``max(0, real_total - count_lag)`` while ``data`` comes from the
            real list. A client that stops at ``last_page`` then misses the
            oldest records. Applies to filtered lists too.
        count_lag_jitter: A lag that varies (0: off): each list response's
            ``meta.total`` trails the data by ``count_lag`` plus a number drawn
            uniformly from ``0..count_lag_jitter`` (a seeded RNG, reset by
            ``/_admin/reset``), as a count served by lagging replicas would.
            docs/api-assumptions.md assumes a constant lag; this breaks it on purpose.
        page_cap: The most records this server puts on one page, whatever
            ``per_page`` asks for (``None``: the documented 100). Like many
            real servers, it says so: ``meta.per_page`` and ``last_page`` are
            those of the page size it used. A client that takes a page shorter
            than the size it asked for as the last one loses the rest.
    """

    leads: int = 1000
    contacts: int = 500
    seed: int = 42
    token_ttl: float = 3600.0
    latency_ms: float = 0.0
    rate_limit: float | None = None
    rate_burst: int | None = None
    error_rate: float = 0.0
    drop_rate: float = 0.0
    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET
    churn_creates: float = 0.0
    churn_deletes: float = 0.0
    churn_on_filtered: bool = True
    count_lag: int = 0
    count_lag_jitter: int = 0
    page_cap: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject nonsensical values early, before a server starts with them.

        Raises:
            ValueError: If any value is out of range.
        """
        if self.leads < 0 or self.contacts < 0:
            raise ValueError("leads and contacts must be >= 0")
        if self.token_ttl <= 0:
            raise ValueError("token_ttl must be > 0")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ValueError("rate_limit must be > 0 or None")
        if self.rate_burst is not None and self.rate_burst < 1:
            raise ValueError("rate_burst must be >= 1 or None")
        for name in ("error_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        for name in ("churn_creates", "churn_deletes"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0.0 <= value <= MAX_CHURN_PER_REQUEST  # also rejects NaN
            ):
                raise ValueError(f"{name} must be a number between 0 and {MAX_CHURN_PER_REQUEST:g}")
        if not isinstance(self.churn_on_filtered, bool):
            raise ValueError("churn_on_filtered must be true or false")
        for name in ("count_lag", "count_lag_jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0")
        if self.page_cap is not None and (
            isinstance(self.page_cap, bool) or not isinstance(self.page_cap, int) or self.page_cap < 1
        ):
            raise ValueError("page_cap must be an integer >= 1 or null")

    @property
    def effective_burst(self) -> int | None:
        """Bucket capacity actually used (``ceil(rate_limit)`` by default)."""
        if self.rate_limit is None:
            return None
        if self.rate_burst is not None:
            return int(self.rate_burst)
        return max(1, math.ceil(self.rate_limit))

    def runtime_settings(self) -> dict[str, Any]:
        """Return the settings that ``POST /_admin/config`` can change."""
        return {name: getattr(self, name) for name in RUNTIME_SETTINGS}

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly copy (used by the admin API)."""
        return asdict(self)

    @staticmethod
    def coerce_setting(name: str, value: Any) -> Any:
        """Convert one ``POST /_admin/config`` value (JSON) to the type of its setting.

        Numbers arrive as JSON ints or floats and are widened; ``count_lag`` and
        ``churn_on_filtered`` are taken strictly (``1.5`` lags or ``"yes"`` are
        mistakes worth a 422, not something to round). ``None`` passes through
        so that :meth:`validate` decides whether the setting is nullable.

        Raises:
            ValueError: If the value cannot be converted.
            TypeError: If it is not a number at all (e.g. a list).
        """
        if value is None:
            return None
        if name in ("count_lag", "count_lag_jitter", "page_cap"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer")
            return value
        if name == "churn_on_filtered":
            if not isinstance(value, bool):
                raise ValueError("churn_on_filtered must be true or false")
            return value
        if name == "rate_burst":
            return int(value)
        return float(value)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all constructor arguments (for fixtures that forward kwargs)."""
        return tuple(f.name for f in fields(cls))
