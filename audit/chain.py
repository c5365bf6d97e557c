"""Appending deliveries to the hash-chained log.

Concurrency: the chain is a total order, so appends are serialised by one transaction-scoped
advisory lock (:data:`CHAIN_LOCK`). Under it a transaction reads the head (highest id, its hash),
numbers its rows ``head+1, head+2, ...``, hashes them, inserts them and commits; the lock is
released only after the commit is visible, so the next appender always sees this head. Ids are
therefore gap-free and commit in order, which lets the verifier and the sweepers rely on them.

One lock for every writer would cap throughput at one commit at a time, so callers append in
batches: the ingest edge groups concurrent requests into one call (group commit), paying one
fsync for many deliveries. A failed transaction leaves no trace (it rolls back as a whole), and
its ids are reused by the next one: nothing was ever acknowledged for them.

The hot path is one statement: the caller hashes its rows against the head it expects and
``audit.append_deliveries`` (SQL, migration 0001) takes the lock, checks that guess and inserts, or
writes nothing and returns the actual head to re-hash against. Everything that does not depend on
the chain position (body digest, canonical encoding of fields 2-14) is computed once, before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec

from audit.canonical import GENESIS, encode_fixed, row_hash_from_parts

__all__ = [
    "CHAIN_LOCK",
    "Appended",
    "NewDelivery",
    "PreparedAppend",
    "append_deliveries",
    "append_prepared",
    "chain_head",
]

CHAIN_LOCK = 0x4C48_0001  # advisory lock key "LH" 1: the delivery chain (also in 0001's SQL)


class NewDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A verified delivery ready to append. ``headers`` is the JSON text to store verbatim."""

    received_at: datetime
    provider: str
    endpoint: str
    account: str
    event_id: str
    event_type: str
    event_created: int
    object_id: str | None
    origin: str = "webhook"
    source_address: str | None
    content_type: str | None
    headers: str
    verification: str
    body: bytes


