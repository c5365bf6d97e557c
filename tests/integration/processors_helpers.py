"""Building real-payload deliveries for processors tests, and running burst workers."""

from __future__ import annotations

import copy
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from audit.chain import Appended, NewDelivery, append_deliveries
from ledgerhook.settings import Settings
from ledgerhook.worker import create_worker
from tests.conftest import FIXTURES

CHARGEBEE_DERIVED = Path(__file__).resolve().parents[1] / "fixtures" / "chargebee"


def load_stripe(name: str) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.json.decode((FIXTURES / "stripe" / name).read_bytes())
    return data


def load_chargebee(event_type: str) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.json.decode(
        (CHARGEBEE_DERIVED / f"{event_type}.json").read_bytes()
    )
    return data


def uid(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex[:12]


def stripe_event(
    name: str,
    *,
    event_id: str | None = None,
    created: int | None = None,
    object_id: str | None = None,
    change: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """A fixture event with a fresh (or given) id, and optionally its time / object id rewritten."""
    ev = copy.deepcopy(load_stripe(name))
    ev["id"] = event_id or uid("evt_")
    if created is not None:
        ev["created"] = created
    if object_id is not None:
        ev["data"]["object"]["id"] = object_id
    if change is not None:
        change(ev["data"]["object"])
    return ev


def new_delivery(
    provider: str,
    event: dict[str, Any],
    *,
    account: str = "acct_test",
    age_seconds: float = 0.0,
) -> NewDelivery:
    body = msgspec.json.encode(event)
    if provider == "stripe":
        event_type, created = event["type"], event["created"]
        object_id = event["data"]["object"].get("id")
    else:
        event_type, created = event["event_type"], event["occurred_at"]
        object_id = None
    return NewDelivery(
        received_at=datetime.now(UTC) - timedelta(seconds=age_seconds),
        provider=provider,
        endpoint="default",
        account=account,
        event_id=event["id"],
        event_type=event_type,
        event_created=created,
        object_id=object_id,
        source_address="127.0.0.1",
        content_type="application/json",
        headers='[["content-type","application/json"]]',
        verification="test",
        body=body,
    )


async def append(pool: asyncpg.Pool, deliveries: list[NewDelivery]) -> list[Appended]:
    async with pool.acquire() as conn:
        return await append_deliveries(conn, deliveries)


async def run_burst(settings: Settings, **overrides: Any) -> None:
    """Run a real arq worker in burst mode on the settings' queue until it is empty.

    Cron jobs are left out (they belong to other packages' tests) unless passed in ``overrides``.
    """
    options: dict[str, Any] = {"cron_jobs": [], **overrides}
    worker = create_worker(settings, burst=True, handle_signals=False, poll_delay=0.05, **options)
    try:
        await worker.main()
    finally:
        # arq 0.28 closes its Redis pool with redis-py's deprecated close(): not our warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            await worker.close()


async def outcome(pool: asyncpg.Pool, delivery_id: int) -> str | None:
    async with pool.acquire() as conn:
        value: str | None = await conn.fetchval(
            "SELECT outcome FROM processors.processed WHERE delivery_id = $1", delivery_id
        )
        return value
