"""Header and slow-body bounds on the webhook edge (pure; the HTTP side is in test_hostile_http)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from ingest.body import check_headers, read_body
from ingest.errors import BodyTimeout, HeadersTooLarge
from ingest.headers import bounded_headers


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ([(b"content-type", b"application/json")], False),
        ([(b"x", b"v" * 16_000)], False),
        ([(b"x", b"v" * 16_400)], True),
        ([(f"h{i}".encode(), b"v") for i in range(100)], False),
        ([(f"h{i}".encode(), b"v") for i in range(101)], True),
        ([(b"stripe-signature", b"t=1," + b"v1=00," * 5000)], True),
    ],
)
def test_check_headers(headers: list[tuple[bytes, bytes]], refused: bool) -> None:
    if refused:
        with pytest.raises(HeadersTooLarge) as info:
            check_headers(headers, 16 * 1024, 100)
        assert info.value.reason == "headers_too_large"
    else:
        check_headers(headers, 16 * 1024, 100)


def test_bounded_headers_keep_a_small_record() -> None:
    flood = [(f"x-h{i}".encode(), b"v" * 4000) for i in range(5000)]
    kept = bounded_headers(flood, 16 * 1024)
    assert sum(len(n) + len(v) for n, v in kept) < 17 * 1024
    assert kept[-1][0] == b"x-ledgerhook-truncated"
    assert msgspec.json.encode([[n.decode(), v.decode()] for n, v in kept])  # storable


async def test_slow_body_is_cut_off() -> None:
    async def trickle() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"type": "http.request", "body": b"{", "more_body": True}

    with pytest.raises(BodyTimeout) as info:
        await read_body(trickle, 1024, None, within=0.3)
    assert info.value.reason == "body_timeout"
    assert 0 < info.value.size <= 10
    assert info.value.partial.startswith(b"{")


async def test_prompt_body_is_read() -> None:
    parts = [b'{"a":', b"1}"]

    async def receive() -> dict[str, Any]:
        chunk = parts.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    assert await read_body(receive, 1024, None, within=1.0) == b'{"a":1}'
