"""HTTP layer of the sandbox: the ``/v1`` API, the ``/_admin`` API and the
in-process background server.

Built on the standard library's ``ThreadingHTTPServer``. Measured with wrk
(8 threads, 8 keep-alive connections, per_page=100, 2 cores) on minimal
prototypes: stdlib ~5,600 req/s, aiohttp ~7,200, raw asyncio protocol ~17,000;
this full server ~3,700-4,100. A Python client with 8 threads (requests +
JSON parsing) tops out at ~400-600 req/s against any of them, so the extra
dependency would buy nothing for the connector's benchmarks. One thread per
connection makes per-request latency trivially non-blocking and
gives direct socket access for the "drop" and "truncate" faults. Responses are
written with a single ``sendall`` (headers + body) and ``TCP_NODELAY`` set,
which is what makes the stdlib server fast (a naive handler that writes headers
and body separately stalls on Nagle/delayed-ACK at ~200 req/s).
"""

from __future__ import annotations

import random
import re
import socket
import ssl
import sys
import threading
import time
import traceback
from dataclasses import replace
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from rackwave_sandbox import config as C
from rackwave_sandbox.auth import TokenState, TokenStore
from rackwave_sandbox.churn import Churn
from rackwave_sandbox.config import SandboxConfig
from rackwave_sandbox.data import format_ts
from rackwave_sandbox.faults import (
    BAD_GATEWAY_HTML,
    POST_FAULTS,
    TOKEN_PATH,
    FaultError,
    FaultInjector,
    TriggerSet,
    run_action,
)
from rackwave_sandbox.ratelimit import TokenBucket
from rackwave_sandbox.stats import Stats
from rackwave_sandbox.store import RecordError, Store, new_lead_id

_INT_RE = re.compile(r"^[+-]?\d+$")
_E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

#: path -> allowed methods of the public API.
ROUTES: dict[str, tuple[str, ...]] = {
    TOKEN_PATH: ("POST",),
    "/v1/leads": ("GET", "POST"),
    "/v1/contacts": ("GET",),
}
LIST_KINDS: dict[str, str] = {"/v1/leads": "leads", "/v1/contacts": "contacts"}


#: Default messages of JSON status faults (``{"kind": "403"}`` etc.).
FAULT_MESSAGES: dict[int, str] = {
    400: "The request parameters are invalid.",
    403: "This action is unauthorized.",
    404: C.MSG_NOT_FOUND,
    429: C.MSG_TOO_MANY,
    500: C.MSG_SERVER_ERROR,
}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase + "."
    except ValueError:
        return "Error."


_REASONS: dict[int, str] = {int(s): s.phrase for s in HTTPStatus}
_DATE_CACHE: list[Any] = [0, ""]


def _http_date() -> str:
    """RFC 7231 date, formatted at most once per second (hot path)."""
    now = int(time.time())
    if _DATE_CACHE[0] != now:
        _DATE_CACHE[1] = formatdate(now, usegmt=True)
        _DATE_CACHE[0] = now
    return str(_DATE_CACHE[1])


class Response:
    """A fully built HTTP response (status, body, extra headers)."""

    __slots__ = ("status", "body", "headers", "content_type")

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.content_type = content_type


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """Serialise ``payload`` with orjson into a JSON response."""
    return Response(status, orjson.dumps(payload), headers)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The platform's error shape: ``{"message": ...}``."""
    return json_response(status, {"message": message}, headers)


def validation_error(errors: dict[str, list[str]]) -> Response:
    """The platform's 422 shape: ``{"message": ..., "errors": {field: [...]}}``."""
    return json_response(422, {"message": C.MSG_INVALID_DATA, "errors": errors})


