"""Appending deliveries to the log: one statement, no lock shared between writers.

``audit.append_batch`` (SQL, migration 0020) reserves the rows' ids from a sequence, settles
"first delivery of this event" on ``audit.events``' primary key and inserts the rows, all in the
caller's transaction. Nothing orders the writers: any number of API processes (or machines)
append at once, each paying only for its own rows. The log's order is given later by the
sequencer (:mod:`audit.sequencer`), which integrates committed rows into the Merkle tree; that
is why an id here says nothing about position, and why nothing may tail the table by id.

A failed statement leaves no trace (it rolls back as a whole); nothing was acknowledged for it.
The body's SHA-256 is computed here, once, by the writer; the database stores it beside the
body and ``ledgerhook verify`` recomputes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec

__all__ = ["Appended", "NewDelivery", "append_deliveries"]


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

    @property
    def duplicate(self) -> bool:
        return self.duplicate_of is not None


_APPEND = (
    "SELECT ids, duplicate_of FROM audit.append_batch("
    "$1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
    "$7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::json[], $13::text[], "
    "$14::bytea[], $15::bytea[])"
)


async def append_deliveries(
    conn: asyncpg.Connection, batch: Sequence[NewDelivery]
) -> list[Appended]:
    """Append ``batch`` atomically (in the caller's transaction, if any); one result per item,
    in order. A delivery of an event already in the log is stored too, as a duplicate."""
    if not batch:
        return []
    row = await conn.fetchrow(
        _APPEND,
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
        [d.body for d in batch],
        [hashlib.sha256(d.body).digest() for d in batch],
    )
    assert row is not None
    return [
        Appended(id=i, duplicate_of=dup)
        for i, dup in zip(row["ids"], row["duplicate_of"], strict=True)
    ]
