"""One row to push, checked against the documented rules of ``POST /leads`` before it is sent.

Rows come from a warehouse query, a CSV or parquet file, or a user's own ``pipeline.run(rows)``,
so values arrive as whatever those hold: text, numbers, lists, NaN from pandas, NULL. A row is
turned into the body the API documents (columns matched by name, empty values left out), or into
field errors in the API's own shape (``{"phone": ["..."]}``), so a reject reads the same whether
we found it or the API did. Nothing is sent for a row with errors.

The row's key is its email, lower-cased (the API keeps email unique, and compares it without
case in the sandbox): the journal and the push log hold one current outcome per key. A row with
no usable email is keyed by its content instead, so changing it makes a new row.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from dlt.common.json import json

from rackwave_source import settings as S

FieldErrors = Dict[str, List[str]]
_E164 = re.compile(S.E164_PATTERN)
_EMAIL = re.compile(S.EMAIL_PATTERN)
#: dlt names a column whose type changed ``<name>__v_<type>`` (a variant column)
_VARIANT = "__v_"


@dataclass(frozen=True)
class PushRow:
    """A row ready to send (``errors`` empty) or rejected before sending."""

    key: str
    email: Optional[str]
    body: Dict[str, Any]
    content_hash: str
    errors: FieldErrors = field(default_factory=dict)
    #: the row as it came, the columns that are body fields (what a push pipeline is given)
    item: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def valid(self) -> bool:
        return not self.errors


def prepare_row(item: Mapping[str, Any], phone_separators: str) -> PushRow:
    """Matches ``item``'s columns to the body fields and checks each against the documented
    rules; columns that are no body field are ignored (see ``ignored_columns``)."""
    values = _body_values(item)
    body: Dict[str, Any] = {}
    errors: FieldErrors = {}
    for name in S.PUSH_FIELDS:
        value, problem = _CHECKS[name](values.get(name), phone_separators)
        if problem:
            errors[name] = [problem]
        elif value is not None:
            body[name] = value
    content_hash = _content_hash(values)
    email = body.get("email")
    key = email.lower() if isinstance(email, str) else f"row:{content_hash}"
    item_fields = {k: v for k, v in item.items() if k in S.PUSH_FIELDS}
    return PushRow(key, email, body, content_hash, errors, item_fields)


def ignored_columns(columns: List[str]) -> List[str]:
    """The columns a push leaves out: neither a body field nor a variant of one, nor dlt's."""
    return [c for c in columns
            if c.split(_VARIANT, 1)[0] not in S.PUSH_FIELDS and not c.startswith("_dlt_")]


def _body_values(item: Mapping[str, Any]) -> Dict[str, Any]:
    """The body fields' values, missing ones as None; a dlt variant column stands for its field."""
    values: Dict[str, Any] = {}
    for column, value in item.items():
        name = column.split(_VARIANT, 1)[0]
        if name in S.PUSH_FIELDS and _present(value):
            values[name] = value
    return values


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (isinstance(value, str) and not value.strip())


def _content_hash(values: Mapping[str, Any]) -> str:
    """A stable digest of what the row holds, so a rejected row is sent again only once its
    content changes (a list is hashed as JSON; other values as their text)."""
    canonical = {k: (list(v) if isinstance(v, (list, tuple)) else str(v))
                 for k, v in sorted(values.items())}
    return hashlib.sha256(json.dumpb(canonical, sort_keys=True)).hexdigest()[:32]


Checked = Tuple[Any, Optional[str]]


def _text(value: Any, name: str, required: bool) -> Checked:
    if value is None:
        return None, f"The {name} field is required." if required else None
    if not isinstance(value, str):
        return None, f"The {name} field must be text, not {type(value).__name__}."
    return value.strip(), None


def _name(value: Any, _: str) -> Checked:
    return _text(value, "name", True)


def _email(value: Any, _: str) -> Checked:
    text, problem = _text(value, "email", True)
    if problem or _EMAIL.match(text):
        return text, problem
    return None, "The email field must be a valid email address."


def _phone(value: Any, separators: str) -> Checked:
    text, problem = _text(value, "phone", False)
    if problem or text is None:
        return text, problem
    number = text.translate({ord(c): None for c in separators})
    if _E164.match(number):
        return number, None
    return None, ("The phone field must be in E.164 format (a + then up to 15 digits, e.g. "
                  "+447700900000).")


def _company(value: Any, _: str) -> Checked:
    return _text(value, "company", False)


def _choice(name: str, choices: Tuple[str, ...]) -> Any:
    def check(value: Any, _: str) -> Checked:
        text, problem = _text(value, name, False)
        if problem or text is None or text in choices:
            return text, problem
        return None, f"The {name} field must be one of {', '.join(choices)}."
    return check


def _tags(value: Any, _: str) -> Checked:
    """A list of strings; a text holding a JSON array (how a CSV carries one) is read as one."""
    if value is None:
        return None, None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None, 'The tags field must be an array of strings (in a CSV: ["a", "b"]).'
    if hasattr(value, "tolist"):  # numpy arrays, from pandas and Arrow
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        return None, 'The tags field must be an array of strings (in a CSV: ["a", "b"]).'
    return list(value), None


_CHECKS: Dict[str, Any] = {
    "name": _name,
    "email": _email,
    "phone": _phone,
    "company": _company,
    "source": _choice("source", S.LEAD_SOURCES),
    "status": _choice("status", S.LEAD_STATUSES),
    "tags": _tags,
}
