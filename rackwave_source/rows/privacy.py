"""Privacy: ``hash_columns`` hashed and ``exclude_columns`` dropped before anything leaves the process.

Every value a run loads comes from one of two places, and both go through :class:`Privacy`:

* a page the API sent, shaped into an Arrow table by ``decode.PageReader`` (the data tables, the
  records a deletion lookup finds, the keyless records set aside for the quarantine, variant
  columns of schema drift): :meth:`Privacy.table`, right where the table is made;
* a raw record set aside for the quarantine table (``quarantine.sort_out``): :meth:`Privacy.record`.

So batching, drift, the quarantine, the state, the logs and the destination only ever see hashes
(or nothing). Rows a full scan reads back from the warehouse (``deletions.py``) were hashed when
they were loaded and are not hashed again; deletion lookups search the API only by columns that
are kept clear (:meth:`Privacy.spec`). A hashed column holds text: a value of another type (a
number in ``phone``, which would otherwise land in a variant column) is hashed from its JSON text.

The key never leaves this object: not in its ``repr``, not in the state, which keeps the settings
a table was loaded with and a check value of the key (:meth:`Privacy.fingerprint`), so a run with
other settings stops before it mixes hashes and clear values in one column (:func:`check_state`).
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterable, List, MutableMapping, Optional, Sequence, Tuple, Union

import pyarrow as pa

from dlt.common.json import json

from rackwave_source import settings as S
from rackwave_source.rows.arrow_shape import SEPARATOR
from rackwave_source.rows.drift import split_variant
from rackwave_source.exceptions import ConfigurationError

logger = logging.getLogger("rackwave_source")
_FIX_REFRESH = (
    "Load it again from scratch, which drops the source's tables and state: `rackwave "
    "--full-refresh`, or `pipeline.run(rackwave_source(), refresh=\"drop_sources\")`. Or run "
    "with the settings it was loaded with."
)


def covers(names: Iterable[str], column: str) -> bool:
    """Whether a setting's list names this column: the column itself, a nested column of it
    (``address`` covers ``address__city``) or a variant of either (``phone__v_bigint``)."""
    return any(column == name or column.startswith(name + SEPARATOR) for name in names)


def is_email_column(column: str) -> bool:
    """``email``, ``work_email``, ``contact__email``: lower-cased before hashing ("email" mode)."""
    return column == S.EMAIL_COLUMN or column.endswith("_" + S.EMAIL_COLUMN)


class _Digests:
    """The hashes of one column's values: normalised text, HMAC-SHA256 under the key, hex."""

    def __init__(self, key: bytes, normalization: str, column: str) -> None:
        self._base = hmac.new(key, digestmod=hashlib.sha256)
        self._trim = normalization != "none"
        self._lower = normalization == "email" and is_email_column(column)

    def __call__(self, values: Sequence[Any]) -> List[Optional[str]]:
        out: List[Optional[str]] = []
        for value in values:
            if value is None:
                out.append(None)
                continue
            text = value if isinstance(value, str) else json.dumps(value)
            if self._trim:
                text = text.strip(S.HASH_TRIM_CHARACTERS)
            if self._lower:
                text = text.lower()
            digest = self._base.copy()  # the key's pads are hashed once per column, not per value
            digest.update(text.encode("utf-8"))
            out.append(digest.hexdigest())
        return out


def hash_value(key: Union[str, bytes], value: Any, column: str,
               normalization: str = S.DEFAULT_HASH_NORMALIZATION) -> Optional[str]:
    """What the warehouse holds for ``value`` in the hashed column ``column``: for joins and
    lookups of your own (docs/privacy.md shows the same recipe in plain Python)."""
    raw = key.encode("utf-8") if isinstance(key, str) else key
    return _Digests(raw, normalization, column)([value])[0]


