"""Generated data: shape, determinism, mess, extra fields, speed."""

from __future__ import annotations

import re
from collections import Counter

from rackwave_sandbox import RunningServer, Sandbox, SandboxConfig
from rackwave_sandbox.data import SEED_END, SEED_START, is_ulid, parse_ts, ulid_time_ms

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
COUNTRY = re.compile(r"^[A-Z]{2}$")


def _raw(sandbox: Sandbox, kind: str) -> list[bytes]:
    return sandbox.state.store.collections[kind].raw_records()


def test_same_seed_gives_byte_identical_records() -> None:
    a, b = Sandbox(SandboxConfig(leads=500, contacts=300, seed=7)), Sandbox(SandboxConfig(leads=500, contacts=300, seed=7))
    c = Sandbox(SandboxConfig(leads=500, contacts=300, seed=8))
    for kind in ("leads", "contacts"):
        assert _raw(a, kind) == _raw(b, kind)
        assert _raw(a, kind) != _raw(c, kind)


def test_lead_shape_and_types(sandbox: RunningServer) -> None:
    leads = sandbox.admin.records("leads")
    types = {"id": str, "name": str, "email": str, "status": str, "source": str, "tags": list,
             "score": int, "created_at": str, "updated_at": str}
    for lead in leads:
        for field, kind in types.items():
            assert isinstance(lead[field], kind), (field, lead)
        assert lead["phone"] is None or isinstance(lead["phone"], str)
        assert lead["company"] is None or isinstance(lead["company"], str)
        assert "owner_id" not in lead or isinstance(lead["owner_id"], str)
        assert lead["id"].startswith("lead_") and is_ulid(lead["id"][5:])
        assert ulid_time_ms(lead["id"][5:]) // 1000 == parse_ts(lead["created_at"])
        assert TS.match(lead["created_at"]) and TS.match(lead["updated_at"])
        assert lead["updated_at"] >= lead["created_at"]
        assert SEED_START <= parse_ts(lead["created_at"]) < SEED_END
        assert all(isinstance(t, str) for t in lead["tags"])


def test_contact_shape_and_lead_links(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=300, contacts=400)
    lead_ids = set(server.admin.ids("leads"))
    contacts = server.admin.records("contacts")
    linked = 0
    for contact in contacts:
        assert contact["id"].startswith("contact_") and is_ulid(contact["id"][8:])
        assert ulid_time_ms(contact["id"][8:]) // 1000 == parse_ts(contact["created_at"])
        for field in ("first_name", "last_name", "email", "created_at", "updated_at"):
            assert isinstance(contact[field], str)
        assert set(contact["address"]) == {"street", "city", "postcode", "country"}
        assert COUNTRY.match(contact["address"]["country"])
        assert isinstance(contact["tags"], list)
        assert contact["updated_at"] >= contact["created_at"]
        if contact["lead_id"] is not None:
            assert contact["lead_id"] in lead_ids
            linked += 1
        assert "linkedin_url" not in contact or contact["linkedin_url"].startswith("https://")
    assert 0.2 < linked / len(contacts) < 0.4


def test_real_world_mess_is_present(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    server = sandbox_factory(leads=2000, contacts=1000)
    leads = server.admin.records("leads")
    contacts = server.admin.records("contacts")
    names = " ".join(lead["name"] for lead in leads)
    for char in ("é", "ø", "å", "'", "王"):
        assert char in names, char
    assert 0.15 < sum(lead["phone"] is None for lead in leads) / len(leads) < 0.25
    assert 0.10 < sum(lead["company"] is None for lead in leads) / len(leads) < 0.20
    assert 0.01 < sum(n for n in Counter(lead["created_at"] for lead in leads).values() if n > 1) / len(leads) < 0.15
    assert any("owner_id" in lead for lead in leads) and any("owner_id" not in lead for lead in leads)
    assert any("linkedin_url" in c for c in contacts) and any("linkedin_url" not in c for c in contacts)
    assert len({lead["email"].lower() for lead in leads}) == len(leads)
