"""The HTTP client: one retrying session, typed errors, and a shared pause after 429.

Retries of 5xx answers, dropped connections and unreadable bodies use dlt's retrying requests
helper, so they are tuned the dlt way (``[runtime]`` ``request_max_attempts``,
``request_backoff_factor``, ``request_max_retry_delay``, ``request_timeout``), with one addition:
a 2xx whose body is not complete JSON (a truncated transfer, a proxy's HTML page) is retried too,
which dlt does not do on its own.

429 is deliberately *not* left to dlt's attempt counter: a burst of rate limiting is normal API
behaviour, not a failure, so it is handled here with a time budget (``max_rate_limit_wait``)
instead of 5 attempts, through a :class:`~rackwave_source.throttle.Throttle` shared by every
thread using this client: the pause Retry-After asks for stops all workers, and the rate the
server tolerates is learned so that the next 429 is rare.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Dict, Mapping, Optional

import requests
from requests import Response
from requests.exceptions import RequestException

from dlt.common.json import json
from dlt.sources.helpers.requests.retry import DEFAULT_RETRY_EXCEPTIONS, Client

from . import settings as S
from .auth import RackwaveTokenAuth, make_auth
from .throttle import Throttle
from .exceptions import (
    AuthenticationError,
    RateLimitError,
    ServerError,
    api_error_for,
)

_BODY_ATTR = "_rackwave_body"
USER_AGENT = "rackwave-source (dlt)"
Decoder = Callable[[bytes], Any]


def _retry_after_seconds(response: Response) -> float:
    """Reads Retry-After as seconds (documented) or as an HTTP date (tolerated)."""
    header = (response.headers.get("Retry-After") or "").strip()
    if not header:
        return S.DEFAULT_RETRY_AFTER_S
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
    except (TypeError, ValueError):
        return S.DEFAULT_RETRY_AFTER_S


def _session_attrs(base_url: str) -> Dict[str, Any]:
    """Session settings, with proxies and CA bundle read from the environment once.

    requests re-reads the environment (HTTP(S)_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE, .netrc) on
    every request when ``trust_env`` is on: about 0.8 ms each, a sixth of a page's CPU time here.
    Reading it once at start keeps the same behaviour for a run.
    """
    env = requests.Session().merge_environment_settings(base_url, {}, None, True, None)
    return {
        "headers": {"User-Agent": USER_AGENT, "Accept": "application/json"},
        "trust_env": False,
        "proxies": env.get("proxies") or {},
        "verify": env.get("verify", True),
    }


class RackwaveClient:
    """Talks JSON to one Rackwave base URL with one set of credentials."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        max_rate_limit_wait: float = S.MAX_RATE_LIMIT_WAIT_S,
        refresh_margin_seconds: Optional[float] = None,
        max_requests_per_second: Optional[float] = None,
        max_connections: int = S.DEFAULT_CONCURRENCY,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_rate_limit_wait = max_rate_limit_wait
        self._http = Client(
            request_timeout=S.REQUEST_TIMEOUT_S,
            max_connections=max(max_connections, 1),
            raise_for_status=False,
            status_codes=tuple(range(500, 600)),
            exceptions=DEFAULT_RETRY_EXCEPTIONS,
            retry_condition=self._body_unreadable,
            session_attrs=_session_attrs(self.base_url),
        )
        # Picks up [runtime] request_* settings from dlt config and the environment.
        self._http.configure()
        self.auth: RackwaveTokenAuth = make_auth(
            self.base_url, client_id, client_secret, self._http, refresh_margin_seconds
        )
        self.throttle = Throttle(max_requests_per_second)
        self._local = threading.local()  # the decoder of the request this thread is sending
        self._stats_lock = threading.Lock()
        self.requests_by_path: Counter[str] = Counter()
        self.rate_limited_by_path: Counter[str] = Counter()

    @property
    def max_attempts(self) -> int:
        return int(self._http._retry_kwargs["max_attempts"])

    def _body_unreadable(
        self, response: Optional[Response], exception: Optional[BaseException]
    ) -> bool:
        """Retry predicate: a successful status whose body does not decode (truncated, HTML).

        It runs in the sending thread, so it uses that request's decoder, and keeps the result on
        the response: every body is decoded once.
        """
        if response is None or not 200 <= response.status_code < 300:
            return False
        decode: Decoder = getattr(self._local, "decode", None) or json.loadb
        try:
            setattr(response, _BODY_ATTR, decode(response.content))
        except (ValueError, TypeError, RequestException):
            return True
        return False

    def get(
        self, path: str, params: Optional[Mapping[str, Any]] = None,
        decode: Optional[Decoder] = None,
    ) -> Any:
        """GETs ``path`` and returns its body decoded by ``decode`` (default: JSON to Python).

        Raises:
            ApiError: a documented 4xx, with the API's message and field errors.
            AuthenticationError: the API refused a freshly obtained token.
            RateLimitError: 429s lasted longer than ``max_rate_limit_wait`` seconds.
            ServerError: 5xx, network failures or unreadable bodies outlived every retry.
        """
        url = self.base_url + path
        waited = 0.0
        self._local.decode = decode
        while True:
            sent_at = self.throttle.acquire()
            try:
                response = self._http.get(url, params=dict(params or {}), auth=self.auth)
            except RequestException as exc:
                raise ServerError(
                    f"Rackwave API request to {url} failed after {self.max_attempts} attempts: "
                    f"{type(exc).__name__}. The API or the network is down; nothing past the last "
                    "successful load was recorded, so run again once it is back (or raise "
                    "[runtime] request_max_attempts)."
                ) from None
            with self._stats_lock:
                self.requests_by_path[path] += 1
            status = response.status_code
            if status == 429:
                with self._stats_lock:
                    self.rate_limited_by_path[path] += 1
                delay = _retry_after_seconds(response)
                waited += delay
                if waited > self.max_rate_limit_wait:
                    raise RateLimitError(
                        f"Rackwave API kept answering 429 Too Many Requests for {url} for "
                        f"{waited:.0f} s. Lower the load on this account or raise "
                        "max_rate_limit_wait under [sources.rackwave]."
                    )
                self.throttle.rate_limited_for(delay, sent_at)
                continue
            self.throttle.succeeded()
            return self._decode(url, response)

    def _decode(self, url: str, response: Response) -> Any:
        status = response.status_code
        if status == 401:
            raise AuthenticationError(
                f"Rackwave API at {self.base_url} refused a freshly issued access token (HTTP 401) "
                f"for {url}. Check that the client credentials are allowed to read this resource."
            )
        if status >= 500:
            raise ServerError(
                f"Rackwave API answered HTTP {status} for {url} after {self.max_attempts} "
                "attempts. Run again later; nothing past the last successful load was recorded."
            )
        if status >= 400:
            try:
                body: Any = json.loadb(response.content)
            except ValueError:
                body = None
            raise api_error_for(url, status, body, response.reason)
        if not hasattr(response, _BODY_ATTR):
            raise ServerError(
                f"Rackwave API sent an incomplete or non-JSON body for {url} (HTTP {status}, "
                f"{response.headers.get('Content-Type', 'no content type')}) on every one of "
                f"{self.max_attempts} attempts. Run again later."
            )
        return getattr(response, _BODY_ATTR)

    def stats(self, path: str) -> Dict[str, int]:
        """Requests answered for ``path`` so far, and how many of them were 429."""
        with self._stats_lock:
            return {
                "requests": self.requests_by_path[path],
                "rate_limited": self.rate_limited_by_path[path],
            }
