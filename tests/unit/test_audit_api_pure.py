"""Pure parts of the audit API: cursors, query building, filter checks, token rules."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.errors import InvalidQuery
from audit.repository import DeliveryFilter, decode_cursor, delivery_query, encode_cursor, page_size
from audit.tokens import looks_like_token, role_allows


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