class Appended(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    duplicate_of: int | None
    row_hash: bytes

    @property
    def duplicate(self) -> bool:
        return self.duplicate_of is not None


async def chain_head(conn: asyncpg.Connection) -> tuple[int, bytes]:
    """(id, row_hash) of the last committed row, or (0, GENESIS) for an empty log."""
    row = await conn.fetchrow("SELECT id, row_hash FROM audit.deliveries ORDER BY id DESC LIMIT 1")
    return (0, GENESIS) if row is None else (row["id"], bytes(row["row_hash"]))


_APPEND = (
    "SELECT ok, head_id, head_hash, duplicate_of FROM audit.append_deliveries("
    + ", ".join(f"${i}" for i in range(1, 21))
    + ")"
)
# Optimistic calls before falling back to holding the lock across read and append.
_OPTIMISTIC_TRIES = 2


def _guess_duplicates(batch: Sequence[NewDelivery], head_id: int) -> list[int | None]:
    """duplicate_of if no key of the batch was seen before: repeats point at their first row."""
    first: dict[tuple[str, str, str], int] = {}
    out: list[int | None] = []
    for i, d in enumerate(batch, start=1):
        key = (d.provider, d.account, d.event_id)
        if key in first:
            out.append(head_id + first[key])
        else:
            first[key] = i
            out.append(None)
    return out


class _Batch:
    """The position-independent part of a batch, computed once whatever the retries."""

    def __init__(self, batch: Sequence[NewDelivery]) -> None:
        self.digests = [hashlib.sha256(d.body).digest() for d in batch]
        self.fixed = [
            encode_fixed(
                received_at=d.received_at,
                provider=d.provider,
                endpoint=d.endpoint,
                account=d.account,
                event_id=d.event_id,
                event_type=d.event_type,
                event_created=d.event_created,
                object_id=d.object_id,
                origin=d.origin,
                source_address=d.source_address,
                content_type=d.content_type,
                headers=d.headers,
                verification=d.verification,
            )
            for d in batch
        ]
        self.columns = [
            [d.received_at for d in batch],
            [d.provider for d in batch],
            [d.endpoint for d in batch],
            [d.account for d in batch],
            [d.event_id for d in batch],
            [d.event_type for d in batch],
            [d.event_created for d in batch],
            [d.object_id for d in batch],
            [d.origin for d in batch],
            [d.source_address for d in batch],
            [d.content_type for d in batch],
            [d.headers for d in batch],
            [d.verification for d in batch],
        ]
        self.bodies = [d.body for d in batch]

    def hashed(
        self, head: tuple[int, bytes], dups: list[int | None]
    ) -> tuple[list[bytes], list[bytes]]:
        """(prev_hash, row_hash) of every row if the chain head is ``head``."""
        head_id, prev = head
        prevs: list[bytes] = []
        hashes: list[bytes] = []
        for i, (fixed, digest, dup) in enumerate(
            zip(self.fixed, self.digests, dups, strict=True), start=1
        ):
            prevs.append(prev)
            prev = row_hash_from_parts(prev, head_id + i, fixed, dup, digest)
            hashes.append(prev)
        return prevs, hashes

    async def attempt(
        self,
        conn: asyncpg.Connection,
        head: tuple[int, bytes],
        dups: list[int | None],
        hashed: tuple[list[bytes], list[bytes]] | None = None,
    ) -> tuple[list[Appended] | None, tuple[int, bytes], list[int | None]]:
        """Ask PostgreSQL to append as if the head were ``head``; (rows, _, _) or (None, head, dups)."""
        prevs, hashes = hashed if hashed is not None else self.hashed(head, dups)
        row = await conn.fetchrow(
            _APPEND, head[0], head[1], *self.columns, dups, self.bodies, self.digests, prevs, hashes
        )
        assert row is not None
        if row["ok"]:
            return (
                [
                    Appended(id=head[0] + i, duplicate_of=dup, row_hash=h)
                    for i, (dup, h) in enumerate(zip(dups, hashes, strict=True), start=1)
                ],
                head,
                dups,
            )
        return None, (row["head_id"], bytes(row["head_hash"])), list(row["duplicate_of"])


class PreparedAppend:
    """A batch hashed against an expected head, before anything is sent.

    :attr:`head_after` is what the chain head will be once it lands as expected, so a writer can
    prepare its NEXT batch against it and send that while this one is still committing
    (pipelined group commits): the next statement waits for the chain lock, then finds the head
    it expected. If this batch fails or lands elsewhere, the next one's guess is simply wrong
    and it is re-hashed against the actual head (:func:`append_prepared`).
    """

    def __init__(self, batch: Sequence[NewDelivery], head: tuple[int, bytes]) -> None:
        if not batch:
            raise ValueError("nothing to append")
        self._batch = _Batch(batch)
        self._head = head
        self._dups = _guess_duplicates(batch, head[0])
        self._hashed = self._batch.hashed(head, self._dups)
        self.head_after: tuple[int, bytes] = (head[0] + len(batch), self._hashed[1][-1])


async def append_prepared(conn: asyncpg.Connection, prepared: PreparedAppend) -> list[Appended]:
    """Send ``prepared``; on a wrong guess, retry as :func:`append_deliveries` does."""
    rows, head, dups = await prepared._batch.attempt(
        conn, prepared._head, prepared._dups, prepared._hashed
    )
    if rows is not None:
        return rows
    return await _retry(conn, prepared._batch, head, dups)


async def _retry(
    conn: asyncpg.Connection, batch: _Batch, head: tuple[int, bytes], dups: list[int | None]
) -> list[Appended]:
    for _ in range(_OPTIMISTIC_TRIES):
        rows, head, dups = await batch.attempt(conn, head, dups)
        if rows is not None:
            return rows
    async with conn.transaction():
        # Holding the lock, the head the first attempt reports cannot move: the second succeeds.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CHAIN_LOCK)
        for _ in range(2):
            rows, head, dups = await batch.attempt(conn, head, dups)
            if rows is not None:
                return rows
    raise RuntimeError("the chain head moved while the chain lock was held")


async def append_deliveries(
    conn: asyncpg.Connection,
    batch: Sequence[NewDelivery],
    *,
    head: tuple[int, bytes] | None = None,
) -> list[Appended]:
    """Append ``batch`` in order, atomically; returns one result per item, in order.

    ``head`` is the caller's guess of the chain head, (id, row_hash) of the last row: a single
    writer passes the last row it appended and then the whole append is ONE statement, one round
    trip and one commit (``audit.append_deliveries`` checks the guess under the chain lock). A
    wrong or missing guess costs a retry with the actual head; if other writers keep moving it,
    the lock is held across a read and the append, which always succeeds.
    """
    if not batch:
        return []
    if head is None:
        head = await chain_head(conn)  # unlocked read: a guess, checked under the lock
    return await append_prepared(conn, PreparedAppend(batch, head))
