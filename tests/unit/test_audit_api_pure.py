"""Pure parts of the audit API: cursors, query building, filter checks, offline export rules."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.canonical import GENESIS, ChainFields, micros, row_hash
from audit.checkpoints import key_id, sign
from audit.errors import InvalidQuery
from audit.export import FORMAT, VERSION
from audit.export_verify import verify_records
from audit.repository import DeliveryFilter, decode_cursor, delivery_query, encode_cursor, page_size
from audit.tokens import looks_like_token, role_allows

KEY = b"unit-test-checkpoint-key"


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_cursor_round_trip(n: int) -> None:
    assert decode_cursor(encode_cursor(n)) == n


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!",
        "a b",
        base64.urlsafe_b64encode(b"lh1:").decode(),
        base64.urlsafe_b64encode(b"lh1:-1").decode(),
        base64.urlsafe_b64encode(b"lh2:5").decode(),
        base64.urlsafe_b64encode(b"lh1:99999999999999999999").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "A" * 33,
    ],
)
def test_malformed_cursors_are_invalid_queries(cursor: str) -> None:
    with pytest.raises(InvalidQuery, match="cursor"):
        decode_cursor(cursor)


@pytest.mark.parametrize(
    ("f", "after", "order", "fragments", "args"),
    [
        (DeliveryFilter(), None, "asc", ["WHERE TRUE", "ORDER BY d.id ASC", "LIMIT $1"], [11]),
        (
            DeliveryFilter(provider="stripe", event_type="invoice.paid"),
            5,
            "asc",
            ["d.provider = $1", "d.event_type = $2", "d.id > $3", "LIMIT $4"],
            ["stripe", "invoice.paid", 5, 11],
        ),
        (
            DeliveryFilter(duplicate=True),
            9,
            "desc",
            ["d.duplicate_of IS NOT NULL", "d.id < $1", "ORDER BY d.id DESC"],
            [9, 11],
        ),
        (DeliveryFilter(duplicate=False), None, "asc", ["d.duplicate_of IS NULL"], [11]),
        (
            DeliveryFilter(event_from=datetime(2026, 1, 1, tzinfo=UTC)),
            None,
            "asc",
            ["d.event_created >= $1"],
            [1767225600, 11],
        ),
        (
            DeliveryFilter(verification="stripe-v1"),
            None,
            "asc",
            ["split_part(d.verification, ':', 1) = $1"],
            ["stripe-v1", 11],
        ),
    ],
)
def test_delivery_query(
    f: DeliveryFilter, after: int | None, order: Any, fragments: list[str], args: list[Any]
) -> None:
    sql, bound = delivery_query(f, after=after, limit=11, order=order)
    for fragment in fragments:
        assert fragment in sql
    assert bound == args


@pytest.mark.parametrize(
    "f",
    [
        DeliveryFilter(received_from=datetime(2026, 2, 1), received_to=datetime(2026, 1, 1)),
        DeliveryFilter(event_from=datetime(2026, 1, 1), event_to=datetime(2026, 1, 1)),
        DeliveryFilter(event_id=""),
        DeliveryFilter(object_id="x" * 256),
    ],
)
def test_contradictory_filters_are_refused(f: DeliveryFilter) -> None:
    with pytest.raises(InvalidQuery):
        delivery_query(f, after=None, limit=1)


def test_page_size() -> None:
    assert page_size(None, 100, 1000) == 100
    assert page_size(1000, 100, 1000) == 1000
    for bad in (0, -1, 1001):
        with pytest.raises(InvalidQuery, match="limit"):
            page_size(bad, 100, 1000)


@pytest.mark.parametrize(
    ("have", "need", "ok"),
    [
        ("auditor", "auditor", True),
        ("auditor", "oncall", False),
        ("auditor", "admin", False),
        ("oncall", "auditor", True),
        ("oncall", "oncall", True),
        ("oncall", "admin", False),
        ("admin", "auditor", True),
        ("admin", "oncall", True),
        ("admin", "admin", True),
        ("root", "auditor", False),
    ],
)
def test_role_order(have: str, need: str, ok: bool) -> None:
    assert role_allows(have, need) is ok


@pytest.mark.parametrize(
    ("token", "ok"),
    [
        ("lh_" + "a" * 43, True),
        ("lh_" + "a" * 10, False),
        ("xx_" + "a" * 43, False),
        ("lh_" + "a" * 42 + "!", False),
        ("lh_" + "a" * 200, False),
    ],
)
def test_token_shape(token: str, ok: bool) -> None:
    assert looks_like_token(token) is ok


# ------------------------------------------------------------ offline export verification

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _chain(n: int) -> list[dict[str, Any]]:
    out = []
    prev = GENESIS
    for i in range(1, n + 1):
        body = f'{{"id":"evt_{i}"}}'.encode()
        digest = hashlib.sha256(body).digest()
        fields = ChainFields(
            id=i,
            received_at=T0 + timedelta(seconds=i),
            provider="stripe",
            endpoint="default",
            account="acct",
            event_id=f"evt_{i}",
            event_type="invoice.paid",
            event_created=1_700_000_000 + i,
            object_id=None if i % 2 else f"in_{i}",
            origin="webhook",
            source_address=None,
            content_type="application/json",
            headers="[]",
            verification="stripe-v1:key=k",
            duplicate_of=None,
            body_sha256=digest,
        )
        h = row_hash(prev, fields)
        out.append(
            {
                "type": "delivery",
                "id": i,
                "received_at_us": micros(fields.received_at),
                "received_at": fields.received_at.isoformat(),
                "provider": "stripe",
                "endpoint": "default",
                "account": "acct",
                "event_id": f"evt_{i}",
                "event_type": "invoice.paid",
                "event_created": fields.event_created,
                "object_id": fields.object_id,
                "origin": "webhook",
                "source_address": None,
                "content_type": "application/json",
                "headers": "[]",
                "verification": "stripe-v1:key=k",
                "duplicate_of": None,
                "body_sha256": digest.hex(),
                "prev_hash": prev.hex(),
                "row_hash": h.hex(),
                "body_base64": base64.b64encode(body).decode(),
            }
        )
        prev = h
    return out


def _export(
    rows: list[dict[str, Any]], *, complete: bool = True, cp_at: int | None = 3
) -> list[dict[str, Any]]:
    cp = None
    if cp_at is not None:
        row = rows[cp_at - 1] if complete else next(r for r in rows if r["id"] == cp_at)
        chain_hash = bytes.fromhex(row["row_hash"])
        created = T0 + timedelta(days=1)
        cp = {
            "id": 1,
            "created_at": created.isoformat(),
            "created_at_us": micros(created),
            "delivery_id": cp_at,
            "chain_hash": chain_hash.hex(),
            "row_count": cp_at,
            "key_id": key_id(KEY),
            "signature": sign(KEY, cp_at, cp_at, chain_hash, created).hex(),
        }
    last = rows[-1] if rows else None
    header = {
        "type": "header",
        "format": FORMAT,
        "version": VERSION,
        "complete": complete,
        "checkpoint": cp,
    }
    trailer = {
        "type": "trailer",
        "rows": len(rows),
        "head": {"id": last["id"] if last else 0, "row_hash": last["row_hash"] if last else None},
        "checkpoint": cp,
    }
    return [header, *rows, trailer]


def test_intact_export_verifies_with_and_without_key() -> None:
    records = _export(_chain(6))
    res = verify_records(records, KEY)
    assert res.ok and res.rows == 6 and res.complete and "signature verified" in res.signature
    assert "not checked: no key" in verify_records(records, None).signature
    assert not verify_records(records, b"other key").ok
    assert verify_records(_export([], cp_at=None), KEY).ok


def test_filtered_export_verifies_rows_it_has() -> None:
    rows = _chain(8)
    subset = [rows[1], rows[2], rows[5]]
    assert verify_records(_export(subset, complete=False, cp_at=3), KEY).ok
    # A filtered export must not claim to be complete.
    assert not verify_records(_export(subset, complete=True, cp_at=None), KEY).ok


def _set(index: int, **changes: Any) -> Callable[[list[dict[str, Any]]], None]:
    def go(records: list[dict[str, Any]]) -> None:
        records[index] = {**records[index], **changes}

    return go


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (_set(2, event_type="invoice.voided"), "row modified"),
        (_set(2, object_id=""), "row modified"),  # NULL and "" differ
        (_set(2, received_at_us=1), "row modified"),
        (_set(2, body_base64=base64.b64encode(b"{}").decode()), "body modified"),
        (_set(2, body_base64="not base64!"), "base64"),
        (_set(2, row_hash="00" * 32), "row modified"),
        (_set(2, prev_hash="11" * 32), "row modified"),
        (lambda r: r.pop(3), "missing"),
        (lambda r: r.__setitem__(slice(2, 4), [r[3], r[2]]), "missing"),
        (lambda r: r.pop(-1), "truncated"),
        (lambda r: r.pop(-2), "trailer says"),
        (lambda r: (r.pop(-2), r[-1].update(rows=5)), "head"),
        (lambda r: r.insert(3, dict(r[3])), "reordered or repeated"),
        (_set(-1, rows=99), "trailer says"),
        (lambda r: r.pop(0), "header"),
        (lambda r: r.append({"type": "delivery"}), "after the trailer"),
        (_set(0, format="other"), "not a"),
    ],
)
def test_tampering_is_detected(mutate: Callable[[list[dict[str, Any]]], None], reason: str) -> None:
    records = _export(_chain(6))
    mutate(records)
    res = verify_records(records, KEY)
    assert not res.ok
    assert reason in (res.reason or ""), res.reason


def test_forged_checkpoint_is_detected() -> None:
    records = _export(_chain(6))
    cp = dict(records[0]["checkpoint"])
    cp["row_count"] = 2
    records[0] = {**records[0], "checkpoint": cp}
    records[-1] = {**records[-1], "checkpoint": cp}
    assert not verify_records(records, KEY).ok
