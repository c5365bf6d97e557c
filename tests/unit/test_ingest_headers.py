"""Stored headers: received order, exact values, credentials redacted."""

from __future__ import annotations

import msgspec
import pytest

from ingest.headers import REDACTED, header_map, headers_json, is_credential


def test_order_values_and_redaction() -> None:
    raw = [
        (b"host", b"example.com"),
        (b"authorization", b"Basic Y2I6cHc="),
        (b"stripe-signature", b"t=1,v1=ab"),
        (b"cookie", b"session=1"),
        (b"x-custom", b"caf\xe9"),
        (b"x-custom", b"second"),
    ]
    stored = msgspec.json.decode(headers_json(raw))
    assert stored == [
        ["host", "example.com"],
        ["authorization", REDACTED],
        ["stripe-signature", "t=1,v1=ab"],
        ["cookie", REDACTED],
        ["x-custom", "café"],
        ["x-custom", "second"],
    ]
    assert header_map(raw)["x-custom"] == "café"  # first occurrence wins


@pytest.mark.parametrize(
    ("name", "credential"),
    [
        ("Authorization", True),
        ("proxy-authorization", True),
        ("Cookie", True),
        ("x-api-key", True),
        ("x-webhook-secret", True),
        ("x-auth-token", True),
        ("stripe-signature", False),
        ("content-type", False),
        ("user-agent", False),
    ],
)
def test_is_credential(name: str, credential: bool) -> None:
    assert is_credential(name) is credential