@dataclass(frozen=True)
class Privacy:
    """The validated privacy settings of one source (see :func:`validate_privacy`)."""

    hash_columns: Tuple[str, ...] = ()
    exclude_columns: Tuple[str, ...] = ()
    normalization: str = S.DEFAULT_HASH_NORMALIZATION
    key: bytes = field(default=b"", repr=False, compare=False)

    @property
    def active(self) -> bool:
        return bool(self.hash_columns or self.exclude_columns)

    def table(self, table: pa.Table) -> pa.Table:
        """A page's table as it may leave the process: excluded columns gone, hashed ones hashed
        (a hashed column's variants folded into it: a hash is text whatever the value was)."""
        if not self.active:
            return table
        dropped = [name for name in table.column_names if covers(self.exclude_columns, name)]
        if dropped:
            table = table.drop_columns(dropped)
        for base, members in self._hashed_groups(table.column_names).items():
            table = self._hash_group(table, base, members)
        return table

    def _hashed_groups(self, names: Sequence[str]) -> Dict[str, List[str]]:
        """Each hashed column with its variant columns, the column itself first."""
        groups: Dict[str, List[str]] = {}
        for name in names:
            if not covers(self.hash_columns, name):
                continue
            variant = split_variant(name)
            base = variant[0] if variant and covers(self.hash_columns, variant[0]) else name
            members = groups.setdefault(base, [])
            if name == base:
                members.insert(0, name)
            else:
                members.append(name)
        return groups

    def _hash_group(self, table: pa.Table, base: str, members: List[str]) -> pa.Table:
        columns = [table.column(name).to_pylist() for name in members]
        values = columns[0] if len(columns) == 1 else [
            next((v for v in row if v is not None), None) for row in zip(*columns)]
        hashed = pa.array(_Digests(self.key, self.normalization, base)(values), pa.string())
        rest = [name for name in members if name != base]
        if base in table.column_names:
            index = table.schema.get_field_index(base)
            table = table.set_column(index, pa.field(base, pa.string()), hashed)
        else:  # only a variant came: it becomes the column
            table = table.append_column(pa.field(base, pa.string()), hashed)
        return table.drop_columns(rest) if rest else table

    def record(self, record: Any) -> Any:
        """A raw record (one set aside for the quarantine) as the warehouse may keep it. A record
        that is not an object is not kept at all: nothing tells which of its values are whose."""
        if not self.active:
            return record
        if not isinstance(record, dict):
            return None
        return self._fields(record, "")

    def _fields(self, record: Dict[str, Any], prefix: str) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for key, value in record.items():
            name = f"{prefix}{key}"
            if covers(self.exclude_columns, name):
                continue
            if isinstance(value, dict) and not prefix:  # nested one level, as columns are
                out[key] = self._fields(value, name + SEPARATOR)
            elif covers(self.hash_columns, name):
                out[key] = _Digests(self.key, self.normalization, name)([value])[0]
            else:
                out[key] = value
        return out

    def spec(self, spec: S.ResourceSpec) -> S.ResourceSpec:
        """The resource as loaded: excluded columns not declared (so never created), deletion
        lookups only by clear columns (the API cannot search a hash), no clustering on a dropped
        column."""
        if not self.active:
            return spec
        hidden = self.hash_columns + self.exclude_columns
        columns = {n: c for n, c in spec.columns.items() if not covers(self.exclude_columns, n)}
        lookups = tuple(fields for fields in spec.lookup_fields
                        if not any(covers(hidden, name) for name in fields))
        cluster = spec.cluster if spec.cluster in columns else None
        return replace(spec, columns=columns, lookup_fields=lookups, cluster=cluster)

    def fingerprint(self) -> Optional[Dict[str, Any]]:
        """What the state keeps of these settings: the lists, and a check value of the key (an
        HMAC of a fixed label, which no more gives the key away than any hash in the table)."""
        if not self.active:
            return None
        check = None
        if self.hash_columns:
            mac = hmac.new(self.key, S.HASH_KEY_CHECK_LABEL, hashlib.sha256).hexdigest()
            check = mac[:S.HASH_KEY_CHECK_CHARS]
        return {"hash_columns": sorted(self.hash_columns),
                "exclude_columns": sorted(self.exclude_columns),
                "hash_normalization": self.normalization if self.hash_columns else None,
                "hash_key_check": check}


