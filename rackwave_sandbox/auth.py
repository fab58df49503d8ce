"""Issuing and verifying opaque bearer tokens.

Expired tokens are remembered (until pruned) so that the API can answer an
expired token differently from an unknown one, as the real platform does.
"""

from __future__ import annotations

import enum
import secrets
import threading
import time


class TokenState(enum.Enum):
    """Outcome of a token check."""

    VALID = "valid"
    MISSING = "missing"
    INVALID = "invalid"
    EXPIRED = "expired"


class TokenStore:
    """Thread-safe registry of issued tokens and their expiry (monotonic clock)."""

    #: Expired tokens older than this are forgotten (then reported as invalid).
    FORGET_AFTER = 24 * 3600.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        # Every token ever issued, in order: in-process tests search logs and files for them.
        self._issued: list[str] = []

    def issue(self, ttl: float) -> str:
        """Create a new random token valid for ``ttl`` seconds."""
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            if len(self._tokens) > 10000:
                self._prune(now)
            self._tokens[token] = now + ttl
            self._issued.append(token)
        return token

    def issued(self) -> list[str]:
        """All tokens issued so far, revoked and expired ones included."""
        with self._lock:
            return list(self._issued)

    def _prune(self, now: float) -> None:
        limit = now - self.FORGET_AFTER
        for token in [t for t, exp in self._tokens.items() if exp < limit]:
            del self._tokens[token]

    def check_header(self, header: str | None) -> TokenState:
        """Classify an ``Authorization`` header value."""
        if not header:
            return TokenState.MISSING
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return TokenState.MISSING if not token else TokenState.INVALID
        expires = self._tokens.get(token)
        if expires is None:
            return TokenState.INVALID
        if time.monotonic() >= expires:
            return TokenState.EXPIRED
        return TokenState.VALID

    def revoke_all(self) -> int:
        """Forget every token (they become invalid); returns how many."""
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
        return count
