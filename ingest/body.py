"""Reading a request body with a hard size limit, before anything else looks at it."""

from __future__ import annotations

from collections.abc import Iterable

from litestar.types import Receive

from ingest.errors import BodyTooLarge, ClientGone

__all__ = ["declared_length", "read_body"]


def declared_length(raw_headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in raw_headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(receive: Receive, limit: int, declared: int | None) -> bytes:
    """The body, refusing early on a large Content-Length and again on the bytes actually sent.

    On refusal :class:`BodyTooLarge` carries ``partial`` (what was read, at most ``limit`` bytes)
    and ``size`` (bytes seen or announced) for the rejection record.
    """
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"body is larger than {limit} bytes", size=declared)
    chunks: list[bytes] = []
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
