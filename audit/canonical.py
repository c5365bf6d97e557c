"""The canonical encodings of a delivery: the Merkle leaf (``LHleaf1``) and the legacy chain (``LHv1``).

Both are stable forever; a change means a new version tag and a verifier for both.

Leaf format ``LHleaf1`` (every delivery appended since the transparency log, migration 0020)::

    leaf_hash = SHA-256( 0x00 || b"LHleaf1" || field_1 || ... || field_16 )     (RFC 6962 leaf)

with the fields, in exactly this order,

    id, received_at_us, provider, endpoint, account, event_id, event_type, event_created,
    object_id, origin, source_address, content_type, headers_sha256, verification,
    body_sha256, body_size

encoded as below. The leaf commits to DIGESTS of the headers (SHA-256 of the exact JSON text
stored) and of the body, plus the body's size, never to their bytes: a body or its headers can
later be erased without breaking any proof, and proving one delivery needs none of the others'
bytes. ``duplicate_of`` is not in the leaf: it is derived (the first delivery of the same event
key, ``audit.events``) and ``ledgerhook verify`` checks it against that table.

Legacy chain format ``LHv1`` (rows appended before migration 0020; they are the first leaves):

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
    "LEAF_VERSION",
    "VERSION",
    "ChainFields",
    "LeafFields",
    "encode",
    "encode_leaf",
    "leaf_hash",
    "micros",
    "row_hash",
]

VERSION = b"LHv1"
LEAF_VERSION = b"LHleaf1"
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


class LeafFields(msgspec.Struct, frozen=True, kw_only=True):
    """Everything of a delivery that its Merkle leaf commits to."""

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
    headers_sha256: bytes
    verification: str
    body_sha256: bytes
    body_size: int


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


def encode_leaf(f: LeafFields) -> bytes:
    """The leaf's data (``LHleaf1``); its RFC 6962 hash is :func:`leaf_hash`."""
    return LEAF_VERSION + b"".join(
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
            f.headers_sha256,
            f.verification,
            f.body_sha256,
            f.body_size,
        )
    )


def leaf_hash(f: LeafFields) -> bytes:
    """RFC 6962 leaf hash ``SHA-256(0x00 || LHleaf1 encoding)``."""
    return hashlib.sha256(b"\x00" + encode_leaf(f)).digest()
