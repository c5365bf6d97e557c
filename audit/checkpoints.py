"""Signed checkpoints of the chain head.

A checkpoint says "row ``delivery_id`` has chain hash ``chain_hash`` and ``row_count`` rows precede
it inclusive", signed with HMAC-SHA256 under ``LEDGERHOOK_CHECKPOINT_KEY``. Whoever holds a
checkpoint (an auditor can copy it out of the system) can later prove that the prefix of the log it
covers was not rewritten: rewriting any row changes every later chain hash, and the attacker cannot
sign a new checkpoint without the key. Signed message (canonical, ``LHcp1``)::

    b"LHcp1|" + delivery_id + b"|" + row_count + b"|" + hex(chain_hash) + b"|" + created_at_us

A checkpoint is only written after the chain up to the new head verified (see
:func:`create_checkpoint`), so a signature never blesses a tampered log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec

from audit.canonical import micros
from audit.errors import CheckpointKeyError
from ledgerhook.settings import Settings

__all__ = [
    "Checkpoint",
    "create_checkpoint",
    "key_id",
    "latest_checkpoint",
    "list_checkpoints",
    "load_key",
    "sign",
    "signature_ok",
]

log = logging.getLogger(__name__)


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    created_at: datetime
    delivery_id: int
    chain_hash: bytes
    row_count: int
    key_id: str
    signature: bytes


def key_id(key: bytes) -> str:
    """A fingerprint that names a key without revealing it."""
    return hashlib.sha256(b"ledgerhook-key-id|" + key).hexdigest()[:16]


def _message(delivery_id: int, row_count: int, chain_hash: bytes, created_at: datetime) -> bytes:
    return b"|".join(
        (
            b"LHcp1",
            str(delivery_id).encode(),
            str(row_count).encode(),
            chain_hash.hex().encode(),
            str(micros(created_at)).encode(),
        )
    )


def sign(
    key: bytes, delivery_id: int, row_count: int, chain_hash: bytes, created_at: datetime
) -> bytes:
    return hmac.new(
        key, _message(delivery_id, row_count, chain_hash, created_at), "sha256"
    ).digest()


def signature_ok(key: bytes, cp: Checkpoint) -> bool:
    expected = sign(key, cp.delivery_id, cp.row_count, cp.chain_hash, cp.created_at)
    return cp.key_id == key_id(key) and hmac.compare_digest(expected, cp.signature)


def load_key(settings: Settings) -> bytes:
    """The checkpoint key: the setting, else (development only) a generated key file."""
    if settings.checkpoint_key is not None:
        return settings.checkpoint_key.reveal().encode()
    if settings.environment == "production":
        raise CheckpointKeyError("LEDGERHOOK_CHECKPOINT_KEY is required in production")
    path = Path(settings.checkpoint_key_file)
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    log.warning(
        "LEDGERHOOK_CHECKPOINT_KEY is not set: generated a development checkpoint key in %s "
        "(set the variable in production; keep the key outside the database)",
        path,
    )
    return key


_SELECT = "SELECT id, created_at, delivery_id, chain_hash, row_count, key_id, signature FROM audit.checkpoints"


def _row(r: asyncpg.Record) -> Checkpoint:
    return Checkpoint(
        id=r["id"],
        created_at=r["created_at"],
        delivery_id=r["delivery_id"],
        chain_hash=bytes(r["chain_hash"]),
        row_count=r["row_count"],
        key_id=r["key_id"],
        signature=bytes(r["signature"]),
    )


async def list_checkpoints(conn: asyncpg.Connection, *, limit: int = 100) -> list[Checkpoint]:
    return [_row(r) for r in await conn.fetch(_SELECT + " ORDER BY id DESC LIMIT $1", limit)]


async def latest_checkpoint(conn: asyncpg.Connection) -> Checkpoint | None:
    r = await conn.fetchrow(_SELECT + " ORDER BY id DESC LIMIT 1")
    return None if r is None else _row(r)


async def get_checkpoint(conn: asyncpg.Connection, checkpoint_id: int) -> Checkpoint | None:
    r = await conn.fetchrow(_SELECT + " WHERE id = $1", checkpoint_id)
    return None if r is None else _row(r)


async def create_checkpoint(conn: asyncpg.Connection, key: bytes) -> Checkpoint | None:
    """Verify from the last good checkpoint to the head, then sign the head.

    Returns None (and writes nothing) when the chain does not verify or is empty.
    """
    from audit.verify import verify_chain  # verify imports this module for signature checks

    result = await verify_chain(conn, key=key, from_latest_checkpoint=True)
    if not result.ok or result.head_id == 0:
        return None
    latest = await latest_checkpoint(conn)
    if latest is not None and latest.delivery_id == result.head_id:
        return latest
    now = datetime.now(UTC)
    signature = sign(key, result.head_id, result.head_id, result.head_hash, now)
    r = await conn.fetchrow(
        "INSERT INTO audit.checkpoints (created_at, delivery_id, chain_hash, row_count, key_id, signature) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at, delivery_id, chain_hash, row_count, key_id, signature",
        now,
        result.head_id,
        result.head_hash,
        result.head_id,
        key_id(key),
        signature,
    )
    assert r is not None
    return _row(r)
