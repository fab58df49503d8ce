"""Deterministic generation of realistic, messy lead and contact records.

The generator is a plain function of ``(kind, count, seed)`` so that the same
seed always produces byte-identical records; tests and benchmarks rely on that.
Records are yielded one by one so that the store can serialise each record and
drop the dict immediately, which keeps 1,000,000 leads within a modest memory
budget.
"""

from __future__ import annotations

import calendar
import random
from base64 import b32encode
import time
from collections.abc import Iterator, Sequence
from typing import Any

from rackwave_sandbox.config import ID_PREFIXES, LEAD_SOURCES, LEAD_STATUSES

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_SET = frozenset(CROCKFORD)
_B32_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", CROCKFORD.encode("ascii"))
_DAY_PREFIX: dict[int, str] = {}

#: Seeded records are created within [SEED_START, SEED_END): safely in the past.
SEED_START = calendar.timegm((2024, 1, 1, 0, 0, 0, 0, 0, 0))
SEED_END = calendar.timegm((2026, 6, 30, 0, 0, 0, 0, 0, 0))

#: Share of seeded records that reuse the created_at second of an earlier one.
SHARED_SECOND_RATE = 0.03

# (display, ascii slug) pairs: accents, Nordic letters, apostrophes and CJK.
_FIRST: tuple[tuple[str, str], ...] = (
    ("Jane", "jane"), ("John", "john"), ("José", "jose"), ("Zoë", "zoe"),
    ("Björn", "bjorn"), ("Søren", "soren"), ("Åsa", "asa"), ("Łukasz", "lukasz"),
    ("François", "francois"), ("Siobhán", "siobhan"), ("Chloé", "chloe"),
    ("Mårten", "marten"), ("Ægir", "aegir"), ("Renée", "renee"), ("Mia", "mia"),
    ("Oliver", "oliver"), ("Priya", "priya"), ("Mohammed", "mohammed"),
    ("Noémie", "noemie"), ("Jürgen", "jurgen"), ("Dağhan", "daghan"),
    ("Ingrid", "ingrid"), ("Liam", "liam"), ("Ana-María", "ana-maria"),
)
_LAST: tuple[tuple[str, str], ...] = (
    ("Smith", "smith"), ("O'Brien", "obrien"), ("D'Angelo", "dangelo"),
    ("Müller", "muller"), ("Øvergaard", "overgaard"), ("Sørensen", "sorensen"),
    ("Núñez", "nunez"), ("Håkansson", "hakansson"), ("García", "garcia"),
    ("Kowalczyk", "kowalczyk"), ("Lefèvre", "lefevre"), ("Ní Bhriain", "nibhriain"),
    ("van der Berg", "vanderberg"), ("Jónsdóttir", "jonsdottir"), ("Brown", "brown"),
    ("Patel", "patel"), ("Nguyễn", "nguyen"), ("Çelik", "celik"), ("Öztürk", "ozturk"),
)
_CJK: tuple[tuple[str, str, str], ...] = (
    ("伟", "王", "wang"), ("芳", "李", "li"), ("翔太", "佐藤", "sato"),
    ("美咲", "鈴木", "suzuki"), ("민준", "김", "kim"), ("서연", "이", "lee"),
)
_COMPANIES: tuple[str, ...] = (
    "Acme Corp", "Müller GmbH", "Ærø Shipping ApS", "株式会社サンプル",
    "O'Reilly & Sons", "Société Générale d'Études", "Nordisk Løsning AS",
    "Globex Ltd", "Initech", "Björk & Partners", "Zürich Data AG",
    "北京数据有限公司", "Façade Studios", "Umbrella plc", "Stark Industries",
    "Hooli", "Ōsaka Trading K.K.", "Kraków Software Sp. z o.o.",
)
_DOMAINS: tuple[str, ...] = (
    "example.com", "example.org", "mail.example.net", "acme.example",
    "müller.example", "corp.example.co.uk",
)
_TAGS: tuple[str, ...] = (
    "enterprise", "smb", "uk", "eu", "us", "apac", "hot", "cold",
    "newsletter", "trial", "partner", "vip", "événement", "prio-1",
)
_TITLES: tuple[str, ...] = (
    "CEO", "CTO", "Head of Sales", "Account Executive", "Data Engineer",
    "Directeur Général", "Innkjøpssjef", "マネージャー", "VP Marketing", "Intern",
)
_CITIES: tuple[tuple[str, str, str], ...] = (
    ("London", "GB", "EC1A 1BB"), ("Berlin", "DE", "10115"), ("Paris", "FR", "75001"),
    ("Stockholm", "SE", "111 22"), ("Oslo", "NO", "0150"), ("København", "DK", "1050"),
    ("São Paulo", "BR", "01000-000"), ("東京", "JP", "100-0001"), ("New York", "US", "10001"),
    ("Kraków", "PL", "30-001"), ("Reykjavík", "IS", "101"), ("Zürich", "CH", "8001"),
)
_STREETS: tuple[str, ...] = (
    "High Street", "Hauptstraße", "Rue de l'Église", "Storgatan", "Karl Johans gate",
    "Rua Augusta", "Main St", "ul. Floriańska", "Bahnhofstrasse", "Laugavegur",
)
_COUNTRY_CODES: tuple[tuple[str, int], ...] = (
    ("+44", 10), ("+1", 10), ("+49", 10), ("+33", 9), ("+46", 9), ("+47", 8), ("+81", 10),
)


