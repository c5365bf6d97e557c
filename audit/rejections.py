"""Appending rejection records: what was refused at the edge, kept append-only for auditors.

A rejection is evidence (attempted forgeries, misconfigured secrets), not a delivery: it is not
part of the hash chain and carries at most the first bytes of the body plus the whole body's
SHA-256 and size. Headers arrive here already redacted (``ingest.headers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec

__all__ = ["NewRejection", "append_rejections"]

_COLUMNS = (
    "received_at",
    "provider",
    "endpoint",
    "status",
    "reason",
    "source_address",
    "headers",
    "body_prefix",
    "body_size",
    "body_sha256",
)


class NewRejection(msgspec.Struct, frozen=True, kw_only=True):
    received_at: datetime
    provider: str
    endpoint: str
    status: int
    reason: str
    source_address: str | None
    headers: str
    body_prefix: bytes
    body_size: int
    body_sha256: bytes


async def append_rejections(conn: asyncpg.Connection, rows: Sequence[NewRejection]) -> None:
    """Insert ``rows`` in one COPY (ids come from the table's sequence)."""
    if not rows:
        return
    await conn.copy_records_to_table(
        "rejections",
        schema_name="audit",
        columns=_COLUMNS,
        records=[
            (
                r.received_at,
                r.provider,
                r.endpoint,
                r.status,
                r.reason,
                r.source_address,
                r.headers,
                r.body_prefix,
                r.body_size,
                r.body_sha256,
            )
            for r in rows
        ],
    )
