"""One exception root for everything the connector raises, with transient and fatal errors apart.

Callers (schedulers, the CLI) can catch :class:`RackwaveError` to handle every connector failure,
:class:`RackwaveTransientError` to decide that a later retry of the whole run may succeed, and
:class:`RackwaveFatalError` for what needs a person to change something first.

No exception text ever carries a credential or a token: messages name settings and URLs only.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Type


class RackwaveError(Exception):
    """Root of every error raised by the Rackwave connector."""


class RackwaveFatalError(RackwaveError):
    """Retrying the same run will not help: configuration, credentials or the request are wrong."""


class RackwaveTransientError(RackwaveError):
    """The API or the network failed for longer than the retry budget; a later run may succeed."""


class ConfigurationError(RackwaveFatalError, ValueError):
    """A setting is missing or invalid. Raised before any request is sent."""

    def __init__(self, setting: str, problem: str, fix: str) -> None:
        self.setting = setting
        super().__init__(f"Invalid Rackwave setting `{setting}`: {problem}. {fix}")


class MissingExtraError(ConfigurationError):
    """Something the command or a destination needs is not installed: named with the extra of
    this package that installs it (exit code 2, before any request)."""

    def __init__(self, what: str, missing: str, extra: str, python: str) -> None:
        self.setting = extra
        RackwaveFatalError.__init__(  # not "Invalid Rackwave setting": no setting is wrong
            self, f"{what} needs {missing}, which is not installed in this environment "
            f'({python}). Install it with this package\'s extra: pip install '
            f'"rackwave-source[{extra}]"')


class AuthenticationError(RackwaveFatalError):
    """The token endpoint rejected the client credentials, or a fresh token was refused."""


class TLSVerificationError(RackwaveFatalError):
    """The server's TLS certificate could not be verified: never retried, never bypassed."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"The TLS certificate of {url} could not be verified, so nothing was sent. If your "
            "network inspects TLS with its own certificate authority, set `ca_bundle` under "
            "[sources.rackwave] to a PEM file of it; verification cannot be switched off."
        )


class ApiError(RackwaveFatalError):
    """A documented client error (400, 403, 404, 422) with the API's own message and field errors."""

    status_code: int = 0

    def __init__(
        self,
        url: str,
        status_code: int,
        message: str,
        errors: Optional[Mapping[str, List[str]]] = None,
    ) -> None:
        self.url = url
        self.status_code = status_code
        self.api_message = message
        self.errors: Dict[str, List[str]] = dict(errors or {})
        detail = ""
        if self.errors:
            detail = " " + "; ".join(
                f"{field}: {' '.join(str(m) for m in msgs)}" for field, msgs in self.errors.items()
            )
        super().__init__(f"Rackwave API answered {status_code} for {url}: {message}{detail}")


class BadRequestError(ApiError):
    """400: the request body or parameters are invalid."""


class ForbiddenError(ApiError):
    """403: the token lacks permission for this action."""


class NotFoundError(ApiError):
    """404: the resource does not exist (often a wrong base URL)."""


class ValidationError(ApiError):
    """422: validation failed; see ``errors`` for the fields."""


class UnexpectedResponseError(RackwaveFatalError):
    """A response that is not what the reference documents (wrong envelope, record without id...)."""


class SchemaContractError(RackwaveFatalError):
    """The API sent a new field, or a field with a new type, and the schema is frozen."""

    def __init__(self, table: str, field: str, data_type: Optional[str], new_type: bool) -> None:
        kind = f" as {data_type}" if data_type else ""
        change = "a new type for an existing column" if new_type else "a new column"
        super().__init__(
            f"Rackwave `{table}`: field `{field}` arrived{kind}, which needs {change}, and "
            "schema_contract = \"freeze\" allows none. Nothing of this run was loaded. Review "
            "the API change; to accept it, run once with schema_contract = \"evolve\" (then "
            "freeze again)."
        )
        self.table, self.field, self.data_type = table, field, data_type


class RateLimitError(RackwaveTransientError):
    """The API kept answering 429 for longer than the configured wait budget."""


class WarehouseUnavailableError(RackwaveTransientError):
    """The destination could not be reached or refused the connection for now."""


class ScanIncomplete(RackwaveTransientError):
    """Records kept moving faster than re-reads could follow: some may be missing from this read.

    Nothing of the run is loaded (the cursor and the table stay as they were); the next run reads
    again, usually in a quieter moment.
    """

    def __init__(self, resource: str, holes: int, rounds: int) -> None:
        super().__init__(
            f"Rackwave `{resource}` changed too fast to be read exactly: after {rounds} re-reads, "
            f"{holes} range(s) of records could still hide records that exist. Nothing was loaded "
            "for this run; run again (a quieter moment needs fewer re-reads)."
        )
        self.resource = resource
        self.holes = holes


class CountMismatch(RackwaveTransientError):
    """A full scan ended with the warehouse holding another number of rows than the API counts,
    and nothing the run saw (changes while it read, a count it learned to be steadily off, a
    record no lookup could settle) explains the difference.

    Raised at the end of the resource's read, so nothing of the run is loaded (the cursor and the
    tables stay as they were): exit 0 must mean exact. Run again; if it persists, the API's
    paging or count is not what docs/api-assumptions.md says.
    """

    def __init__(self, resource: str, held: int, counted: int, offset: int) -> None:
        learned = f" (after the {offset:+,} this account's count was learned to be off by)" \
            if offset else ""
        super().__init__(
            f"Rackwave `{resource}`: a full scan would leave {held:,} rows in the warehouse but the "
            f"API counts {counted:,}{learned}, and nothing this run saw explains the difference. "
            "Nothing was loaded for this run; run again, and if it persists, the API's paging or "
            "count breaks the assumptions of docs/api-assumptions.md (see docs/exactness.md, 'What "
            "exit 0 guarantees')."
        )
        self.resource = resource
        self.held = held
        self.counted = counted


class ServerError(RackwaveTransientError):
    """5xx answers, dropped connections or unreadable bodies persisted after every retry."""


API_ERRORS_BY_STATUS: Dict[int, Type[ApiError]] = {
    400: BadRequestError,
    403: ForbiddenError,
    404: NotFoundError,
    422: ValidationError,
}


def api_error_for(url: str, status_code: int, body: Any, reason: str) -> ApiError:
    """Builds the typed error for a client-error response, keeping the API's message and errors."""
    message = reason or "request failed"
    errors: Optional[Mapping[str, List[str]]] = None
    if isinstance(body, Mapping):
        message = str(body.get("message") or message)
        raw = body.get("errors")
        if isinstance(raw, Mapping):
            errors = {
                str(k): [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in raw.items()
            }
    cls = API_ERRORS_BY_STATUS.get(status_code, ApiError)
    return cls(url, status_code, message, errors)


def connection_cause(exc: Optional[BaseException]) -> Optional[str]:
    """A failed connection's cause in words ("the connection was refused", "the host name does
    not resolve"), read from the exception chain urllib3 and requests build; None for anything
    else (a timeout, a dropped connection, an HTTP status)."""
    seen: Optional[BaseException] = exc
    texts: List[str] = []
    while seen is not None and len(texts) < 10:
        texts.append(f"{type(seen).__name__}: {seen}")
        seen = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
    text = " ".join(texts)
    if any(mark in text for mark in ("NameResolutionError", "Failed to resolve", "gaierror",
                                     "Name or service not known", "nodename nor servname")):
        return "the host name does not resolve"
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return "the connection was refused"
    return None