def encode_ulid(ms: int, rand80: int) -> str:
    """Encode a 48-bit millisecond timestamp and 80 random bits as a ULID.

    Args:
        ms: Milliseconds since the epoch (the ULID time part).
        rand80: 80 random bits.

    Returns:
        The 26-character Crockford base32 string.
    """
    value = ((ms & 0xFFFFFFFFFFFF) << 80) | (rand80 & ((1 << 80) - 1))
    # 160 bits = 32 base32 digits aligned on the low end; the last 26 are the ULID.
    return b32encode(value.to_bytes(20, "big"))[6:].translate(_B32_TO_CROCKFORD).decode("ascii")


def ulid_time_ms(ulid: str) -> int:
    """Decode the millisecond time part of a 26-character ULID."""
    value = 0
    for ch in ulid[:10]:
        value = value * 32 + CROCKFORD.index(ch)
    return value


def ulid_successor(ulid: str, step: int) -> str:
    """Return the ULID ``step`` above ``ulid`` (same length, sorts after it).

    Used to keep records created within the same millisecond in creation
    order, as monotonic ULID generators do. The time part only changes if the
    80 random bits overflow, which a random ULID does with negligible odds.
    """
    value = 0
    for ch in ulid:
        value = value * 32 + CROCKFORD.index(ch)
    value += step
    return encode_ulid(value >> 80, value)


def is_ulid(value: str) -> bool:
    """Return True if ``value`` is a syntactically valid 26-character ULID."""
    return len(value) == 26 and value[0] in "01234567" and set(value) <= _CROCKFORD_SET


def format_ts(ts: int) -> str:
    """Format epoch seconds as ISO 8601 UTC with ``Z`` and second precision.

    The date part is cached per day: formatting is on the hot path of
    generating a million records.
    """
    day, seconds = divmod(ts, 86400)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
        _DAY_PREFIX[day] = prefix
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{prefix}{hours:02d}:{minutes:02d}:{secs:02d}Z"


def parse_ts(value: str) -> int:
    """Parse the sandbox timestamp format (and common ISO variants) to epoch seconds.

    Raises:
        ValueError: If the value is not an ISO 8601 UTC timestamp.
    """
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    from datetime import datetime, timezone

    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp())


def _phone(rng: random.Random) -> str:
    code, digits = _COUNTRY_CODES[int(rng.random() * len(_COUNTRY_CODES))]
    number = str(rng.randrange(10 ** (digits - 1), 10**digits))
    if rng.random() < 0.1:
        # Real-world mess: human formatting as shown in the public docs example.
        return f"{code} {number[:4]} {number[4:]}"
    return code + number


def _person(rng: random.Random) -> tuple[str, str, str, str]:
    """Return (first, last, first_slug, last_slug)."""
    if rng.random() < 0.08:
        first, last, slug = _CJK[int(rng.random() * len(_CJK))]
        return first, last, "user", slug
    first, fslug = _FIRST[int(rng.random() * len(_FIRST))]
    last, lslug = _LAST[int(rng.random() * len(_LAST))]
    return first, last, fslug, lslug


def _email(rng: random.Random, fslug: str, lslug: str, index: int) -> str:
    domain = _DOMAINS[int(rng.random() * len(_DOMAINS))]
    email = f"{fslug}.{lslug}{index}@{domain}"
    if rng.random() < 0.05:
        # Mixed case: uniqueness must be case-insensitive.
        email = email[:1].upper() + email[1:]
    return email


def _tags(rng: random.Random) -> list[str]:
    count = int(rng.random() * 4)
    return rng.sample(_TAGS, count) if count else []


def _updated(rng: random.Random, created: int, cap: int) -> int:
    if rng.random() < 0.6:
        return created
    return max(created, min(cap, created + rng.randrange(0, 90 * 86400)))


def make_id(kind: str, rng: random.Random, created: int, ms: int | None = None) -> str:
    """Build a prefixed ULID whose time part lies inside the ``created`` second."""
    if ms is None or ms // 1000 != created:
        ms = created * 1000 + rng.randrange(1000)
    return ID_PREFIXES[kind] + encode_ulid(ms, rng.getrandbits(80))


