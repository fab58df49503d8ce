"""The rules a row meets before it is pushed, and the journal's memory of what was sent (a real
SQLite file; no HTTP)."""

from __future__ import annotations

import pytest

from rackwave_source import settings as S
from rackwave_source.push.journal import PushJournal
from rackwave_source.push.rows import ignored_columns, prepare_row

SEPARATORS = S.DEFAULT_PUSH_PHONE_SEPARATORS
GOOD = {"name": " Jane Smith ", "email": "Jane@Company.com", "phone": "+44 7700 900000",
        "company": "Acme", "source": "api", "status": "new", "tags": '["enterprise", "uk"]'}


def test_a_good_row_becomes_the_documented_body_keyed_by_its_email_without_case():
    row = prepare_row(GOOD, SEPARATORS)
    assert row.valid and row.key == "jane@company.com"
    assert row.body == {"name": "Jane Smith", "email": "Jane@Company.com",
                        "phone": "+447700900000", "company": "Acme", "source": "api",
                        "status": "new", "tags": ["enterprise", "uk"]}


@pytest.mark.parametrize("field, value, problem", [
    ("name", None, "required"),
    ("name", "   ", "required"),
    ("email", "jane.company.com", "valid email"),
    ("phone", "07700 900000", "E.164"),
    ("phone", 447700900000, "text"),
    ("source", "fax", "api, website, referral, manual"),
    ("status", "hot", "new, contacted, qualified, won, lost"),
    ("tags", "enterprise, uk", "array of strings"),
    ("tags", [1, 2], "array of strings"),
])
def test_each_documented_rule_names_the_field_and_what_it_takes(field, value, problem):
    row = prepare_row({**GOOD, field: value}, SEPARATORS)
    assert not row.valid and list(row.errors) == [field] and problem in row.errors[field][0]


def test_empty_optional_values_are_left_out_and_a_variant_column_stands_for_its_field():
    row = prepare_row({"name": "A", "email": "a@b.co", "phone": float("nan"), "company": "",
                       "tags": None, "source__v_text": "website"}, SEPARATORS)
    assert row.valid and row.body == {"name": "A", "email": "a@b.co", "source": "website"}


def test_phone_separators_are_a_setting():
    assert not prepare_row({**GOOD, "phone": "+44 7700 900000"}, "").valid


def test_a_row_with_no_usable_email_is_keyed_by_its_content():
    first = prepare_row({**GOOD, "email": None}, SEPARATORS)
    changed = prepare_row({**GOOD, "email": None, "name": "Other"}, SEPARATORS)
    assert first.key.startswith("row:") and first.key != changed.key


def test_columns_that_are_no_body_field_are_reported():
    assert ignored_columns(["name", "score", "_dlt_id", "tags__v_json", "id"]) == ["score", "id"]


def test_the_journal_remembers_outcomes_and_counts_attempts_left_pending(tmp_path):
    journal = PushJournal(str(tmp_path / "j.sqlite"))
    row = prepare_row(GOOD, SEPARATORS)
    assert journal.settled(row) is None
    assert journal.begin(row, "load-1") == 0
    reopened = PushJournal(str(tmp_path / "j.sqlite"))  # a killed push: the pending mark stays
    assert reopened.begin(row, "load-2") == 1 and reopened.pending() == 1
    reopened.finish(row, "created", "lead_1", None, "load-2")
    changed = prepare_row({**GOOD, "company": "Other"}, SEPARATORS)
    assert reopened.settled(changed).lead_id == "lead_1"  # created stands whatever the content
    assert [o.key for o in reopened.unlogged()] == [row.key]
    reopened.mark_logged(reopened.unlogged())
    assert reopened.unlogged() == []


def test_a_rejected_row_stands_only_while_its_content_is_the_same(tmp_path):
    journal = PushJournal(str(tmp_path / "j.sqlite"))
    bad = prepare_row({**GOOD, "phone": "123"}, SEPARATORS)
    journal.finish(bad, "rejected", None, bad.errors, "load-1")
    assert journal.settled(bad) is not None
    assert journal.settled(prepare_row(GOOD, SEPARATORS)) is None


def test_seeding_takes_only_rows_the_journal_does_not_know(tmp_path):
    one = PushJournal(str(tmp_path / "one.sqlite"))
    row = prepare_row(GOOD, SEPARATORS)
    outcome = one.finish(row, "existing", "lead_9", None, "load-1")
    other = PushJournal(str(tmp_path / "other.sqlite"))
    assert other.seed([outcome]) == 1 and other.seed([outcome]) == 0
    assert other.settled(row).status == "existing" and other.unlogged() == []
