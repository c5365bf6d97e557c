"""The retired hash chain and its HMAC checkpoints (everything appended before migration 0020).

Rows appended before the transparency log carry ``prev_hash``/``row_hash`` (``LHv1``,
:mod:`audit.canonical`) and were signed by HMAC checkpoints in ``audit.checkpoints``. They are
now the first leaves of the Merkle tree, in chain order, and :mod:`audit.verify` keeps checking
their chain links and these checkpoints as well, so nothing that was provable before the upgrade
stops being provable. An HMAC signature can only be checked by the key's holder
(``LEDGERHOOK_LEGACY_HMAC_KEY``); without it verify still checks each checkpoint's chain hash.

HMAC message (``LHcp1``)::

    b"LHcp1|" + delivery_id + b"|" + row_count + b"|" + hex(chain_hash) + b"|" + created_at_us
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

import msgspec

from audit.canonical import micros
from audit.dbtypes import Conn

__all__ = ["LegacyCheckpoint", "hmac_key_id", "legacy_checkpoints", "sign", "signature_ok"]


class LegacyCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    created_at: datetime
    delivery_id: int
    chain_hash: bytes
    row_count: int
    key_id: str
    signature: bytes


def hmac_key_id(key: bytes) -> str:
    """The fingerprint the chain checkpoints recorded for their key."""
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


def signature_ok(key: bytes, cp: LegacyCheckpoint) -> bool:
    expected = sign(key, cp.delivery_id, cp.row_count, cp.chain_hash, cp.created_at)
    return cp.key_id == hmac_key_id(key) and hmac.compare_digest(expected, cp.signature)


async def legacy_checkpoints(conn: Conn) -> list[LegacyCheckpoint]:
    rows = await conn.fetch(
        "SELECT id, created_at, delivery_id, chain_hash, row_count, key_id, signature "
        "FROM audit.checkpoints ORDER BY id"
    )
    return [
        LegacyCheckpoint(
            id=r["id"],
            created_at=r["created_at"],
            delivery_id=r["delivery_id"],
            chain_hash=bytes(r["chain_hash"]),
            row_count=r["row_count"],
            key_id=r["key_id"],
            signature=bytes(r["signature"]),
        )
        for r in rows
    ]
