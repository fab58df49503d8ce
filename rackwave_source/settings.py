"""Every literal the connector relies on, in one place.

Values documented by the Rackwave API reference are marked "documented"; values the reference is
silent about are marked "assumed" and listed in docs/api-assumptions.md, each one setting away
from change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from dlt.common.schema.typing import TSchemaContractDict

from rackwave_source.schema import CONTACT_COLUMNS, LEAD_COLUMNS, TColumns

SOURCE_NAME = "rackwave"

# Documented: the two environments and their base URLs.
ENVIRONMENTS: Dict[str, str] = {
    "production": "https://api.rackwave.io/v1",
    "sandbox": "https://sandbox.api.rackwave.io/v1",
}
DEFAULT_ENVIRONMENT = "production"

# Credentials that are a template's placeholder, never a real one: .dlt/secrets.toml.example's
# "rw_live_xxxxxxxx" / "sk_live_xxx...", angle-bracketed "<client id>", "...", "changeme".
# Refused before any request: sent, they only earn a 401 that reads like a revoked key.
CREDENTIAL_PLACEHOLDER = (r"(?i)^(?:(?:rw|sk)_(?:live|test)_)?x{4,}$|<[^<>]*>|^\.{3}$|"
                          r"^(?:changeme|change-me|todo|your[-_ ].*)$")

# At first contact (the token request), an API that refuses the connection or whose host name
# does not resolve is retried for this long at most, then the run fails (exit 75) naming the
# cause: a wrong base URL or a closed network is not an outage to wait out for minutes. Later
# connection failures keep the full retries of [runtime] request_max_attempts. Assumed.
FIRST_CONTACT_RETRY_S = 6.0

# Documented paths, relative to the base URL.
TOKEN_PATH = "/auth/token"
LEADS_PATH = "/leads"
CONTACTS_PATH = "/contacts"  # assumed: same paging, envelope and ordering as leads

# Documented: tokens live 3600 s; the response's expires_in wins when present.
DEFAULT_TOKEN_LIFETIME_S = 3600
# Renew this many seconds before the token's announced expiry, so a request never leaves with a
# token that dies in flight. Capped at half the lifetime for very short-lived tokens.
TOKEN_REFRESH_MARGIN_S = 60.0

# Documented: per_page defaults to 20 on the API, max 100. We always ask for the max.
MIN_PER_PAGE = 1
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 100

# Documented lead statuses (a filter value outside these is rejected before any request).
LEAD_STATUSES: Tuple[str, ...] = ("new", "contacted", "qualified", "won", "lost")

# Incremental loading: the cursor field (documented order: created_at descending).
CURSOR_FIELD = "created_at"
PRIMARY_KEY = "id"
# Seconds behind the stored cursor that every incremental run re-reads (merge makes it idempotent).
DEFAULT_LOOKBACK = "0s"
# How often a run turns into a full scan that merges updates and removes deleted records.
DEFAULT_FULL_SCAN_EVERY = "24h"
# What a full scan does with records that are gone from the API: "delete" removes them, "flag"
# keeps them with _rackwave_deleted_at set.
DELETED_RECORDS_MODES: Tuple[str, ...] = ("delete", "flag")
DEFAULT_DELETED_RECORDS = "delete"
# A record the API sends that does not fit the contract (no id, a created_at that is not a
# timestamp, a field of another type): "fail" stops the run before anything is loaded,
# "quarantine" loads the rest and keeps the record, with the reason, in rackwave_quarantine.
BAD_RECORDS_MODES: Tuple[str, ...] = ("fail", "quarantine")
DEFAULT_BAD_RECORDS = "fail"

# Schema drift: "evolve" (dlt's default) adds a column for a new field and a variant column for a
# field whose type changed; "freeze" fails the run instead, naming the table, field and type
# (tables may still be created, so the first load works).
SCHEMA_CONTRACTS: Tuple[str, ...] = ("evolve", "freeze")
DEFAULT_SCHEMA_CONTRACT = "evolve"
FROZEN_CONTRACT: TSchemaContractDict = {
    "tables": "evolve", "columns": "freeze", "data_type": "freeze"
}

# Privacy (privacy.py): ``hash_columns`` arrive as the lowercase hex HMAC-SHA256 of their value
# under ``hash_key``; ``exclude_columns`` never leave the process. Before hashing a value is
# normalised: "email" (default): columns named email or ending in _email are trimmed and
# lower-cased, others trimmed; "trim": every column trimmed, case kept; "none": as sent.
HASH_NORMALIZATIONS: Tuple[str, ...] = ("email", "trim", "none")
DEFAULT_HASH_NORMALIZATION = "email"
HASH_TRIM_CHARACTERS = " \t\r\n"  # what "trimmed" removes at both ends (Python's str.strip)
EMAIL_COLUMN = "email"  # a column named this, or ending in "_" + this, is an email column
# A shorter key could be guessed from one known value and its hash.
MIN_HASH_KEY_LENGTH = 16
# Where the resource state keeps the privacy settings a table was loaded with (no key: a check
# value of it, HMAC-SHA256 of HASH_KEY_CHECK_LABEL, HASH_KEY_CHECK_CHARS hex characters of it).
STATE_PRIVACY = "privacy"
HASH_KEY_CHECK_LABEL = b"rackwave hash_key check"
HASH_KEY_CHECK_CHARS = 16
# Unknown names in hash_columns/exclude_columns: this close to a documented column, it is taken
# for a typo (an error: the column would load in clear); otherwise a warning (a field the API may
# add later, which the setting then covers).
TYPO_SIMILARITY = 0.8
# Columns of dlt and of the connector (``_rackwave_deleted_at``...): neither hashed nor excluded.
PROTECTED_COLUMN_PREFIXES: Tuple[str, ...] = ("_dlt_", "_rackwave_")

# Full scans fetch pages concurrently (page 1 tells meta.last_page). Chosen by measurement on
# the benchmark (benchmarks/README.md); incremental runs stay sequential to stop early.
DEFAULT_CONCURRENCY = 16
MAX_CONCURRENCY = 64
# Each full-scan worker reads a contiguous block of at least this many pages, in order: fewer,
# longer blocks mean fewer seams, the only neighbours a churning account makes us re-read.
MIN_BLOCK_PAGES = 8
# A full scan's worker fetches up to this many consecutive pages, then decodes them in one JSON
# read and shapes them as one table: per-call overhead made decoding the largest CPU cost of a
# 100-record page read alone. 8 measured best on the benchmark (benchmarks/README.md).
PAGES_PER_READ = 8

# Re-reads after a pass (coverage.py, rereads.py). A hole's re-read starts REREAD_SLACK records
# above where its upper edge should be now (deletions above it while the re-reads run move it up),
# walks at most MAX_REREAD_PAGES pages, and the holes still open are walked again,
# MAX_REREAD_ROUNDS times at most, before the run gives up (ScanIncomplete).
REREAD_SLACK = 10
MAX_REREAD_PAGES = 20
MAX_REREAD_ROUNDS = 8
# Documented: the list endpoints' full-text search (name, email, company), used to confirm that a
# record a full scan did not see is really gone. Assumed: contacts take it too. A lookup that
# needs more than LOOKUP_MAX_PAGES pages of matches is inconclusive (the row is kept as loaded).
SEARCH_PARAM = "search"
LOOKUP_MAX_PAGES = 3

# Rows per Arrow item handed to dlt (dlt's per-item overhead; see resources._Batches).
ARROW_BATCH_ROWS = 20_000

# One row per resource per completed run, in the dataset beside the data (warehouse/runs_table.py).
RUNS_TABLE = "rackwave_runs"

# The loader file format each table of the source asks for, by destination (a ``file_format``
# table hint, so a user's own pipeline with dlt's defaults gets it too; a format configured in
# dlt's ``normalize.loader_file_format`` wins). dlt writes Arrow items as parquet by default,
# which BigQuery cannot load into a JSON column (``tags``) and which fakes nothing for Snowflake's
# VARIANT: JSONL, both destinations' preferred format, carries lists into JSON / VARIANT columns.
# Postgres takes Arrow as CSV, lists as JSON text (``arrow_shape.json_as_text``); DuckDB and lake
# files take parquet: dlt's defaults, nothing asked.
LOADER_FILE_FORMATS: Dict[str, str] = {"bigquery": "jsonl", "snowflake": "jsonl"}
LOADER_FORMAT_CONFIG_KEY = "normalize.loader_file_format"

# history = "scd2": each resource also keeps ``<resource>_history``, every observed version of a
# record with dlt's scd2 validity columns (warehouse/versions.py); "off" keeps the current state only.
HISTORY_MODES: Tuple[str, ...] = ("off", "scd2")
DEFAULT_HISTORY = "off"
HISTORY_SUFFIX = "_history"
# The content hash of a version (every field of the record, dlt's and ours excluded): dlt's scd2
# row version. Computed here, as dlt adds no row hash to Arrow items.
HISTORY_ROW_HASH = "_rackwave_row_hash"

# HTTP: connect/read timeout in seconds (dlt's [runtime] request_timeout overrides it).
REQUEST_TIMEOUT_S = 60.0
# Assumed (the reference documents 429 + Retry-After but no quota): how long in total a single
# request may wait on 429 answers before the run gives up with a rate-limit error.
MAX_RATE_LIMIT_WAIT_S = 600.0
# Retry-After is documented in seconds; a missing or unparsable header waits this long.
DEFAULT_RETRY_AFTER_S = 1.0

# Hosts that may be reached over plain HTTP (the sandbox, local tests). Anything else needs HTTPS.
LOOPBACK_HOSTS: Tuple[str, ...] = ("localhost", "::1")


@dataclass(frozen=True)
class ResourceSpec:
    """Everything that makes one resource: adding a resource is one entry here plus its columns.

    ``filters``: (option of ``ValidatedOptions``, API query parameter) pairs passed on every page
    request. ``lookup_fields``: search terms that can find one record (fields joined by a space);
    the first one a record has is used to confirm its deletion.
    """

    name: str
    path: str
    columns: TColumns
    filters: Tuple[Tuple[str, str], ...] = ()
    lookup_fields: Tuple[Tuple[str, ...], ...] = ()
    #: BigQuery and Snowflake cluster the table on this column (BigQuery also partitions every
    #: table by the day of ``created_at``): queries filter leads by status.
    cluster: Optional[str] = None


RESOURCES: Tuple[ResourceSpec, ...] = (
    ResourceSpec("leads", LEADS_PATH, LEAD_COLUMNS,
                 filters=(("lead_status", "status"), ("lead_search", SEARCH_PARAM)),
                 lookup_fields=(("email",), ("name",)), cluster="status"),
    # Assumed: contacts are searched on name, email and company like leads.
    ResourceSpec("contacts", CONTACTS_PATH, CONTACT_COLUMNS,
                 lookup_fields=(("email",), ("first_name", "last_name"))),
)
RESOURCE_NAMES: Tuple[str, ...] = tuple(spec.name for spec in RESOURCES)

# The ids loaded at exactly the cursor's created_at are kept in the state, so the next run does
# not load them again (a run with nothing new then writes nothing). More than this many records
# sharing one created_at are not listed: the next run merges them again, as it always may.
MAX_CURSOR_IDS = 1000
# Records set aside for quarantine whose first sighting the state remembers (quarantine.py);
# past that many, a record's first_seen_at restarts at the run that reads it.
MAX_QUARANTINE_KEYS = 10_000


# ---- Reverse ETL: ``rackwave push leads`` (POST /leads) -------------------------------------
# Documented body fields of POST /leads (name and email required: push/rows.py checks them);
# ``status`` is in the documented example body only.
PUSH_FIELDS: Tuple[str, ...] = ("name", "email", "phone", "company", "source", "status", "tags")
LEAD_SOURCES: Tuple[str, ...] = ("api", "website", "referral", "manual")  # documented
E164_PATTERN = r"^\+[1-9]\d{1,14}$"  # documented: E.164
# Assumed: an address is something@domain.tld with no spaces (the API's own check may be
# stricter: its 422 then rejects the row, with its message).
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
# Assumed: the documented example writes "+44 7700 900000"; these characters are removed before
# the E.164 check, so a warehouse's formatted numbers still go. "" sends numbers as they are.
DEFAULT_PUSH_PHONE_SEPARATORS = " -.()"
# Rows sent at once; each POST is one request of the shared rate budget (see throttle.py).
DEFAULT_PUSH_CONCURRENCY = 16
# Rows per call of the destination: dlt records progress after each call, and a killed push
# goes through at most one batch again (its rows with an outcome cost no request: the journal).
# Large, because a batch ends with its slowest row: one answer lost and retried after a backoff
# holds up the whole batch, and small batches pay that wait many times (benchmarks/push.py).
DEFAULT_PUSH_BATCH_SIZE = 5000
MAX_PUSH_BATCH_SIZE = 10_000
# Rows read from the query or file at a time (DB-API fetchmany): a push holds one chunk of rows,
# never the whole input, so 1,000,000 rows fit in a few hundred MB (benchmarks/push.py --stream).
DEFAULT_PUSH_READ_CHUNK_SIZE = 10_000
MAX_PUSH_READ_CHUNK_SIZE = 100_000
# Outcomes per Arrow table written to ``rackwave_push_log`` (one table each: bounded memory).
PUSH_LOG_CHUNK_SIZE = 10_000
# Rejected rows named in a push's summary (all of them are in rackwave_push_log).
PUSH_SHOWN_REJECTS = 10
# Before a batch's first POSTs, the newest leads are read (newest first, this many a page) with
# the server's clock (Date): a lead found after a failure that may hide a create is the push's own
# only if it is missing from that read and dated at or after it (push.py explains the rule).
PUSH_MARK_PER_PAGE = MAX_PER_PAGE
# The lead field the rule compares with the server's clock (documented, ISO 8601).
LEAD_CREATED_FIELD = "created_at"
# The journal: one SQLite file per account under dlt's data folder (DLT_DATA_DIR, ~/.dlt).
PUSH_JOURNAL_FOLDER = "rackwave_push"
# The outcomes a pushed row ends with, and the warehouse table that logs them.
PUSH_OUTCOMES: Tuple[str, ...] = ("created", "existing", "rejected")
PUSH_LOG_TABLE = "rackwave_push_log"
PUSH_TABLE = "leads"  # the destination's table name (``pipeline.run(rows, table_name="leads")``)
PUSH_LOG_COLUMNS: TColumns = {
    "row_key": {"data_type": "text", "nullable": False},  # the email lower-cased, or row:<hash>
    "email": {"data_type": "text"},
    "status": {"data_type": "text", "nullable": False},
    "lead_id": {"data_type": "text"},
    "errors": {"data_type": "text"},  # JSON: {"field": ["message", ...]}
    "content_hash": {"data_type": "text", "nullable": False},
    "pushed_at": {"data_type": "timestamp", "timezone": True, "nullable": False},
    "load_id": {"data_type": "text"},  # the push's load package
}


# ---- Every setting, declared once ----------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One setting of ``[sources.rackwave]`` (``SOURCES__RACKWAVE__<NAME>``).

    Declared once, in ``SPEC``: the rest is derived from it or checked against it by a test
    (``tests/unit/test_settings_spec.py``): the source's and the push's signatures (names,
    defaults, secrets), their validation (``options.validated_options``,
    ``push/destination.py``), the unknown-key check, the messages for a wrong value, the
    source's docstring and the tables of ``docs/configuration.md``."""

    name: str
    #: the value when none is set (None: unset); a secret has none
    default: Any
    #: the values a wrong value's message names
    accepts: str
    #: what it does (Markdown: docs/configuration.md's table, the source's docstring)
    meaning: str
    secret: bool = False
    #: read by the source (``rackwave_source``) and/or by ``rackwave push`` (``rackwave_push``)
    source: bool = True
    push: bool = False
    #: the docs' default when the value alone does not say it
    shown_default: Optional[str] = None

    @property
    def default_text(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if self.secret:
            return "required"
        if self.default is None:
            return "—"
        shown = str(self.default).lower() if isinstance(self.default, bool) else self.default
        return f"`{shown:g}`" if isinstance(shown, float) else f"`{shown}`"


SPEC: Tuple[Setting, ...] = (
    Setting("client_id", None, "the API client id (a secret)", "API client id (a secret)",
            secret=True, push=True),
    Setting("client_secret", None, "the API client secret (a secret)",
            "API client secret (a secret)", secret=True, push=True),
    Setting("environment", DEFAULT_ENVIRONMENT, "production or sandbox",
            "`production` → `https://api.rackwave.io/v1`, `sandbox` → "
            "`https://sandbox.api.rackwave.io/v1`", push=True),
    Setting("base_url", None, "an https URL (http only to loopback)",
            "overrides the environment; must be HTTPS unless loopback (127.0.0.0/8, localhost, "
            "::1)", push=True),
    Setting("per_page", DEFAULT_PER_PAGE, "a whole number from 1 to 100",
            "records per request, 1..100"),
    Setting("start_date", None, "an ISO 8601 date or timestamp, e.g. 2026-01-31",
            "ISO date/timestamp; older records are never read"),
    Setting("lookback", DEFAULT_LOOKBACK,
            "a duration: seconds, or a number with s, m, h, d or w, e.g. 1h",
            "incremental runs re-read this far behind the cursor (`90s`, `15m`, `2h`, `1d`)"),
    Setting("full_scan_every", DEFAULT_FULL_SCAN_EVERY, "a duration (e.g. 24h), or never",
            "a run becomes a full scan when the last one is older than this; `never` disables"),
    Setting("full_scan", False, "true or false", "force a full scan (same as `--full-scan`)"),
    Setting("deleted_records", DEFAULT_DELETED_RECORDS, "delete or flag",
            "what a full scan does with records gone from the API (confirmed gone, see "
            "[Exactness](exactness.md#how-the-warehouse-stays-equal-to-the-api)): `delete` "
            "removes them; `flag` keeps them with `_rackwave_deleted_at` set"),
    Setting("bad_records", DEFAULT_BAD_RECORDS, "fail or quarantine",
            "a record that breaks the API contract (no `id` or `created_at`, an empty `id`, a `created_at` that "
            "is not a timestamp, a record that is not an object): `fail` stops the run before "
            "anything loads; `quarantine` loads the rest and keeps it in `rackwave_quarantine` "
            "with the reason. (Any other field of an unexpected type is drift: see "
            "`schema_contract`.)"),
    Setting("lead_status", None, "new, contacted, qualified, won or lost",
            "only leads with this status (`new`, `contacted`, `qualified`, `won`, `lost`)"),
    Setting("lead_search", None, "any text", "only leads matching this text (the API's `search`)"),
    Setting("max_rate_limit_wait", MAX_RATE_LIMIT_WAIT_S, "a number of seconds",
            "seconds one request may spend waiting on 429 answers before the run fails",
            push=True),
    Setting("concurrency", DEFAULT_CONCURRENCY, "a whole number from 1 to 64",
            "workers of a full scan (1..64), each reading a contiguous block of pages in order; "
            "incremental runs read one page at a time"),
    Setting("max_requests_per_second", None, "a positive number",
            "the account's quota, if known; unset, the rate is learned from 429 answers",
            push=True),
    Setting("ca_bundle", None, "the path of a PEM file",
            "a PEM file of certificate authorities to trust (e.g. a TLS-inspecting proxy's); TLS "
            "is always verified and cannot be switched off", push=True),
    Setting("schema_contract", DEFAULT_SCHEMA_CONTRACT, "evolve or freeze",
            "API drift: `evolve` adds a column for a new field and a variant column "
            "(`phone__v_bigint`) for a field whose type changed; `freeze` fails the run "
            "instead, naming the table, the field and the type, before anything of the run is "
            "loaded"),
    Setting("hash_columns", None, 'a list of column names, e.g. ["email", "phone"]',
            "columns loaded as the hex HMAC-SHA256 of their value under `hash_key`, on every "
            "table (`[\"email\", \"phone\"]`; "
            "`SOURCES__RACKWAVE__HASH_COLUMNS='[\"email\",\"phone\"]'`): see "
            "[Privacy](privacy.md)"),
    Setting("hash_key", None, "the key of the hashes (a secret, at least 16 characters)",
            "the key of those hashes: a secret of 16 characters or more (`.dlt/secrets.toml`, "
            "`SOURCES__RACKWAVE__HASH_KEY`); required with `hash_columns`", secret=True,
            shown_default="—"),
    Setting("hash_normalization", DEFAULT_HASH_NORMALIZATION, "email, trim or none",
            "what is done to a value before it is hashed: `email` trims every value and "
            "lower-cases email columns (`email`, `*_email`); `trim` trims only; `none` hashes "
            "the value as sent"),
    Setting("exclude_columns", None, 'a list of column names, e.g. ["phone"]',
            "columns never loaded (`[\"address__street\"]`; `address` drops every "
            "`address__*` column)"),
    Setting("history", DEFAULT_HISTORY, "off or scd2",
            "`scd2`: each resource also keeps `<resource>_history` (`leads_history`, "
            "`contacts_history`), one row per observed version of a record with "
            "`_dlt_valid_from`/`_dlt_valid_to`: see [History](tables-and-history.md#history). "
            "Not on the filesystem destination (refused before anything is read)"),
    Setting("push_concurrency", DEFAULT_PUSH_CONCURRENCY, "a whole number from 1 to 64",
            "valid rows sent concurrently (1..64)", source=False, push=True),
    Setting("push_batch_size", DEFAULT_PUSH_BATCH_SIZE, "a whole number from 1 to 10000",
            "rows per batch of dlt's push destination, the unit a killed push resumes from "
            "(1..10,000)", source=False, push=True),
    Setting("push_read_chunk_size", DEFAULT_PUSH_READ_CHUNK_SIZE,
            "a whole number from 1 to 100000",
            "rows read from the query or file at a time (1..100,000)", source=False, push=True),
    Setting("push_phone_separators", DEFAULT_PUSH_PHONE_SEPARATORS,
            "the characters removed from a phone number before it is checked",
            "characters removed from a phone number before the E.164 check (`\"\"` sends "
            "numbers as they are)", source=False, push=True, shown_default='`" -.()"`'),
    Setting("push_journal", None, "the path of the push journal file (SQLite)",
            "the path of the push journal file", source=False, push=True,
            shown_default="`~/.dlt/rackwave_push/` (or under `DLT_DATA_DIR`), one SQLite file "
                          "per account"),
)
SPEC_BY_NAME: Dict[str, Setting] = {setting.name: setting for setting in SPEC}
#: the source's settings and the values each accepts (messages; the unknown-key check)
SETTINGS: Dict[str, str] = {s.name: s.accepts for s in SPEC if s.source}
#: the settings only ``rackwave push`` reads, from the same section
PUSH_SETTINGS: Dict[str, str] = {s.name: s.accepts for s in SPEC if not s.source}
#: never echoed in a message
SECRET_SETTINGS: Tuple[str, ...] = tuple(s.name for s in SPEC if s.secret)


def default(name: str) -> Any:
    """A setting's default, for the signatures that dlt reads."""
    return SPEC_BY_NAME[name].default


def settings_table(push: bool) -> str:
    """The Markdown table of ``docs/configuration.md``: the source's settings, or the push's own."""
    rows = [s for s in SPEC if (not s.source if push else s.source)]
    lines = ["| setting | default | meaning |", "|---|---|---|"]
    lines += [f"| `{s.name}` | {s.default_text} | {s.meaning} |" for s in rows]
    return "\n".join(lines)