def check_state(state: MutableMapping[str, Any], privacy: Privacy, resource: str,
                loaded: bool) -> None:
    """Refuses a run whose privacy settings differ from those the resource's table was loaded
    with (``loaded``: an earlier run committed rows), before anything is read; else records them.

    Raises:
        ConfigurationError: naming the setting that changed, and the full refresh that fixes it.
    """
    wanted = privacy.fingerprint()
    stored = state.get(S.STATE_PRIVACY)
    if loaded and stored != wanted:
        raise _changed(resource, stored or {}, wanted or {})
    if wanted is None:
        state.pop(S.STATE_PRIVACY, None)
    else:
        state[S.STATE_PRIVACY] = wanted


def _changed(resource: str, before: Dict[str, Any], now: Dict[str, Any]) -> ConfigurationError:
    settings = {"hash_columns": "hash_columns", "exclude_columns": "exclude_columns",
                "hash_normalization": "hash_normalization", "hash_key_check": "hash_key"}
    changed = [name for key, name in settings.items() if before.get(key) != now.get(key)]
    return ConfigurationError(
        changed[0],
        f"`{resource}` was loaded with {_described(before)}; this run asks for "
        f"{_described(now)}{' and another hash_key' if changed == ['hash_key'] else ''}: one "
        "column would mix values hashed or kept differently",
        _FIX_REFRESH,
    )


def _described(fingerprint: Dict[str, Any]) -> str:
    hashed, excluded = fingerprint.get("hash_columns"), fingerprint.get("exclude_columns")
    if not hashed and not excluded:
        return "no hashed or excluded column"
    parts = [f"hash_columns {hashed}"] if hashed else []
    if hashed and fingerprint.get("hash_normalization") != S.DEFAULT_HASH_NORMALIZATION:
        parts.append(f"hash_normalization {fingerprint.get('hash_normalization')!r}")
    if excluded:
        parts.append(f"exclude_columns {excluded}")
    return ", ".join(parts)


def validate_privacy(hash_columns: Any, hash_key: Optional[str], exclude_columns: Any,
                     normalization: Optional[str],
                     specs: Sequence[S.ResourceSpec] = S.RESOURCES) -> Privacy:
    """The privacy settings checked against the resources' columns, before any request.

    Raises:
        ConfigurationError: a column the connector needs, a hashed column that is not text, a
            resource left with no clear column to confirm deletions by, a likely typo of a
            documented column, a column both hashed and excluded, no or a short ``hash_key``.
    """
    hashed = _names("hash_columns", hash_columns)
    excluded = _names("exclude_columns", exclude_columns)
    both = [name for name in hashed if name in excluded]
    if both:
        raise ConfigurationError(
            "hash_columns", f"{', '.join(map(repr, both))} is also in exclude_columns",
            "Name each column in one of them: excluded columns are dropped, hashed ones kept as "
            "hashes.")
    for setting, names in (("hash_columns", hashed), ("exclude_columns", excluded)):
        for name in names:
            _check_needed(setting, name)
            _check_known(setting, name, specs)
    _check_text(hashed, specs)
    _check_lookups(hashed, excluded, specs)
    mode = str(normalization or S.DEFAULT_HASH_NORMALIZATION).strip().lower()
    if mode not in S.HASH_NORMALIZATIONS:
        raise ConfigurationError("hash_normalization", f"unknown value {normalization!r}",
                                 f"Use one of: {', '.join(S.HASH_NORMALIZATIONS)}.")
    return Privacy(hashed, excluded, mode, _key(hashed, hash_key))


def _names(setting: str, value: Any) -> Tuple[str, ...]:
    """A list of column names (a comma-separated text is taken too), lower-cased as dlt names
    columns, without repeats."""
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ConfigurationError(setting, f"{value!r} is not a list of column names",
                                 f"Write e.g. {setting} = [\"email\", \"phone\"].")
    names = [item.strip().lower() for item in items if item.strip()]
    return tuple(dict.fromkeys(names))


