"""Walking the hash chain: the proof that no row was modified, deleted, inserted or reordered.

The walk reads every row in chain order (``id``, then ``received_at`` so duplicated ids show up)
inside one REPEATABLE READ snapshot and checks, for each row:

- its id is the previous id + 1 (a gap is a deletion; a repeat is an insertion);
- its ``prev_hash`` equals the previous row's hash (reordering and splicing break this);
- the SHA-256 of the stored body equals ``body_sha256`` (a modified body);
- ``row_hash`` equals the hash recomputed from the row (any modified column);
- at every checkpoint's position, the hash equals the checkpoint's, and the signature is valid.

It stops at the first broken row and names it. Starting from a checkpoint skips the rows before
it but first checks the checkpoint's signature: an unsigned starting point proves nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import asyncpg
import msgspec

from audit.canonical import GENESIS, ChainFields, row_hash
from audit.checkpoints import Checkpoint, get_checkpoint, latest_checkpoint, signature_ok

__all__ = ["VerifyResult", "verify_chain"]


class VerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    checked: int
    head_id: int
    head_hash: bytes
    started_after: int = 0
    checkpoints_checked: int = 0
    first_bad_id: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        if self.ok:
            return (
                f"chain OK: {self.checked} rows checked after id {self.started_after}, "
                f"head id {self.head_id}, head hash {self.head_hash.hex()}, "
                f"{self.checkpoints_checked} checkpoints matched"
            )
        return f"chain BROKEN at delivery id {self.first_bad_id}: {self.reason}"


_SELECT = """
SELECT id, received_at, provider, endpoint, account, event_id, event_type, event_created,
       object_id, origin, source_address, content_type, headers, verification, duplicate_of,
       body, body_sha256, prev_hash, row_hash
FROM audit.deliveries WHERE id > $1 ORDER BY id, received_at
"""


async def verify_chain(
    conn: asyncpg.Connection,
    *,
    key: bytes | None = None,
    from_checkpoint: int | None = None,
    from_latest_checkpoint: bool = False,
    progress: Callable[[int], None] | None = None,
) -> VerifyResult:
    start: Checkpoint | None = None
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if from_checkpoint is not None:
            start = await get_checkpoint(conn, from_checkpoint)
            if start is None:
                return VerifyResult(
                    ok=False,
                    checked=0,
                    head_id=0,
                    head_hash=GENESIS,
                    reason=f"checkpoint {from_checkpoint} does not exist",
                )
        elif from_latest_checkpoint:
            start = await latest_checkpoint(conn)
        if start is not None and key is not None and not signature_ok(key, start):
            return VerifyResult(
                ok=False,
                checked=0,
                head_id=start.delivery_id,
                head_hash=start.chain_hash,
                first_bad_id=start.delivery_id,
                reason=f"checkpoint {start.id} signature does not verify with the configured key",
            )
        after = 0 if start is None else start.delivery_id
        prev = GENESIS if start is None else start.chain_hash
        expected = after + 1
        checkpoints: dict[int, list[Checkpoint]] = {}
        rows = await conn.fetch(
            "SELECT id, created_at, delivery_id, chain_hash, row_count, key_id, signature "
            "FROM audit.checkpoints WHERE delivery_id > $1",
            after,
        )
        for r in rows:
            cp = Checkpoint(
                id=r["id"],
                created_at=r["created_at"],
                delivery_id=r["delivery_id"],
                chain_hash=bytes(r["chain_hash"]),
                row_count=r["row_count"],
                key_id=r["key_id"],
                signature=bytes(r["signature"]),
            )
            checkpoints.setdefault(cp.delivery_id, []).append(cp)
        checked = 0
        matched = 0

        def broken(row_id: int, reason: str) -> VerifyResult:
            return VerifyResult(
                ok=False,
                checked=checked,
                head_id=expected - 1,
                head_hash=prev,
                started_after=after,
                checkpoints_checked=matched,
                first_bad_id=row_id,
                reason=reason,
            )

        async for r in conn.cursor(_SELECT, after, prefetch=1000):
            row_id = r["id"]
            if row_id < expected:
                return broken(row_id, f"id {row_id} appears more than once (row inserted)")
            if row_id > expected:
                return broken(expected, f"rows {expected}..{row_id - 1} are missing (deleted)")
            stored_prev = bytes(r["prev_hash"])
            if stored_prev != prev:
                return broken(
                    row_id, "prev_hash does not match the previous row (reordered or spliced)"
                )
            body_digest = hashlib.sha256(r["body"]).digest()
            if body_digest != bytes(r["body_sha256"]):
                return broken(row_id, "body does not match body_sha256 (body modified)")
            fields = ChainFields(
                id=row_id,
                received_at=r["received_at"],
                provider=r["provider"],
                endpoint=r["endpoint"],
                account=r["account"],
                event_id=r["event_id"],
                event_type=r["event_type"],
                event_created=r["event_created"],
                object_id=r["object_id"],
                origin=r["origin"],
                source_address=r["source_address"],
                content_type=r["content_type"],
                headers=r["headers"],
                verification=r["verification"],
                duplicate_of=r["duplicate_of"],
                body_sha256=body_digest,
            )
            computed = row_hash(prev, fields)
            if computed != bytes(r["row_hash"]):
                return broken(row_id, "row_hash does not match the row's content (row modified)")
            for cp in checkpoints.get(row_id, ()):
                if cp.chain_hash != computed or cp.row_count != row_id:
                    return broken(row_id, f"checkpoint {cp.id} does not match the chain here")
                if key is not None and not signature_ok(key, cp):
                    return broken(row_id, f"checkpoint {cp.id} signature does not verify")
                matched += 1
            prev = computed
            expected += 1
            checked += 1
            if progress is not None and checked % 10_000 == 0:
                progress(checked)
        for position in checkpoints:
            if position >= expected:
                return broken(
                    expected,
                    f"a checkpoint covers id {position} but the log ends at {expected - 1} (rows deleted)",
                )
    return VerifyResult(
        ok=True,
        checked=checked,
        head_id=expected - 1,
        head_hash=prev,
        started_after=after,
        checkpoints_checked=matched,
    )
