"""The canonical row encoding and chain hash, from tables (no I/O)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from audit.canonical import GENESIS, ChainFields, encode, micros, row_hash

BASE = ChainFields(
    id=1,
    received_at=datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC),
    provider="stripe",
    endpoint="default",
    account="acct_1",
    event_id="evt_1",
    event_type="invoice.paid",
    event_created=1_764_072_000,
    object_id="in_1",
    origin="webhook",
    source_address="127.0.0.1",
    content_type="application/json",
    headers='[["content-type","application/json"]]',
    verification="stripe-v1:key=abc",
    duplicate_of=None,
    body_sha256=hashlib.sha256(b"{}").digest(),
)


def test_encoding_is_pinned() -> None:
    # The exact bytes are part of the audit contract: changing them breaks every stored chain.
    assert encode(BASE)[:4] == b"LHv1"
    assert encode(BASE)[4:14] == b"\x01\x00\x00\x00\x011\x01\x00\x00\x00"
    assert row_hash(GENESIS, BASE).hex() == hashlib.sha256(GENESIS + encode(BASE)).hexdigest()


@pytest.mark.parametrize(
    "change",
    [
        {"id": 2},
        {"received_at": BASE.received_at + timedelta(microseconds=1)},
        {"provider": "chargebee"},
        {"endpoint": "eu"},
        {"account": "acct_2"},
        {"event_id": "evt_2"},
        {"event_type": "invoice.created"},
        {"event_created": 1_764_072_001},
        {"object_id": None},
        {"object_id": ""},
        {"origin": "reconciliation"},
        {"source_address": None},
        {"content_type": None},
        {"headers": "[]"},
        {"verification": "stripe-v1:key=abd"},
        {"duplicate_of": 1},
        {"body_sha256": hashlib.sha256(b"{ }").digest()},
    ],
)
def test_every_field_changes_the_hash(change: dict[str, object]) -> None:
    import msgspec

    changed = msgspec.structs.replace(BASE, **change)  # type: ignore[arg-type]
    assert row_hash(GENESIS, changed) != row_hash(GENESIS, BASE)


def test_prev_hash_changes_the_hash() -> None:
    assert row_hash(b"\x01" * 32, BASE) != row_hash(GENESIS, BASE)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # Moving bytes between adjacent fields must not collide (length prefixes).
        ({"endpoint": "ab", "account": "c"}, {"endpoint": "a", "account": "bc"}),
        ({"object_id": None}, {"object_id": ""}),
        ({"event_id": "1", "event_type": "23"}, {"event_id": "12", "event_type": "3"}),
    ],
)
def test_no_ambiguity_between_fields(a: dict[str, object], b: dict[str, object]) -> None:
    import msgspec

    assert encode(msgspec.structs.replace(BASE, **a)) != encode(msgspec.structs.replace(BASE, **b))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), 0),
        (datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC), 1_000_005),
        (datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=2))), 1_795_600_800_000_000),
        (datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), -1),
    ],
)
def test_micros(ts: datetime, expected: int) -> None:
    assert micros(ts) == expected


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        micros(datetime(2026, 1, 1))
