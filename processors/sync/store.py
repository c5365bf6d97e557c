"""Fetched objects → deliveries in the audit log (origin ``sync``), through ``append_deliveries``.

One delivery per object: the body is the object's bytes as the API sent them, the event type
``snapshot.<kind>``, ``event_created`` the second it was fetched, the verification "fetched from
the API with key <fingerprint>" (never the key), the response's provenance headers. The event id
(:mod:`.identity`) makes an unchanged re-fetch a recorded duplicate. From there the delivery is
like any other: deduplicated by ``audit.events``, applied once by the processors, replayable.
Drift repairs (alerts.drift) store what they fetched the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

import asyncpg
import msgspec

from audit.append import Appended, NewDelivery, append_deliveries
from audit.dbtypes import Conn
from processors import repository as repo
from processors.errors import NormalisationError
from processors.normalize import stripe_snapshot
from processors.sync import identity
from processors.sync.api import Fetched

__all__ = ["ORIGIN", "SyncTarget", "deliveries", "store", "verification"]

ORIGIN = "sync"


class SyncTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Whose objects: the provider, the endpoint and account the deliveries belong to."""

    provider: str
    endpoint: str
    account: str


def verification(key_fingerprint: str) -> str:
    return f"fetched from the API with key {key_fingerprint}"


async def _stripe_bases(
    conn: Conn, target: SyncTarget, objects: Sequence[Fetched]
) -> dict[str, str]:
    """object id → the basis its next snapshot inherits (see identity), for objects in state."""
    by_table: dict[str, list[str]] = {}
    for o in objects:
        object_type = stripe_snapshot.KINDS.get(o.kind)
        if object_type is not None:
            by_table.setdefault(repo.TABLES[object_type], []).append(o.object_id)
    out: dict[str, str] = {}
    for table, ids in by_table.items():
        # One probe per id: as a join, a planner without fresh statistics (autovacuum off, a
        # sync running before the worker's analyze) read every state row of the account per
        # page, which made a large sync quadratic. A LATERAL subquery with LIMIT is never
        # flattened into a join, so each runs as an index probe (by primary key for customers;
        # tables with another (provider, account, ...) index need the statistics the sync
        # refreshes, see runner.ANALYZE_EVERY_SECONDS).
        rows = await conn.fetch(
            f"""
            SELECT k.id, d.event_id, d.origin
            FROM unnest($3::text[]) AS k(id)
            CROSS JOIN LATERAL (
                SELECT s.last_delivery_id FROM processors.{table} s
                WHERE s.provider = $1 AND s.account = $2 AND s.id = k.id LIMIT 1
            ) s
            CROSS JOIN LATERAL (
                SELECT d.event_id, d.origin FROM audit.deliveries d
                WHERE d.id = s.last_delivery_id LIMIT 1
            ) d
            """,
            target.provider,
            target.account,
            ids,
        )
        out.update((r["id"], identity.basis_of(r["event_id"], r["origin"])) for r in rows)
    return out


def _stripe_event_id(o: Fetched, account: str, basis: str | None) -> str:
    try:
        event = stripe_snapshot.normalize(o.kind, o.raw, account=account, event_id="", fetched_at=0)
        digest = identity.neutral_digest(event.updates[0])
    except NormalisationError:
        digest = identity.raw_digest(o.raw)  # it will be dead-lettered, visibly
    return identity.stripe_event_id(digest, basis)


async def deliveries(
    conn: Conn,
    target: SyncTarget,
    objects: Sequence[Fetched],
    *,
    fetched_at: int,
    headers: str,
    key_fingerprint: str,
    received_at: datetime | None = None,
) -> list[NewDelivery]:
    """The deliveries for ``objects`` (reads the state's bases for Stripe identities)."""
    received = received_at or datetime.now(UTC)
    bases = await _stripe_bases(conn, target, objects) if target.provider == "stripe" else {}
    out = []
    for o in objects:
        if target.provider == "stripe":
            event_id = _stripe_event_id(o, target.account, bases.get(o.object_id))
        else:
            event_id = identity.chargebee_event_id(o.kind, o.object_id, o.resource_version, o.raw)
        out.append(
            NewDelivery(
                received_at=received,
                provider=target.provider,
                endpoint=target.endpoint,
                account=target.account,
                event_id=event_id,
                event_type=f"snapshot.{o.kind}",
                event_created=fetched_at,
                object_id=o.object_id,
                origin=ORIGIN,
                source_address=None,
                content_type="application/json",
                headers=headers,
                verification=verification(key_fingerprint),
                body=o.raw,
            )
        )
    return out


async def store(
    conn: Conn,
    target: SyncTarget,
    objects: Sequence[Fetched],
    *,
    fetched_at: int,
    headers: str,
    key_fingerprint: str,
) -> list[Appended]:
    """Append ``objects`` (in the caller's transaction, if any); one result per object."""
    if not objects:
        return []
    news = await deliveries(
        conn,
        target,
        objects,
        fetched_at=fetched_at,
        headers=headers,
        key_fingerprint=key_fingerprint,
    )
    return await append_deliveries(cast(asyncpg.Connection, conn), news)
