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
)


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

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all constructor arguments (for fixtures that forward kwargs)."""
        return tuple(f.name for f in fields(cls))
