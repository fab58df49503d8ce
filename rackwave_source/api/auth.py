"""The client-credentials token exchange, as a small subclass of dlt's OAuth2 helper.

dlt 1.31's ``OAuth2ClientCredentials`` gets three things wrong for Rackwave, so this class
overrides exactly those hooks and keeps the rest of the flow:

* it posts the token request form-encoded, while Rackwave documents a JSON body;
* it renews only when its own clock says the token expired, with no margin, so a request can
  leave with a token that dies in flight: we renew ``refresh_margin_seconds`` early;
* it never renews after a 401 (a token revoked or expired early on the server side): we renew once
  and re-send that request, inside the auth object (as httpx's auth flow does), so no caller has
  to know about it.

It is safe to share between threads: one lock guards the token, so concurrent page fetches
trigger a single renewal.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional, TypeVar

from requests.exceptions import JSONDecodeError, RequestException, SSLError

from dlt.common import pendulum
from dlt.common.configuration.specs.base_configuration import configspec
from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials

from rackwave_source import settings as S
from rackwave_source.exceptions import (
    connection_cause,
    AuthenticationError,
    ServerError,
    TLSVerificationError,
    UnexpectedResponseError,
)

T = TypeVar("T")


@configspec
class RackwaveTokenAuth(OAuth2ClientCredentials):
    """Bearer auth that obtains, renews and re-renews Rackwave access tokens."""

    refresh_margin_seconds: float = S.TOKEN_REFRESH_MARGIN_S
    default_token_expiration: int = S.DEFAULT_TOKEN_LIFETIME_S

    def __post_init__(self) -> None:
        super().__post_init__()
        self._lock = threading.RLock()
        self.tokens_obtained = 0
        #: called for every token obtained after the first (expired, or refused with a 401)
        self.on_renewal: Callable[[], None] = lambda: None

    def __repr__(self) -> str:
        # The dataclass repr would print the client secret and the token.
        return f"RackwaveTokenAuth(access_token_url={self.access_token_url!r})"

    __str__ = __repr__

    @property
    def api_base_url(self) -> str:
        """The base URL the credentials were sent to, for error messages."""
        url = self.access_token_url or ""
        return url[: -len(S.TOKEN_PATH)] if url.endswith(S.TOKEN_PATH) else url

    def build_access_token_request(self) -> Dict[str, Any]:
        """Rackwave documents a JSON body, not a form."""
        return {
            "headers": {"Accept": "application/json"},
            "json": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "grant_type": "client_credentials",
                **self.access_token_request_data,
            },
        }

    def parse_expiration_in_seconds(self, response_json: Any) -> int:
        """Lifetime minus the refresh margin (at most half the lifetime, for short-lived tokens)."""
        lifetime = super().parse_expiration_in_seconds(response_json)
        margin = min(float(self.refresh_margin_seconds), lifetime / 2.0)
        return max(0, int(lifetime - margin))

    def obtain_token(self) -> None:
        """Exchanges the credentials; every failure names the URL, never the credentials."""
        url = self.access_token_url
        try:
            response = self.session.post(url, **self.build_access_token_request())
        except SSLError:
            raise TLSVerificationError(url) from None
        except RequestException as exc:
            cause = connection_cause(exc) or type(exc).__name__
            raise ServerError(
                f"Could not reach the Rackwave token endpoint {url}: {cause}. "
                "Check the base URL and the network, then run again."
            ) from None
        if response.status_code in (400, 401, 403, 422):
            raise AuthenticationError(
                f"The Rackwave client credentials were rejected by {self.api_base_url} "
                f"(HTTP {response.status_code}). Check client_id and client_secret under "
                "[sources.rackwave] in .dlt/secrets.toml or SOURCES__RACKWAVE__CLIENT_ID / "
                "SOURCES__RACKWAVE__CLIENT_SECRET, and that they belong to this environment."
            )
        if response.status_code >= 400:
            raise ServerError(
                f"The Rackwave token endpoint {url} answered HTTP {response.status_code} "
                "after every retry. Try again later."
            )
        try:
            body = response.json()
        except (JSONDecodeError, ValueError):
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise UnexpectedResponseError(
                f"The Rackwave token endpoint {url} answered without an access_token."
            )
        self.parse_native_representation(token)
        lifetime = self.parse_expiration_in_seconds(body)
        self.token_expiry = pendulum.now().add(seconds=lifetime)
        self.tokens_obtained += 1
        if self.tokens_obtained > 1:
            self.on_renewal()

    def _current_token(self) -> str:
        with self._lock:
            if self.access_token is None or self.is_token_expired():
                self.obtain_token()
            return str(self.access_token)

    def _invalidate(self, refused: str) -> None:
        # Another thread may have renewed already; only drop the token we were refused with.
        with self._lock:
            if self.access_token is not None and str(self.access_token) == refused:
                self.access_token = None

    def authorized(self, send: Callable[[str], T], status: Callable[[T], int]) -> T:
        """Runs ``send(token)``; after a 401, renews the token once and runs it again.

        The one place a refused token is renewed: every API request goes through here (the
        client sends them itself, over urllib3), so no caller has to know about renewal.
        """
        token = self._current_token()
        result = send(token)
        if status(result) != 401:
            return result
        self._invalidate(token)
        return send(self._current_token())


def make_auth(base_url: str, client_id: str, client_secret: str, session: Any,
              refresh_margin_seconds: Optional[float] = None) -> RackwaveTokenAuth:
    """Builds the auth object for ``base_url`` using the connector's retrying ``session``."""
    auth = RackwaveTokenAuth(
        access_token_url=base_url.rstrip("/") + S.TOKEN_PATH,
        client_id=client_id,
        client_secret=client_secret,
        session=session,
    )
    if refresh_margin_seconds is not None:
        auth.refresh_margin_seconds = refresh_margin_seconds
    return auth
