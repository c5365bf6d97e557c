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
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec

from audit.canonical import GENESIS, ChainFields, row_hash

__all__ = ["CHAIN_LOCK", "Appended", "NewDelivery", "append_deliveries", "chain_head"]

CHAIN_LOCK = 0x4C48_0001  # advisory lock key "LH" 1: the delivery chain

_COLUMNS = (
    "id",
    "received_at",
    "provider",
    "endpoint",
    "account",
    "event_id",
    "event_type",
    "event_created",
    "object_id",
    "origin",
    "source_address",
    "content_type",
    "headers",
    "verification",
    "duplicate_of",
    "body",
    "body_sha256",
    "prev_hash",
    "row_hash",
)


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


async def append_deliveries(
    conn: asyncpg.Connection, batch: Sequence[NewDelivery]
) -> list[Appended]:
    """Append ``batch`` in order, in one transaction; returns one result per item, in order."""
    if not batch:
        return []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CHAIN_LOCK)
        head_id, prev = await chain_head(conn)
        ids = [head_id + 1 + i for i in range(len(batch))]

        # First delivery of each event wins the unique key; the rest are duplicates of it.
        first_in_batch: dict[tuple[str, str, str], int] = {}
        for d, i in zip(batch, ids, strict=True):
            first_in_batch.setdefault((d.provider, d.account, d.event_id), i)
        keys = list(first_in_batch)
        inserted = await conn.fetch(
            """
            INSERT INTO audit.events (provider, account, event_id, first_delivery_id, first_received_at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[])
            ON CONFLICT DO NOTHING
            RETURNING provider, account, event_id
            """,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [first_in_batch[k] for k in keys],
            [batch[first_in_batch[k] - ids[0]].received_at for k in keys],
        )
        new_keys = {(r["provider"], r["account"], r["event_id"]) for r in inserted}
        first: dict[tuple[str, str, str], int] = {k: first_in_batch[k] for k in new_keys}
        old = [k for k in keys if k not in new_keys]
        if old:
            rows = await conn.fetch(
                """
                SELECT e.provider, e.account, e.event_id, e.first_delivery_id
                FROM audit.events e
                JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(provider, account, event_id)
                  USING (provider, account, event_id)
                """,
                [k[0] for k in old],
                [k[1] for k in old],
                [k[2] for k in old],
            )
            for r in rows:
                first[(r["provider"], r["account"], r["event_id"])] = r["first_delivery_id"]

        records = []
        results = []
        for d, i in zip(batch, ids, strict=True):
            first_id = first[(d.provider, d.account, d.event_id)]
            duplicate_of = None if first_id == i else first_id
            digest = hashlib.sha256(d.body).digest()
            fields = ChainFields(
                id=i,
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
                duplicate_of=duplicate_of,
                body_sha256=digest,
            )
            h = row_hash(prev, fields)
            records.append(
                (
                    i,
                    d.received_at,
                    d.provider,
                    d.endpoint,
                    d.account,
                    d.event_id,
                    d.event_type,
                    d.event_created,
                    d.object_id,
                    d.origin,
                    d.source_address,
                    d.content_type,
                    d.headers,
                    d.verification,
                    duplicate_of,
                    d.body,
                    digest,
                    prev,
                    h,
                )
            )
            results.append(Appended(id=i, duplicate_of=duplicate_of, row_hash=h))
            prev = h
        await conn.copy_records_to_table(
            "deliveries", schema_name="audit", columns=_COLUMNS, records=records
        )
    return results
