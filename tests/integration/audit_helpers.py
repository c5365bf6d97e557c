"""Building deliveries for audit-store tests."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from audit.chain import NewDelivery


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
