"""Building deliveries for audit-store tests, and integrating them as the sequencer would."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from audit.append import NewDelivery
from audit.note import Signer, parse_signer_key
from audit.sequencer import integrate_once, load_state
from tests.conftest import CHECKPOINT_KEY


def delivery(
    event_id: str,
    *,
    provider: str = "stripe",
    account: str = "acct_test",
    body: bytes | None = None,
) -> NewDelivery:
    raw = (
        body
        if body is not None
        else msgspec.json.encode(
            {"id": event_id, "type": "customer.updated", "created": 1764072000}
        )
    )
    return NewDelivery(
        received_at=datetime.now(UTC),
        provider=provider,
        endpoint="default",
        account=account,
        event_id=event_id,
        event_type="customer.updated",
        event_created=1764072000,
        object_id="cus_1",
        source_address="127.0.0.1",
        content_type="application/json",
        headers='[["content-type","application/json"],["stripe-signature","t=1,v1=00"]]',
        verification="stripe-v1:key=test",
        body=raw,
    )


async def integrate(conn: asyncpg.Connection | Any, batch: int = 5000) -> int:
    """Run the sequencer's integration until nothing is left (what the worker does in the
    background); returns how many deliveries became leaves."""
    state = await load_state(conn)
    total = 0
    while True:
        state, done = await integrate_once(conn, state, batch)
        if done is None:
            return total
        total += len(done.delivery_ids)


async def integrate_pool(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        return await integrate(conn)


def log_signer() -> Signer:
    return parse_signer_key(CHECKPOINT_KEY)
