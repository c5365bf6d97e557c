"""The canonical encoding of an audit row, and the chain hash built on it.

Format ``LHv1`` (stable forever; a change means a new version tag and a verifier for both):

    row_hash = SHA-256( prev_hash || b"LHv1" || field_1 || field_2 || ... || field_15 )

where each field, in exactly this order,

    id, received_at_us, provider, endpoint, account, event_id, event_type, event_created,
    object_id, origin, source_address, content_type, headers, verification, duplicate_of,
    body_sha256

is encoded as ``b"\\x00"`` when absent (NULL), else ``b"\\x01" + len(value) as 4-byte big-endian
+ value``, with integers as their decimal ASCII digits, text as UTF-8, ``received_at_us`` as
microseconds since the Unix epoch in UTC, ``headers`` as the exact JSON text stored, and
``body_sha256`` as the 32 raw digest bytes. The body itself enters through its digest; the
verifier recomputes the digest from the stored bytes. Length prefixes make the encoding
unambiguous: no two different rows encode to the same bytes.

The first row's ``prev_hash`` is 32 zero bytes (:data:`GENESIS`).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import msgspec

__all__ = [
    "GENESIS",
    "VERSION",
    "ChainFields",
    "encode",
    "encode_fixed",
    "micros",
    "row_hash",
    "row_hash_from_parts",
]

VERSION = b"LHv1"
GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ChainFields(msgspec.Struct, frozen=True, kw_only=True):
    """Everything of a delivery row that the chain covers (the body through its digest)."""

    id: int
    received_at: datetime
    provider: str
    endpoint: str
    account: str
    event_id: str
    event_type: str
    event_created: int
    object_id: str | None
    origin: str
    source_address: str | None
    content_type: str | None
    headers: str
    verification: str
    duplicate_of: int | None
    body_sha256: bytes


def micros(ts: datetime) -> int:
    """Exact microseconds since the epoch (no float on the way: PostgreSQL keeps microseconds)."""
    if ts.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _field(value: bytes | str | int | None) -> bytes:
    if value is None:
        return b"\x00"
    if isinstance(value, int):
        raw = str(value).encode("ascii")
    elif isinstance(value, str):
        raw = value.encode("utf-8")
    else:
        raw = value
    return b"\x01" + len(raw).to_bytes(4, "big") + raw


def encode(f: ChainFields) -> bytes:
    return VERSION + b"".join(
        _field(v)
        for v in (
            f.id,
            micros(f.received_at),
            f.provider,
            f.endpoint,
            f.account,
            f.event_id,
            f.event_type,
            f.event_created,
            f.object_id,
            f.origin,
            f.source_address,
            f.content_type,
            f.headers,
            f.verification,
            f.duplicate_of,
            f.body_sha256,
        )
    )


def row_hash(prev_hash: bytes, fields: ChainFields) -> bytes:
    return hashlib.sha256(prev_hash + encode(fields)).digest()


def encode_fixed(
    *,
    received_at: datetime,
    provider: str,
    endpoint: str,
    account: str,
    event_id: str,
    event_type: str,
    event_created: int,
    object_id: str | None,
    origin: str,
    source_address: str | None,
    content_type: str | None,
    headers: str,
    verification: str,
) -> bytes:
    """Fields 2-14 of :func:`encode` (``received_at_us`` .. ``verification``), already encoded.

    They do not depend on the row's place in the chain, so an appender encodes them before it
    takes the chain lock and finishes with :func:`row_hash_from_parts`: same bytes, same hash.
    """
    return b"".join(
        (
            _field(micros(received_at)),
            _field(provider),
            _field(endpoint),
            _field(account),
            _field(event_id),
            _field(event_type),
            _field(event_created),
            _field(object_id),
            _field(origin),
            _field(source_address),
            _field(content_type),
            _field(headers),
            _field(verification),
        )
    )


def row_hash_from_parts(
    prev_hash: bytes, id: int, fixed: bytes, duplicate_of: int | None, body_sha256: bytes
) -> bytes:
    """:func:`row_hash` with fields 2-14 given pre-encoded by :func:`encode_fixed`."""
    return hashlib.sha256(
        b"".join((prev_hash, VERSION, _field(id), fixed, _field(duplicate_of), _field(body_sha256)))
    ).digest()