def make_lead(
    rng: random.Random, created: int, index: int, *, updated_cap: int, ms: int | None = None
) -> dict[str, Any]:
    """Generate one lead dict (field order is part of the byte-identical contract)."""
    first, last, fslug, lslug = _person(rng)
    lead: dict[str, Any] = {
        "id": make_id("leads", rng, created, ms),
        "name": f"{first} {last}" if fslug != "user" else f"{last}{first}",
        "email": _email(rng, fslug, lslug, index),
        "phone": None if rng.random() < 0.2 else _phone(rng),
        "company": None if rng.random() < 0.15 else _COMPANIES[int(rng.random() * len(_COMPANIES))],
        "status": LEAD_STATUSES[int(rng.random() * len(LEAD_STATUSES))],
        "source": LEAD_SOURCES[int(rng.random() * len(LEAD_SOURCES))],
        "tags": _tags(rng),
        "score": rng.randrange(0, 101),
    }
    if rng.random() < 0.35:
        lead["owner_id"] = f"usr_{rng.randrange(1, 50):04d}"
    lead["created_at"] = format_ts(created)
    lead["updated_at"] = format_ts(_updated(rng, created, updated_cap))
    return lead


def make_contact(
    rng: random.Random,
    created: int,
    index: int,
    lead_ids: Sequence[str],
    *,
    updated_cap: int,
    ms: int | None = None,
) -> dict[str, Any]:
    """Generate one contact dict; ~30% reference an existing lead id."""
    first, last, fslug, lslug = _person(rng)
    city, country, postcode = _CITIES[int(rng.random() * len(_CITIES))]
    contact: dict[str, Any] = {
        "id": make_id("contacts", rng, created, ms),
        "first_name": first,
        "last_name": last,
        "email": _email(rng, fslug, lslug, index),
        "phone": None if rng.random() < 0.2 else _phone(rng),
        "company": None if rng.random() < 0.15 else _COMPANIES[int(rng.random() * len(_COMPANIES))],
        "title": _TITLES[int(rng.random() * len(_TITLES))],
        "lead_id": lead_ids[int(rng.random() * len(lead_ids))]
        if lead_ids and rng.random() < 0.3
        else None,
        "tags": _tags(rng),
        "address": {
            "street": f"{rng.randrange(1, 300)} {_STREETS[int(rng.random() * len(_STREETS))]}",
            "city": city,
            "postcode": postcode,
            "country": country,
        },
    }
    if rng.random() < 0.25:
        contact["linkedin_url"] = f"https://www.linkedin.com/in/{fslug}-{lslug}-{index}"
    contact["created_at"] = format_ts(created)
    contact["updated_at"] = format_ts(_updated(rng, created, updated_cap))
    return contact


def _seeded_timestamps(rng: random.Random, count: int) -> list[int]:
    span = SEED_END - SEED_START
    stamps = [SEED_START + int(rng.random() * span) for _ in range(count)]
    for i in range(1, count):
        if rng.random() < SHARED_SECOND_RATE:
            stamps[i] = stamps[int(rng.random() * i)]
    return stamps


def iter_records(
    kind: str, count: int, seed: int, lead_ids: Sequence[str] = ()
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``count`` seeded records of ``kind`` deterministically.

    Args:
        kind: ``"leads"`` or ``"contacts"``.
        count: Number of records.
        seed: Generator seed; string-seeded so that it is stable across runs.
        lead_ids: Lead ids that contacts may reference.

    Yields:
        ``(created_at as epoch seconds, record)`` in generation order (not API
        order); the number saves the store from parsing the timestamp again.
    """
    rng = random.Random(f"rackwave:{kind}:{seed}")
    stamps = _seeded_timestamps(rng, count)
    for index, created in enumerate(stamps):
        if kind == "leads":
            yield created, make_lead(rng, created, index, updated_cap=SEED_END)
        else:
            yield created, make_contact(rng, created, index, lead_ids, updated_cap=SEED_END)


def generate_record(
    kind: str,
    rng: random.Random,
    index: int,
    lead_ids: Sequence[str] = (),
    created_at: str | None = None,
) -> dict[str, Any]:
    """Generate one record at runtime (admin inserts, triggers).

    ``created_at`` defaults to the real current time, so that records added
    while a client pages appear at the top of the newest-first ordering.
    """
    now_ms = int(time.time() * 1000)
    if created_at is None:
        created = now_ms // 1000
        ms: int | None = now_ms
    else:
        created = parse_ts(created_at)
        ms = None
    cap = max(created, now_ms // 1000)
    if kind == "leads":
        record = make_lead(rng, created, index, updated_cap=cap, ms=ms)
    else:
        record = make_contact(rng, created, index, lead_ids, updated_cap=cap, ms=ms)
    record["updated_at"] = record["created_at"]
    return record