def _check_needed(setting: str, name: str) -> None:
    """``id`` (the merge key), ``created_at`` (the cursor) and the columns of dlt and of the
    connector must reach the warehouse as they are."""
    if name in (S.PRIMARY_KEY, S.CURSOR_FIELD) or name.startswith(S.PROTECTED_COLUMN_PREFIXES):
        raise ConfigurationError(
            setting, f"`{name}` is a column the connector needs as it is",
            f"Remove it from {setting}: rows are merged on `{S.PRIMARY_KEY}` and read "
            f"incrementally by `{S.CURSOR_FIELD}`, and columns starting with "
            f"{' or '.join(S.PROTECTED_COLUMN_PREFIXES)} are dlt's and the connector's.")


def _check_known(setting: str, name: str, specs: Sequence[S.ResourceSpec]) -> None:
    """A name no documented column has: a typo of one is an error (that column would load in
    clear); anything else a warning, since it covers a field the API may add later."""
    documented = sorted({column for spec in specs for column in spec.columns})
    if any(covers([name], column) for column in documented):
        return
    parents = {column.split(SEPARATOR, 1)[0] for column in documented}
    close = difflib.get_close_matches(name, sorted(parents | set(documented)), n=1,
                                      cutoff=S.TYPO_SIMILARITY)
    if close:
        raise ConfigurationError(
            setting, f"`{name}` is no column of {', '.join(s.name for s in specs)}",
            f"Did you mean `{close[0]}`? A misspelt name would leave that column as it is.")
    logger.warning("%s: `%s` is no documented column of %s; it applies to a field of that name "
                   "if the API sends one.", setting, name, ", ".join(s.name for s in specs))


def _check_text(hashed: Sequence[str], specs: Sequence[S.ResourceSpec]) -> None:
    for spec in specs:
        for column, schema in spec.columns.items():
            kind = str(schema.get("data_type"))
            if covers(hashed, column) and kind != "text":
                raise ConfigurationError(
                    "hash_columns", f"`{column}` of {spec.name} is {kind}, not text",
                    "Only text columns (and fields the API adds later) are hashed: exclude it "
                    "instead (exclude_columns), or keep it.")


def _check_lookups(hashed: Sequence[str], excluded: Sequence[str],
                   specs: Sequence[S.ResourceSpec]) -> None:
    """A full scan confirms a deletion by searching the API for the record by a clear column."""
    hidden = tuple(hashed) + tuple(excluded)
    for spec in specs:
        if not spec.lookup_fields:
            continue
        if any(not any(covers(hidden, n) for n in fields) for fields in spec.lookup_fields):
            continue
        terms = " or ".join(" and ".join(fields) for fields in spec.lookup_fields)
        setting = "hash_columns" if any(covers(hashed, n) for f in spec.lookup_fields
                                        for n in f) else "exclude_columns"
        raise ConfigurationError(
            setting, f"{spec.name} would keep none of {terms} clear",
            f"A full scan confirms that a {spec.name[:-1]} was deleted by searching the API for "
            f"its {terms}, and a hash cannot be searched: keep one of them out of hash_columns "
            "and exclude_columns.")


def _key(hashed: Sequence[str], key: Optional[str]) -> bytes:
    """The key's UTF-8 bytes, as given (never echoed); none is needed when nothing is hashed,
    but a key given is checked anyway (a blank one is a mistake either way)."""
    if key is None and not hashed:
        return b""
    if key is None:
        raise ConfigurationError(
            "hash_key", f"hash_columns lists {', '.join(hashed)} but no hash_key is set",
            "Put a secret of at least "
            f"{S.MIN_HASH_KEY_LENGTH} characters in .dlt/secrets.toml under [sources.rackwave] "
            "as hash_key, or in the environment variable SOURCES__RACKWAVE__HASH_KEY; keep it: "
            "the same key gives the same hashes.")
    if len(str(key).strip()) < S.MIN_HASH_KEY_LENGTH:
        raise ConfigurationError(
            "hash_key", f"it is shorter than {S.MIN_HASH_KEY_LENGTH} characters",
            "Use a longer random secret (e.g. `python -c \"import secrets; "
            "print(secrets.token_hex(32))\"`): a short key can be guessed from one known value "
            "and its hash.")
    return str(key).encode("utf-8") if hashed else b""
