"""The HTTP client: pooled connections, bounded retries, typed errors, a shared 429 budget.

Two transports, one set of rules:

* Page requests, the hot path, go through urllib3 directly. requests (and so dlt's retrying
  helper built on it) spends about three times urllib3's CPU per request; on a two-core machine
  shared with nothing else, the connector's CPU per page is its throughput
  (benchmarks/README.md).
* The token exchange, rare, uses dlt's retrying requests session, through dlt's OAuth2 helper.

Both are tuned the dlt way (``[runtime]`` ``request_max_attempts``, ``request_backoff_factor``,
``request_max_retry_delay``, ``request_timeout``): 5xx answers, dropped connections, and 2xx
bodies that do not decode (a truncated transfer, a proxy's HTML page) are retried with
exponential backoff and jitter (dlt's helper has no jitter and does not retry bad bodies).

429 is deliberately *not* counted as a failed attempt: a burst of rate limiting is normal API
behaviour, so it has a time budget (``max_rate_limit_wait``) and goes through a
:class:`~rackwave_source.api.throttle.Throttle` shared by every thread using this client: the pause
Retry-After asks for stops all workers, and the rate the server tolerates is learned so that the
next 429 is rare.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union
from urllib.parse import urlencode, urlsplit, urlunsplit

import certifi
import requests
import urllib3
from tenacity import RetryCallState
from urllib3 import BaseHTTPResponse

from dlt.common.configuration import resolve_configuration
from dlt.common.configuration.specs import RuntimeConfiguration
from dlt.common.json import json
from dlt.sources.helpers.requests.retry import DEFAULT_RETRY_EXCEPTIONS

from rackwave_source import settings as S
from rackwave_source.api.auth import RackwaveTokenAuth, make_auth
from rackwave_source.dlt_internals import NotifyingRetries
from rackwave_source.exceptions import (
    AuthenticationError,
    RateLimitError,
    ServerError,
    TLSVerificationError,
    api_error_for,
    connection_cause,
)
from rackwave_source.api.throttle import Throttle

USER_AGENT = "rackwave-source (dlt)"
Decoder = Callable[[bytes], Any]
Failure = Union[None, str, BaseException]
UNDECODABLE = "undecodable"
#: what ``stats(path)`` counts, per path
STATS = ("requests", "rate_limited", "retries", "token_renewals")
_OS_ERROR = re.compile(r"\[Errno -?\d+\] [^'\"()]+")
logger = logging.getLogger("rackwave_source")


@dataclass(frozen=True)
class Request:
    """One request as the retry loop sends it: ``shown`` is how messages name it."""

    method: str
    target: str
    shown: str
    body: Optional[bytes] = None
    #: a failure that may have reached the server ends the attempts: the caller finds out what
    #: happened (a create), instead of sending again
    once: bool = False


@dataclass(frozen=True)
class Answer:
    """A POST's outcome: the final status and decoded body, or ``unanswered``: the request may
    have reached the server, but no answer tells what it did (a 5xx, a connection lost after
    sending, a 2xx body cut short); ``failure`` says what was seen."""

    status: int
    body: Any
    unanswered: bool = False
    failure: str = ""


def shown_url(url: str, params: Optional[Mapping[str, Any]] = None) -> str:
    """A request's URL as messages show it: no query string (a lookup's ``search`` holds an
    email), only the page number when there is one."""
    parts = urlsplit(url)
    bare = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    page = (params or {}).get("page")
    return f"{bare} page {page}" if page is not None else bare


def describe_failure(failure: Failure) -> str:
    """What went wrong with one attempt, in words that name no URL query, header or secret: the
    status, or the network error's type and the operating system's reason."""
    if failure == UNDECODABLE:
        return "an incomplete or non-JSON body"
    if isinstance(failure, str):
        return failure
    if failure is None:
        return "no answer"
    text = str(failure)
    reason = _OS_ERROR.search(text)
    detail = reason.group(0).strip() if reason else ("timed out" if "timed out" in text else "")
    return f"{type(failure).__name__}: {detail}" if detail else type(failure).__name__


def log_retry(method: str, shown: str, failure: Failure, attempt: int, attempts: int,
              wait: float) -> None:
    """One line per retry at WARNING (the command shows it): an outage is visible as it
    happens, not only when the attempts are spent."""
    logger.warning("Rackwave API: %s %s failed (%s), attempt %d of %d; next attempt in %.2f s",
                   method, shown, describe_failure(failure), attempt, attempts, wait)


def _environment(base_url: str) -> Dict[str, Any]:
    """Proxies and CA bundle from the environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE),
    read once: requests re-reads them on every request."""
    return requests.Session().merge_environment_settings(base_url, {}, None, True, None)


def _pool(
    base_url: str,
    max_connections: int,
    timeout: Union[float, Tuple[float, float]],
    env: Mapping[str, Any],
) -> urllib3.PoolManager:
    """A urllib3 pool with TLS verification always on (certifi's bundle, as requests uses)."""
    verify = env.get("verify", True)
    options: Dict[str, Any] = {
        "num_pools": 4,
        "maxsize": max(1, max_connections),
        "retries": False,
        "timeout": urllib3.Timeout(connect=timeout, read=timeout)
        if not isinstance(timeout, tuple) else urllib3.Timeout(connect=timeout[0],
                                                               read=timeout[1]),
        "cert_reqs": "CERT_REQUIRED",
        "ca_certs": verify if isinstance(verify, str) else certifi.where(),
        "headers": {"User-Agent": USER_AGENT, "Accept": "application/json"},
    }
    scheme = base_url.split(":", 1)[0]
    proxy = (env.get("proxies") or {}).get(scheme)
    if proxy:
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


@functools.lru_cache(maxsize=64)
def _http_date(value: str) -> Optional[datetime]:
    """An HTTP date (a ``Date`` header) as an aware datetime, None when it is not one. Cached:
    it changes once a second, and a run reads hundreds of pages a second."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _retry_after_seconds(value: Optional[str]) -> float:
    """Reads Retry-After as seconds (documented) or as an HTTP date (tolerated)."""
    header = (value or "").strip()
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


def _retry_token_request(
    response: Optional[requests.Response], exception: Optional[BaseException]
) -> bool:
    """dlt's default retry exceptions, minus a failed certificate check: that is no outage."""
    return isinstance(exception, DEFAULT_RETRY_EXCEPTIONS) and not isinstance(
        exception, requests.exceptions.SSLError
    )


def _session_attrs(env: Mapping[str, Any]) -> Dict[str, Any]:
    """The token session's settings, with the environment read once (see ``_environment``)."""
    return {
        "headers": {"User-Agent": USER_AGENT, "Accept": "application/json"},
        "trust_env": False,
        "proxies": env.get("proxies") or {},
        "verify": env.get("verify", True),
    }


def _token_retry(state: RetryCallState, max_attempts: int) -> None:
    """Logs one retry of the token request (dlt's retrying session, ``NotifyingRetries``)."""
    outcome = state.outcome
    failure: Failure = None
    if outcome is not None:
        error = outcome.exception()
        failure = error if error is not None else f"HTTP {outcome.result().status_code}"
    request = state.args[0] if state.args else None
    url = str(getattr(request, "url", "") or "")
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log_retry(str(getattr(request, "method", "POST")), shown_url(url), failure,
              state.attempt_number, max_attempts, wait)


class RackwaveClient:
    """Talks JSON to one Rackwave base URL with one set of credentials."""

    auth: "RackwaveTokenAuth"
    _first_failure_at: Optional[float] = None  # the token request's first connection failure

    def _retry_token(self, response: Optional[requests.Response],
                     exception: Optional[BaseException]) -> bool:
        """Whether a failed token request is tried again: as dlt retries it, except at first
        contact (no token yet) when the API refuses the connection or its host name does not
        resolve: then for ``FIRST_CONTACT_RETRY_S`` at most (``settings.py``)."""
        if not _retry_token_request(response, exception):
            return False
        if self.auth.access_token or connection_cause(exception) is None:
            return True
        now = time.monotonic()
        if self._first_failure_at is None:
            self._first_failure_at = now
        return now - self._first_failure_at < S.FIRST_CONTACT_RETRY_S

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
        ca_bundle: Optional[str] = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_rate_limit_wait = max_rate_limit_wait
        env = _environment(self.base_url)
        if ca_bundle:
            env["verify"] = ca_bundle  # TLS stays verified, against this bundle
        self._http = NotifyingRetries(
            request_timeout=S.REQUEST_TIMEOUT_S,
            raise_for_status=False,
            exceptions=(),
            retry_condition=self._retry_token,
            session_attrs=_session_attrs(env),
        )
        # dlt's [runtime] request_* settings (config files and environment), through dlt's
        # public configuration API; the token session gets them too.
        runtime = resolve_configuration(RuntimeConfiguration())
        self._http.update_from_config(runtime)
        self.max_attempts = max(1, int(runtime.request_max_attempts))
        self.backoff_factor = float(runtime.request_backoff_factor)
        self.max_retry_delay = float(runtime.request_max_retry_delay)
        self._pool = _pool(self.base_url, max_connections, runtime.request_timeout, env)
        self.auth: RackwaveTokenAuth = make_auth(
            self.base_url, client_id, client_secret, self._http, refresh_margin_seconds
        )
        self.throttle = Throttle(max_requests_per_second)
        self._stats_lock = threading.Lock()
        self._counts: Dict[str, Counter[str]] = {name: Counter() for name in STATS}
        # The path each thread is requesting: a token renewed or a token request retried is
        # counted for the request that needed the token.
        self._requesting = threading.local()
        self._http.on_retry = self._token_retried
        self.auth.on_renewal = lambda: self._count("token_renewals")

    def _token_retried(self, state: RetryCallState) -> None:
        _token_retry(state, self._http.max_attempts)
        self._count("retries")

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
        target = f"{url}?{urlencode(params)}" if params else url
        reply, body, failure, _ = self._exchange(
            path, Request("GET", target, shown_url(url, params)), decode or json.loadb)
        return self._result(url, reply, body, failure)

    def post(self, path: str, payload: Mapping[str, Any]) -> Answer:
        """POSTs ``payload`` as JSON once; returns the final answer, 4xx included (a 422 is data
        to the caller, not an error). A 429 and a connection that was never made are sent again
        (nothing can have been created); any other failure comes back ``unanswered``, for the
        caller to find out whether the create happened before it sends again.

        Raises:
            AuthenticationError: the API refused a freshly obtained token.
            RateLimitError: 429s lasted longer than ``max_rate_limit_wait`` seconds.
            ServerError: no connection could be made in any attempt.
        """
        url = self.base_url + path
        request = Request("POST", url, shown_url(url), json.dumpb(payload), once=True)
        reply, body, failure, maybe_sent = self._exchange(path, request, json.loadb)
        if failure is not None and maybe_sent:
            return Answer(reply.status if reply is not None else 0, None, True,
                          describe_failure(failure))
        if reply is not None and 400 <= reply.status < 500 and reply.status != 401:
            try:
                error_body: Any = json.loadb(reply.data)
            except ValueError:
                error_body = None
            return Answer(reply.status, error_body)
        return Answer(reply.status if reply is not None else 0,
                      self._result(url, reply, body, failure))

    def _exchange(
        self, path: str, request: Request, decode: Decoder
    ) -> Tuple[Optional[BaseHTTPResponse], Any, Failure, bool]:
        """Sends ``request`` through the shared throttle until its answer is final; a 429 is
        waited out within ``max_rate_limit_wait``, never counted as a failed attempt."""
        self._requesting.path = path
        waited = 0.0
        while True:
            sent_at = self.throttle.acquire()
            reply, body, failure, maybe_sent = self._attempts(request, decode)
            self._count("requests")
            if reply is not None and reply.status == 429:
                self._count("rate_limited")
                delay = _retry_after_seconds(reply.headers.get("Retry-After"))
                waited += delay
                if waited > self.max_rate_limit_wait:
                    raise RateLimitError(
                        f"Rackwave API kept answering 429 Too Many Requests for {request.shown} "
                        f"for {waited:.0f} s. Lower the load on this account or raise "
                        "max_rate_limit_wait under [sources.rackwave]."
                    )
                self.throttle.rate_limited_for(delay, sent_at)
                continue
            self.throttle.succeeded()
            if reply is not None and 200 <= reply.status < 300:
                self._requesting.date = reply.headers.get("Date")
            return reply, body, failure, maybe_sent

    def answered_at(self) -> Optional[datetime]:
        """The server's clock (its ``Date`` header) on the last answer this thread received, or
        None when it sent none: what only the server can tell, so a record dated ahead of it is
        recognised whatever this machine's clock says."""
        value = getattr(self._requesting, "date", None)
        return _http_date(value) if value else None

    def _send(self, request: Request, token: str) -> BaseHTTPResponse:
        headers = {"Authorization": f"Bearer {token}"}
        if request.body is not None:
            headers["Content-Type"] = "application/json"
        return self._pool.request(request.method, request.target, body=request.body,
                                  headers=headers, redirect=False)

    def _attempts(
        self, request: Request, decode: Decoder
    ) -> Tuple[Optional[BaseHTTPResponse], Any, Failure, bool]:
        """Sends until an answer is final: decoded 2xx, 4xx, 429, or the attempts are spent (or,
        for a ``once`` request, a failure that may have reached the server). The last value
        tells whether the last failed attempt may have reached the server."""
        reply: Optional[BaseHTTPResponse] = None
        failure: Failure = None
        maybe_sent = False
        for attempt in range(1, self.max_attempts + 1):
            try:
                reply = self.auth.authorized(lambda token: self._send(request, token),
                                             lambda r: r.status)
            except urllib3.exceptions.SSLError:
                raise TLSVerificationError(self.base_url) from None
            except urllib3.exceptions.HTTPError as exc:  # refused, dropped, truncated, timed out
                reply, failure = None, exc
                # a connection never made sent nothing; any other loss may follow the send
                maybe_sent = not isinstance(exc, urllib3.exceptions.ConnectTimeoutError)
            else:
                maybe_sent = True
                if 200 <= reply.status < 300:
                    try:
                        return reply, decode(reply.data), None, False
                    except (ValueError, TypeError):
                        failure = UNDECODABLE
                elif reply.status < 500:
                    return reply, None, None, False
                else:
                    failure = f"HTTP {reply.status}"
            if request.once and maybe_sent:
                return reply, None, failure, True
            if attempt < self.max_attempts:
                wait = self._backoff(attempt, reply)
                log_retry(request.method, request.shown, failure, attempt, self.max_attempts,
                          wait)
                self._count("retries")
                time.sleep(wait)
        return reply, None, failure, maybe_sent

    def retry_delay(self, attempt: int) -> float:
        """The wait before attempt ``attempt + 1`` of a request retried by its caller."""
        return self._backoff(attempt, None)

    def _backoff(self, attempt: int, reply: Optional[BaseHTTPResponse]) -> float:
        """Exponential, capped, with jitter so that workers do not retry in lockstep; a 5xx's
        Retry-After is honoured (within the cap)."""
        header = reply.headers.get("Retry-After") if reply is not None else None
        if header:
            return min(self.max_retry_delay, _retry_after_seconds(header))
        ceiling = min(self.max_retry_delay, self.backoff_factor * 2.0 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def _result(
        self, url: str, reply: Optional[BaseHTTPResponse], body: Any, failure: Failure
    ) -> Any:
        if isinstance(failure, BaseException) or reply is None:
            raise ServerError(
                f"Rackwave API request to {url} failed after {self.max_attempts} attempts: "
                f"{type(failure).__name__}. The API or the network is down; nothing past the last "
                "successful load was recorded, so run again once it is back (or raise "
                "[runtime] request_max_attempts)."
            )
        status = reply.status
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
                error_body: Any = json.loadb(reply.data)
            except ValueError:
                error_body = None
            raise api_error_for(url, status, error_body, reply.reason or "")
        if failure == UNDECODABLE:
            raise ServerError(
                f"Rackwave API sent an incomplete or non-JSON body for {url} (HTTP {status}, "
                f"{reply.headers.get('Content-Type', 'no content type')}) on every one of "
                f"{self.max_attempts} attempts. Run again later."
            )
        return body

    def _count(self, what: str) -> None:
        """Counts one event for the path this thread is requesting."""
        path = getattr(self._requesting, "path", "")
        with self._stats_lock:
            self._counts[what][path] += 1

    def stats(self, path: str) -> Dict[str, int]:
        """What requesting ``path`` took so far: requests answered, how many of them were 429,
        attempts retried (a failed token request included), tokens renewed for it."""
        with self._stats_lock:
            return {name: self._counts[name][path] for name in STATS}
