"""A hashed column never reaches the warehouse in clear, an excluded one never reaches it at all,
the key never shows, and a table loaded with one set of privacy settings is never continued with
another (``rackwave_source/rows/privacy.py``; no server, no pipeline)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import string

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackwave_source import settings as S
from rackwave_source.exceptions import ConfigurationError
from rackwave_source.rows.privacy import Privacy, check_state, hash_value, validate_privacy

KEY = "unit-test-key-0123456789abcdef"
OTHER_KEY = "another-key-for-tests-9876543210"
LEADS, CONTACTS = (spec for spec in S.RESOURCES)


def hmac_hex(value: str, key: str = KEY) -> str:
    """HMAC-SHA256 written out with the standard library alone, as a user joining on it would."""
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


def privacy(hash_columns=("email",), key=KEY, exclude=(), normalization=None) -> Privacy:
    return validate_privacy(list(hash_columns), key, list(exclude), normalization)


# -- validate_privacy -----------------------------------------------------------------------------

def test_hash_columns_without_a_hash_key_are_refused_before_any_request():
    with pytest.raises(ConfigurationError) as refused:
        validate_privacy(["email"], None, [], None)
    assert refused.value.setting == "hash_key"
    assert "SOURCES__RACKWAVE__HASH_KEY" in str(refused.value)  # says where to put it


@pytest.mark.parametrize("key", ["x" * 15, " " * 10 + "y" * 15 + "\t", "\u00e9" * 15])
def test_a_hash_key_shorter_than_16_characters_is_refused_without_echoing_it(key):
    with pytest.raises(ConfigurationError) as refused:
        validate_privacy(["email"], key, [], None)
    assert refused.value.setting == "hash_key"
    assert "16" in str(refused.value)
    assert key.strip() not in str(refused.value)


def test_a_key_of_exactly_16_characters_is_enough_and_it_is_what_the_hashes_use():
    key = "k" * 16
    hashed = privacy(key=key)
    assert hashed.record({"email": "a@x.io"}) == {"email": hmac_hex("a@x.io", key)}


def test_a_blank_key_is_a_mistake_even_when_nothing_is_hashed():
    with pytest.raises(ConfigurationError, match="hash_key"):
        validate_privacy([], "   ", ["phone"], None)
    assert validate_privacy([], None, ["phone"], None).key == b""  # no key needed


@pytest.mark.parametrize("mode", ["sha256", "lower", "emails"])
def test_an_unknown_normalization_is_refused_naming_the_accepted_ones(mode):
    with pytest.raises(ConfigurationError) as refused:
        privacy(normalization=mode)
    assert refused.value.setting == "hash_normalization"
    assert all(name in str(refused.value) for name in S.HASH_NORMALIZATIONS)


def test_a_normalization_is_read_whatever_its_case_and_spaces():
    assert privacy(normalization=" TRIM ").normalization == "trim"
    assert privacy(normalization=None).normalization == S.DEFAULT_HASH_NORMALIZATION


@pytest.mark.parametrize("setting, name", [
    ("hash_columns", "id"), ("exclude_columns", "created_at"),
    ("exclude_columns", "_dlt_id"), ("hash_columns", "_rackwave_deleted_at"),
])
def test_the_columns_the_connector_merges_and_reads_by_can_be_neither_hashed_nor_excluded(
        setting, name):
    lists = {"hash_columns": [], "exclude_columns": [], setting: [name]}
    with pytest.raises(ConfigurationError) as refused:
        validate_privacy(lists["hash_columns"], KEY, lists["exclude_columns"], None)
    assert refused.value.setting == setting and f"`{name}`" in str(refused.value)


def test_a_misspelt_column_is_an_error_not_a_column_left_in_clear():
    with pytest.raises(ConfigurationError, match="Did you mean `email`"):
        privacy(hash_columns=["emial"])
    with pytest.raises(ConfigurationError, match="Did you mean `address`"):
        privacy(hash_columns=(), exclude=["adress"])


def test_a_field_the_api_may_add_later_is_a_warning_only(caplog):
    with caplog.at_level(logging.WARNING, logger="rackwave_source"):
        found = privacy(hash_columns=["linkedin_url"])
    assert found.hash_columns == ("linkedin_url",)
    assert "no documented column" in caplog.text and KEY not in caplog.text


# -- excluded columns -----------------------------------------------------------------------------

def test_excluding_a_parent_drops_every_nested_column_of_it_everywhere():
    excluded = privacy(hash_columns=(), exclude=["Address"])  # names are lower-cased as dlt does
    page = pa.table({"id": ["C1"], "address__street": ["1 Main St"], "address__city": ["Oslo"],
                     "address__postcode__v_bigint": [1234], "address_note": ["kept"]})

    assert excluded.table(page).column_names == ["id", "address_note"]
    assert excluded.record({"id": "C1", "address": {"city": "Oslo"}, "address_note": "kept"}) == \
        {"id": "C1", "address_note": "kept"}
    declared = excluded.spec(CONTACTS).columns
    assert not [name for name in declared if name.startswith("address__")]
    assert "email" in declared  # the rest is declared as before


def test_a_column_both_hashed_and_excluded_is_refused():
    with pytest.raises(ConfigurationError, match="'phone' is also in exclude_columns"):
        privacy(hash_columns=["phone"], exclude=["phone"])


# -- the hashes -----------------------------------------------------------------------------------

def test_the_same_email_hashes_the_same_on_every_table_and_in_the_quarantine():
    hashed = privacy(hash_columns=["email"])
    leads = hashed.table(pa.table({"id": ["L1"], "email": ["Ada@Example.com"]}))
    contacts = hashed.table(pa.table({"id": ["C9"], "email": ["  ada@example.COM\n"],
                                      "first_name": ["Ada"]}))
    quarantined = hashed.record({"id": None, "email": "ADA@example.com "})

    expected = hmac_hex("ada@example.com")
    assert leads.column("email").to_pylist() == [expected]
    assert contacts.column("email").to_pylist() == [expected]
    assert quarantined == {"id": None, "email": expected}
    assert hash_value(KEY, "Ada@Example.com", "email") == expected  # the documented recipe
    assert contacts.column("first_name").to_pylist() == ["Ada"]  # other columns untouched


@pytest.mark.parametrize("mode, column, value, hashed_text", [
    ("email", "email", " Ada@X.io\n", "ada@x.io"),
    ("email", "work_email", "Ada@X.io", "ada@x.io"),
    ("email", "phone", " +47 ABC ", "+47 ABC"),  # trimmed, but only email columns lower-cased
    ("trim", "email", " Ada@X.io ", "Ada@X.io"),
    ("none", "email", " Ada@X.io ", " Ada@X.io "),
])
def test_normalization_decides_which_spellings_of_a_value_share_a_hash(
        mode, column, value, hashed_text):
    assert hash_value(KEY, value, column, mode) == hmac_hex(hashed_text)


def test_a_number_in_a_hashed_column_is_hashed_as_its_json_text_and_lands_as_text():
    hashed = privacy(hash_columns=["phone"])
    page = pa.table({"id": ["L1", "L2"], "phone": ["5551234", None],
                     "phone__v_bigint": pa.array([None, 5551234], pa.int64())})

    out = hashed.table(page)

    assert out.column_names == ["id", "phone"]
    assert out.schema.field("phone").type == pa.string()
    assert out.column("phone").to_pylist() == [hmac_hex("5551234")] * 2
    assert out.column("phone").to_pylist() != page.column("phone").to_pylist()


def test_a_quarantined_value_that_is_not_an_object_is_not_kept_at_all():
    assert privacy().record(["ada@x.io", "L1"]) is None
    assert privacy().record("ada@x.io") is None


FOUR_HASHED = validate_privacy(["email", "phone", "company", "title"], KEY, [], None)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(value=st.text(min_size=1, max_size=40),
       column=st.sampled_from(["email", "phone", "company", "title"]))
def test_a_hashed_value_never_reaches_a_table_or_record_in_clear(value, column):
    hashed = FOUR_HASHED
    in_table = hashed.table(pa.table({"id": ["x"], column: [value]})).column(column)[0].as_py()
    in_record = hashed.record({"id": "x", column: value})[column]

    assert in_table == in_record  # one hash wherever the value is kept
    text = value.strip(S.HASH_TRIM_CHARACTERS)
    assert in_table == hmac_hex(text.lower() if column == "email" else text)
    if not set(value) <= set(string.hexdigits):  # hex text could occur inside a digest
        assert value not in in_table


# -- the key never shows; changed settings are refused on loaded tables ---------------------------

def test_the_key_never_shows_in_repr_the_state_or_a_refusal():
    hashed = privacy(hash_columns=["email", "phone"], exclude=["address"])
    state: dict = {}
    check_state(state, hashed, "contacts", loaded=False)
    with pytest.raises(ConfigurationError) as refused:
        check_state(state, privacy(hash_columns=["email", "phone"], key=OTHER_KEY,
                                   exclude=["address"]), "contacts", loaded=True)

    for shown in (repr(hashed), str(hashed), json.dumps(state), str(refused.value)):
        assert KEY not in shown and KEY.encode().hex() not in shown
        assert OTHER_KEY not in shown
    assert refused.value.setting == "hash_key" and "another hash_key" in str(refused.value)


def test_the_first_load_records_the_settings_and_a_run_with_the_same_ones_goes_on():
    state: dict = {}
    check_state(state, privacy(exclude=["address"]), "contacts", loaded=False)
    recorded = dict(state[S.STATE_PRIVACY])
    assert recorded["hash_columns"] == ["email"] and recorded["exclude_columns"] == ["address"]

    check_state(state, privacy(exclude=["address"]), "contacts", loaded=True)  # no error
    assert state[S.STATE_PRIVACY] == recorded


@pytest.mark.parametrize("later, setting", [
    (dict(hash_columns=["email", "phone"]), "hash_columns"),
    (dict(exclude=["address"]), "exclude_columns"),
    (dict(normalization="none"), "hash_normalization"),
    (dict(hash_columns=(), key=None), "hash_columns"),  # privacy switched off
])
def test_a_loaded_table_refuses_a_run_with_other_privacy_settings(later, setting):
    state: dict = {}
    check_state(state, privacy(), "leads", loaded=False)
    stored = dict(state[S.STATE_PRIVACY])

    with pytest.raises(ConfigurationError) as refused:
        check_state(state, privacy(**later), "leads", loaded=True)

    assert refused.value.setting == setting
    assert "`leads`" in str(refused.value) and "--full-refresh" in str(refused.value)
    assert state[S.STATE_PRIVACY] == stored  # nothing recorded over the loaded settings


def test_privacy_switched_on_after_a_clear_load_is_refused_too():
    with pytest.raises(ConfigurationError, match="no hashed or excluded column"):
        check_state({}, privacy(), "leads", loaded=True)
    state = {S.STATE_PRIVACY: {"stale": True}}
    check_state(state, Privacy(), "leads", loaded=False)  # a fresh table with privacy off
    assert S.STATE_PRIVACY not in state