class SandboxState:
    """Everything one sandbox instance shares between its handler threads."""

    def __init__(self, cfg: SandboxConfig) -> None:
        self.config = cfg
        self.store = Store(cfg.leads, cfg.contacts, cfg.seed)
        self.tokens = TokenStore()
        self.bucket = TokenBucket(cfg.rate_limit, cfg.rate_burst)
        self.faults = FaultInjector(cfg.seed)
        self.triggers = TriggerSet()
        self.churn = Churn(cfg.seed)
        self.lag_rng = random.Random(f"rackwave:count_lag:{cfg.seed}")
        self.stats = Stats()
        self._config_lock = threading.Lock()

    def configure(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Apply runtime settings atomically (all or nothing).

        Raises:
            ValueError: On an unknown setting or an invalid value.
        """
        unknown = set(settings) - set(C.RUNTIME_SETTINGS)
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        with self._config_lock:
            values = {name: SandboxConfig.coerce_setting(name, value) for name, value in settings.items()}
            # Validate a copy, so request threads never see a rejected value, not even briefly.
            replace(self.config, **values)
            for name, value in values.items():
                setattr(self.config, name, value)
            self.bucket.configure(self.config.rate_limit, self.config.rate_burst)
            return self.config.runtime_settings()

    def reset(self, leads: int | None, contacts: int | None, seed: int | None) -> None:
        """Regenerate data; clear stats, tokens, faults and triggers; reseed churn."""
        if leads is not None:
            self.config.leads = int(leads)
        if contacts is not None:
            self.config.contacts = int(contacts)
        if seed is not None:
            self.config.seed = int(seed)
        self.store.reset(self.config.leads, self.config.contacts, self.config.seed)
        self.stats.reset()
        self.tokens.revoke_all()
        self.faults.reset(self.config.seed)
        self.churn.reset(self.config.seed)
        self.lag_rng = random.Random(f"rackwave:count_lag:{self.config.seed}")
        self.triggers.clear()
        self.bucket.configure(self.config.rate_limit, self.config.rate_burst)


# --------------------------------------------------------------------------- /v1
def _last(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    value = values[-1]
    return value if value != "" else None  # empty parameter == absent


def parse_list_params(
    query: dict[str, list[str]], with_status: bool
) -> tuple[int, int, str | None, str | None] | dict[str, list[str]]:
    """Validate page/per_page/status/search; return values or field errors."""
    errors: dict[str, list[str]] = {}
    page, per_page = 1, C.DEFAULT_PER_PAGE
    raw_page = _last(query, "page")
    if raw_page is not None:
        if not _INT_RE.match(raw_page):
            errors["page"] = [C.MSG_PAGE_INTEGER]
        elif int(raw_page) < 1:
            errors["page"] = [C.MSG_PAGE_MIN]
        else:
            page = int(raw_page)
    raw_per_page = _last(query, "per_page")
    if raw_per_page is not None:
        if not _INT_RE.match(raw_per_page) or not 1 <= int(raw_per_page) <= C.MAX_PER_PAGE:
            errors["per_page"] = [C.MSG_PER_PAGE]
        else:
            per_page = int(raw_per_page)
    status = _last(query, "status") if with_status else None
    if status is not None and status not in C.LEAD_STATUSES:
        errors["status"] = [C.MSG_STATUS_INVALID]
    search = _last(query, "search")
    if errors:
        return errors
    return page, per_page, status, search


def page_for_stats(query: dict[str, list[str]]) -> int | None:
    """The page number a list request asked for (1 if absent, None if unparseable)."""
    raw = _last(query, "page")
    if raw is None:
        return 1
    return int(raw) if _INT_RE.match(raw) else None


def validate_new_lead(payload: dict[str, Any]) -> dict[str, list[str]]:
    """Apply the documented create-lead rules; return field errors."""
    errors: dict[str, list[str]] = {}
    name = payload.get("name")
    if name is None or (isinstance(name, str) and not name.strip()):
        errors["name"] = ["The name field is required."]
    elif not isinstance(name, str):
        errors["name"] = ["The name field must be a string."]
    elif len(name) > 255:
        errors["name"] = ["The name field must not be greater than 255 characters."]
    email = payload.get("email")
    if email is None or (isinstance(email, str) and not email.strip()):
        errors["email"] = ["The email field is required."]
    elif not isinstance(email, str) or not _EMAIL_RE.match(email) or len(email) > 255:
        errors["email"] = ["The email field must be a valid email address."]
    phone = payload.get("phone")
    if phone is not None and (not isinstance(phone, str) or not _E164_RE.match(phone)):
        errors["phone"] = ["The phone field format is invalid."]
    company = payload.get("company")
    if company is not None and not isinstance(company, str):
        errors["company"] = ["The company field must be a string."]
    source = payload.get("source")
    if source is not None and source not in C.LEAD_SOURCES:
        errors["source"] = ["The selected source is invalid."]
    status = payload.get("status")
    if status is not None and status not in C.LEAD_STATUSES:
        errors["status"] = ["The selected status is invalid."]
    tags = payload.get("tags")
    if tags is not None:
        if not isinstance(tags, list):
            errors["tags"] = ["The tags field must be an array."]
        else:
            for i, tag in enumerate(tags):
                if not isinstance(tag, str):
                    errors[f"tags.{i}"] = [f"The tags.{i} field must be a string."]
    return errors


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def handle_token(state: SandboxState, body: bytes) -> Response:
    """``POST /v1/auth/token`` (client-credentials exchange)."""
    payload = _json_object(body)
    if payload is None:
        return error(400, C.MSG_BAD_JSON)
    errors: dict[str, list[str]] = {}
    for name in ("client_id", "client_secret", "grant_type"):
        value = payload.get(name)
        if value is None or value == "":
            errors[name] = [f"The {name.replace('_', ' ')} field is required."]
        elif not isinstance(value, str):
            errors[name] = [f"The {name.replace('_', ' ')} field must be a string."]
    if errors:
        return validation_error(errors)
    if payload["grant_type"] != "client_credentials":
        return error(400, C.MSG_BAD_GRANT)
    cfg = state.config
    if payload["client_id"] != cfg.client_id or payload["client_secret"] != cfg.client_secret:
        return error(401, C.MSG_BAD_CREDENTIALS)
    ttl = cfg.token_ttl
    token = state.tokens.issue(ttl)
    expires_in: int | float = int(ttl) if float(ttl).is_integer() else ttl
    return json_response(
        200,
        {"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "scope": "read write"},
        {"Cache-Control": "no-store"},
    )


def handle_create_lead(state: SandboxState, body: bytes) -> Response:
    """``POST /v1/leads``: validate, then insert with server-set id/timestamps."""
    payload = _json_object(body)
    if payload is None:
        return error(400, C.MSG_BAD_JSON)
    errors = validate_new_lead(payload)
    store = state.store
    with store.lock:
        leads = store.collection("leads")
        if "email" not in errors and leads.email_taken(payload["email"]):
            errors["email"] = ["The email has already been taken."]
        if errors:
            return validation_error(errors)
        now_ms = int(time.time() * 1000)
        now = format_ts(now_ms // 1000)
        record = {
            "id": new_lead_id(store, now_ms),
            "name": payload["name"],
            "email": payload["email"],
            "phone": payload.get("phone"),
            "company": payload.get("company"),
            "status": payload.get("status") or "new",
            "source": payload.get("source") or "api",
            "tags": list(payload.get("tags") or []),
            "score": 0,
            "created_at": now,
            "updated_at": now,
        }
        leads.insert(record)
    return json_response(201, {"data": record})


def handle_list(state: SandboxState, kind: str, query: dict[str, list[str]]) -> Response:
    """``GET /v1/leads`` and ``GET /v1/contacts``."""
    parsed = parse_list_params(query, with_status=kind == "leads")
    if isinstance(parsed, dict):
        return validation_error(parsed)
    page, per_page, status, search = parsed
    store = state.store
    cfg = state.config
    if cfg.page_cap is not None:
        per_page = min(per_page, cfg.page_cap)  # served and reported (meta.per_page) as used
    creates, deletes, count_lag = cfg.churn_creates, cfg.churn_deletes, cfg.count_lag
    jitter = cfg.count_lag_jitter
    if not (creates or deletes) or (
        not cfg.churn_on_filtered and (status is not None or search is not None)
    ):
        with store.lock:  # hot path: no churn configured, no RNG
            if jitter:
                count_lag += state.lag_rng.randint(0, jitter)
            body = store.collections[kind].page(page, per_page, status, search, count_lag)
        return Response(200, body)
    with store.lock:  # churn "between two requests": nobody reads a half-churned collection
        created, deleted = state.churn.apply(store, kind, creates, deletes)
        if jitter:
            count_lag += state.lag_rng.randint(0, jitter)
        body = store.collections[kind].page(page, per_page, status, search, count_lag)
    state.stats.churn(kind, created, deleted)
    return Response(200, body)


# ------------------------------------------------------------------------ admin
def _admin(state: SandboxState, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Response:
    """Route one ``/_admin`` request (no auth, no faults, not counted)."""
    parts = [unquote(p) for p in path.split("/")[2:] if p]
    payload: dict[str, Any] = {}
    if body.strip():
        parsed = _json_object(body)
        if parsed is None:
            return error(400, C.MSG_BAD_JSON)
        payload = parsed
    try:
        return _admin_route(state, method, parts, query, payload)
    except RecordError as exc:
        return error(exc.status, exc.message)
    except (FaultError, ValueError, TypeError) as exc:
        return error(422, str(exc))


def _admin_route(
    state: SandboxState, method: str, parts: list[str], query: dict[str, list[str]], payload: dict[str, Any]
) -> Response:
    head = parts[0] if parts else ""
    store = state.store
    if head == "stats" and len(parts) == 1 and method == "GET":
        return json_response(200, state.stats.snapshot())
    if head == "stats" and parts[1:] == ["reset"] and method == "POST":
        state.stats.reset()
        return json_response(200, state.stats.snapshot())
    if head == "records" and len(parts) == 2:
        coll = store.collection(parts[1])
        if method == "GET":
            with store.lock:
                if _last(query, "fields") == "id":
                    return json_response(200, {"ids": coll.ids()})
                raws = coll.raw_records()
            return Response(200, b'{"data":[' + b",".join(raws) + b"]}")
        if method == "POST":
            records = payload.get("records")
            sort_at = payload.get("sort_at")  # off by default: see Collection.insert
            if sort_at is not None and not isinstance(sort_at, str):
                raise ValueError("sort_at must be a timestamp string or null")
            created: list[dict[str, Any]] = []
            with store.lock:
                if records is not None:
                    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                        raise ValueError("records must be a list of objects")
                    for record in records:
                        created.append(store.new_record(parts[1], record, payload.get("created_at"),
                                                        sort_at))
                else:
                    count = payload.get("count", 1)
                    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                        raise ValueError("count must be a non-negative integer")
                    for _ in range(count):
                        created.append(store.new_record(parts[1], None, payload.get("created_at"),
                                                        sort_at))
            return json_response(201, {"data": created})
    if head == "records" and len(parts) == 3:
        coll = store.collection(parts[1])
        with store.lock:
            if method == "GET":
                return json_response(200, {"data": coll.get(parts[2])})
            if method == "PATCH":
                return json_response(200, {"data": coll.update(parts[2], payload)})
            if method == "DELETE":
                coll.delete(parts[2])
                return json_response(200, {"deleted": parts[2]})
    if head == "config" and len(parts) == 1:
        if method == "GET":
            return json_response(200, state.config.runtime_settings())
        if method == "POST":
            return json_response(200, state.configure(payload))
    if parts == ["tokens", "revoke"] and method == "POST":
        return json_response(200, {"revoked": state.tokens.revoke_all()})
    if head == "faults" and len(parts) == 1:
        if method == "GET":
            return json_response(200, {"faults": state.faults.pending()})
        if method == "POST":
            return json_response(200, {"faults": state.faults.add(payload.get("faults", []))})
        if method == "DELETE":
            state.faults.clear()
            return json_response(200, {"faults": []})
    if head == "triggers" and len(parts) == 1:
        if method == "GET":
            return json_response(200, {"triggers": state.triggers.listing()})
        if method == "POST":
            trigger = state.triggers.add(payload.get("path"), payload.get("after_requests"), payload.get("action"))
            return json_response(200, {"trigger": trigger})
        if method == "DELETE":
            state.triggers.clear()
            return json_response(200, {"triggers": []})
    if parts == ["reset"] and method == "POST":
        state.reset(payload.get("leads"), payload.get("contacts"), payload.get("seed"))
        return json_response(200, {"leads": state.config.leads, "contacts": state.config.contacts, "seed": state.config.seed})
    return error(404, C.MSG_NOT_FOUND)


# ---------------------------------------------------------------------- handler
class SandboxRequestHandler(BaseHTTPRequestHandler):
    """Per-connection handler; HTTP/1.1 keep-alive, one ``sendall`` per response."""

    protocol_version = "HTTP/1.1"
    server_version = "rackwave-sandbox"
    sys_version = ""
    #: Idle keep-alive connections are closed after this many seconds.
    timeout = 120
    server: "SandboxHTTPServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silence per-request logging (it would dominate benchmark CPU)."""

    # every verb goes through one dispatcher so unknown ones get a JSON 405
    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch("OPTIONS")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    # -- I/O helpers -------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _head_bytes(self, resp: Response, content_length: int) -> bytes:
        reason = _REASONS.get(resp.status, "Unknown")
        lines = [
            f"HTTP/1.1 {resp.status} {reason}",
            f"Content-Type: {resp.content_type}" + ("; charset=utf-8" if "json" in resp.content_type else ""),
            f"Content-Length: {content_length}",
            f"Date: {_http_date()}",
            "Server: rackwave-sandbox",
        ]
        lines.extend(f"{k}: {v}" for k, v in resp.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, resp: Response, head_only: bool = False) -> None:
        payload = self._head_bytes(resp, len(resp.body))
        if not head_only:
            payload += resp.body
        self.wfile.write(payload)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- dispatch ----------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        path, _, qs = self.path.partition("?")
        try:
            body = self._read_body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
        except (ValueError, OSError):
            self.close_connection = True
            self._send(error(400, "Malformed request body."))
            return
        state = self.server.state
        try:
            if path == "/_admin" or path.startswith("/_admin/"):
                self._send(_admin(state, method, path, parse_qs(qs, keep_blank_values=True), body))
            elif path.startswith("/v1/") or path == "/v1":
                self._api(state, method, path, qs, body)
            else:
                self._send(error(404, C.MSG_NOT_FOUND), head_only=method == "HEAD")
        except (ConnectionError, BrokenPipeError, socket.timeout):
            self.close_connection = True
        except Exception:  # noqa: BLE001 - a sandbox bug must not kill the connection thread silently
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            try:
                self._send(error(500, C.MSG_SERVER_ERROR))
            except OSError:
                pass

    def _api(self, state: SandboxState, method: str, path: str, qs: str, body: bytes) -> None:
        endpoint = f"{method} {path}"
        query = parse_qs(qs, keep_blank_values=True) if qs else {}
        stats = state.stats
        page = page_for_stats(query) if method == "GET" and path in LIST_KINDS else None
        stats.request(endpoint, page)
        cfg = state.config
        fault = state.faults.pick(path, cfg.error_rate, cfg.drop_rate, page, method)
        if cfg.latency_ms > 0:
            time.sleep(cfg.latency_ms / 1000.0)
        if fault is not None and fault.kind not in POST_FAULTS:
            if fault.kind == "drop":
                stats.status(endpoint, "dropped")
                self._drop()
                return
            if fault.kind == "502_html":
                resp = Response(502, BAD_GATEWAY_HTML, content_type="text/html")
            elif fault.kind == "body":
                resp = json_response(200, fault.body)
            else:
                status = int(fault.kind)
                headers = {"Retry-After": str(fault.retry_after)} if status == 429 else None
                resp = error(status, fault.message or FAULT_MESSAGES.get(status) or _phrase(status), headers)
            stats.status(endpoint, str(resp.status))
            self._send(resp, head_only=method == "HEAD")
            return
        resp = self._api_response(state, method, path, query, body)
        stats.status(endpoint, str(resp.status))
        if fault is not None and fault.kind == "tamper":
            self._send(_tampered(resp, fault.tamper or {}))
            return
        if fault is not None and fault.kind == "drop_after":  # processed (a lead stored), unanswered
            stats.status(endpoint, "dropped")
            self._drop()
            return
        if fault is not None and fault.kind == "500_after":  # processed, then a server error
            self._send(error(500, FAULT_MESSAGES.get(500) or _phrase(500)))
            return
        if fault is not None:
            self._send_truncated(resp, fault.kind)
            return
        if 200 <= resp.status < 300 and state.triggers.armed():
            fired = state.triggers.count_success(path)
            if fired:
                # Hold the store lock while answering and mutating, so that no
                # other request can read the store between the two.
                with state.store.lock:
                    self._send(resp)
                    for trigger in fired:
                        run_action(state.store, trigger.action)
                return
        self._send(resp, head_only=method == "HEAD")

    def _send_truncated(self, resp: Response, kind: str) -> None:
        half = resp.body[: len(resp.body) // 2]
        if kind == "truncate":
            self.close_connection = True
            self.wfile.write(self._head_bytes(resp, len(resp.body)) + half)
            self._drop()
        else:  # truncate_json: a well-formed HTTP 200 whose JSON is cut in half
            self._send(Response(200, half, resp.headers, resp.content_type))

    def _api_response(
        self, state: SandboxState, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> Response:
        retry_after = state.bucket.acquire()
        if retry_after is not None:
            return error(429, C.MSG_TOO_MANY, {"Retry-After": str(retry_after)})
        allowed = ROUTES.get(path)
        if allowed is None:
            return error(404, C.MSG_NOT_FOUND)
        if method not in allowed:
            return error(405, C.MSG_METHOD_NOT_ALLOWED, {"Allow": ", ".join(allowed)})
        if path == TOKEN_PATH:
            return handle_token(state, body)
        token_state = state.tokens.check_header(self.headers.get("Authorization"))
        if token_state is not TokenState.VALID:
            message = {
                TokenState.MISSING: C.MSG_UNAUTHENTICATED,
                TokenState.INVALID: C.MSG_TOKEN_INVALID,
                TokenState.EXPIRED: C.MSG_TOKEN_EXPIRED,
            }[token_state]
            return error(401, message, {"WWW-Authenticate": 'Bearer realm="rackwave"'})
        if method == "POST":
            return handle_create_lead(state, body)
        return handle_list(state, LIST_KINDS[path], query)


class SandboxHTTPServer(ThreadingHTTPServer):
    """Threading server that tracks its connections so ``stop`` can close them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], state: SandboxState) -> None:
        self.state = state
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, SandboxRequestHandler)

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s reverse-DNS lookup (can take seconds)."""
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept, disable Nagle, and remember the connection."""
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._conns_lock:
            self._conns.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection when its handler thread finishes."""
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open keep-alive connection (frees handler threads)."""
        with self._conns_lock:
            conns = list(self._conns)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore client disconnects; print anything else."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout, TimeoutError)):
            return
        super().handle_error(request, client_address)


def _tampered(resp: Response, tamper: dict[str, Any]) -> Response:
    """The real page with one record changed: fields set or dropped (contract-breaking data)."""
    if resp.status != 200:
        return resp
    page = orjson.loads(resp.body)
    records = page.get("data") or []
    index = int(tamper.get("record", 0))
    if 0 <= index < len(records):
        record = records[index]
        record.update(tamper.get("set") or {})
        for name in tamper.get("drop") or []:
            record.pop(name, None)
    return json_response(200, page)


class RunningServer:
    """A sandbox listening in a background thread; a context manager."""

    def __init__(
        self, state: SandboxState, host: str, port: int, tls: tuple[str, str] | None = None
    ) -> None:
        from rackwave_sandbox.admin import AdminClient

        self.state = state
        self.httpd = SandboxHTTPServer((host, port), state)
        self.host = host
        self.port = int(self.httpd.server_address[1])
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        url_host = f"[{host}]" if ":" in host else host
        self.root_url = f"{'https' if tls else 'http'}://{url_host}:{self.port}"
        self.base_url = f"{self.root_url}/v1"
        self.admin = AdminClient(self.root_url, verify=tls[0] if tls else True)
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"rackwave-sandbox-{self.port}", daemon=True
        )
        self._stopped = False
        self._thread.start()

    @property
    def config(self) -> SandboxConfig:
        """The live configuration (mutated by ``admin.configure``)."""
        return self.state.config

    def issued_tokens(self) -> list[str]:
        """Every bearer token this server issued (in-process only; never over HTTP)."""
        return self.state.tokens.issued()

    def stop(self) -> None:
        """Stop serving, close connections, free the port and join the thread."""
        if self._stopped:
            return
        self._stopped = True
        self.httpd.shutdown()
        self.httpd.close_connections()
        self.httpd.server_close()
        self._thread.join(timeout=5)
        self.admin.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningServer({self.base_url!r})"


class Sandbox:
    """A Rackwave API sandbox: seeded data plus all behaviour knobs.

    Data is generated in the constructor (deterministically from the seed);
    :meth:`serve` starts listening in a background thread.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config if config is not None else SandboxConfig()
        self.state = SandboxState(self.config)

    def serve(
        self, host: str = "127.0.0.1", port: int = 0, tls: tuple[str, str] | None = None
    ) -> RunningServer:
        """Start serving; returns once the socket is listening.

        Args:
            host: Interface to bind.
            port: TCP port, 0 for a free one (see ``RunningServer.port``).
            tls: (certificate file, key file) to serve HTTPS, as the real API does; the admin
                API is then HTTPS too.
        """
        return RunningServer(self.state, host, port, tls)

