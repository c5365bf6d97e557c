"""Reading a request body with a hard size limit, before anything else looks at it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from litestar.types import Receive

from ingest.errors import BodyTimeout, BodyTooLarge, ClientGone, HeadersTooLarge

__all__ = ["check_headers", "declared_length", "read_body"]


def check_headers(raw_headers: list[tuple[bytes, bytes]], max_bytes: int, max_count: int) -> None:
    """Refuse oversized header sets before anything is decoded, stored or verified."""
    if len(raw_headers) > max_count:
        raise HeadersTooLarge(None, f"more than {max_count} request headers")
    total = 0
    for name, value in raw_headers:
        total += len(name) + len(value)
    if total > max_bytes:
        raise HeadersTooLarge(None, f"request headers larger than {max_bytes} bytes")


def declared_length(raw_headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in raw_headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(
    receive: Receive, limit: int, declared: int | None, within: float | None = None
) -> bytes:
    """The body, refusing early on a large Content-Length and again on the bytes actually sent,
    and cutting off a client that has not sent it all within ``within`` seconds.

    On refusal :class:`BodyTooLarge` / :class:`BodyTimeout` carry ``partial`` (what was read, at
    most ``limit`` bytes) and ``size`` (bytes seen or announced) for the rejection record.
    """
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"body is larger than {limit} bytes", size=declared)
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(within):
            return await _read(receive, limit, chunks)
    except TimeoutError:
        partial = b"".join(chunks)
        raise BodyTimeout(
            f"body not received within {within} seconds",
            partial=partial[:limit],
            size=len(partial),
        ) from None


async def _read(receive: Receive, limit: int, chunks: list[bytes]) -> bytes:
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                total += len(chunk)
                if total > limit:
                    raise BodyTooLarge(
                        f"body is larger than {limit} bytes",
                        partial=b"".join((*chunks, chunk))[:limit],
                        size=total,
                    )
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            raise ClientGone("client disconnected")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
