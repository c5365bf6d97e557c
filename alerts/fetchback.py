"""Chargebee fetch-back: compare each delivered event with the copy Chargebee's API returns.

Chargebee does not sign payloads; HTTP Basic proves only that the sender knew a password. For
endpoints with ``fetch_back = true``, each new webhook delivery's event is retrieved by id
(``GET /api/v2/events/{id}``) and compared on what matters (:func:`differences`): id, event type,
``occurred_at``, the set of content resources, each resource's id and ``resource_version``, and
each resource's content (canonical JSON, key order ignored). A difference, or an event the API
does not know, is a critical ``fetch_back_mismatch`` alert carrying both SHA-256 hashes.

Tracking: every checked delivery gets a ``alerts.fetch_back_checks`` row; the scan starts after a
per-endpoint cursor in ``alerts.cursors`` (safe: delivery ids are gap-free and commit in order)
and stops at the first API failure, so nothing is skipped while Chargebee is unreachable.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import msgspec

from alerts import lifecycle, notify, rules
from alerts.errors import ProviderApiError
from alerts.model import Facts, FetchBackMismatch
from alerts.reconcile import chargebee as cb
from ledgerhook.settings import Settings

__all__ = ["differences", "run_fetch_back"]

log = logging.getLogger(__name__)
BATCH = 100
_any = msgspec.json.Decoder(dict[str, Any])
_canon = msgspec.json.Encoder(order="sorted")


def differences(delivered: bytes, fetched: bytes) -> list[str]:
    """What differs in meaning between two copies of one Chargebee event (empty: they agree)."""
    try:
        a = _any.decode(delivered)
    except msgspec.DecodeError:
        return ["delivered body is not a JSON object"]
    b = _any.decode(fetched)
    out = [
        f"{field} differs"
        for field in ("id", "event_type", "occurred_at")
        if a.get(field) != b.get(field)
    ]
    ca: dict[str, Any] = a.get("content") or {}
    cbx: dict[str, Any] = b.get("content") or {}
    if set(ca) != set(cbx):
        out.append(f"content resources differ: {sorted(ca)} vs {sorted(cbx)}")
    for name in sorted(set(ca) & set(cbx)):
        ra, rb = ca[name], cbx[name]
        if isinstance(ra, dict) and isinstance(rb, dict):
            for field in ("id", "resource_version"):
                if ra.get(field) != rb.get(field):
                    out.append(f"content.{name}.{field} differs")
        if _canon.encode(ra) != _canon.encode(rb):
            out.append(f"content.{name} differs")
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _check_endpoint(
    pool: asyncpg.Pool, settings: Settings, http: httpx.AsyncClient, endpoint: str, now: datetime
) -> tuple[int, list[FetchBackMismatch]]:
    cursor = f"fetch_back:chargebee/{endpoint}"
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO alerts.cursors (name, created_at, updated_at) VALUES ($1, $2, $2) "
            "ON CONFLICT DO NOTHING",
            cursor,
            now,
        )
        after: int = await conn.fetchval(
            "SELECT position FROM alerts.cursors WHERE name = $1", cursor
        )
        # In the log's order (leaf order; the cursor is the next leaf to look at): delivery ids
        # are not commit-ordered, so tailing them could skip a late commit.
        rows = await conn.fetch(
            "SELECT l.leaf_index, d.id, d.event_id, d.body FROM audit.leaves l "
            "JOIN audit.deliveries d ON d.id = l.delivery_id AND d.received_at = l.received_at "
            "WHERE l.leaf_index >= $1 "
            "AND d.provider = 'chargebee' AND d.endpoint = $2 AND d.origin = 'webhook' "
            "AND d.duplicate_of IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM alerts.fetch_back_checks c WHERE c.delivery_id = d.id) "
            "ORDER BY l.leaf_index LIMIT $3",
            after,
            endpoint,
            BATCH,
        )
    checked = 0
    mismatches: list[FetchBackMismatch] = []
    last = after
    for r in rows:
        body = bytes(r["body"])
        try:
            fetched = await cb.retrieve_event(http, r["event_id"])
        except ProviderApiError as exc:
            log.warning("fetch-back of delivery %s paused: %s", r["id"], exc)
            break
        if fetched is None:
            outcome, diffs, fetched_sha = "not_found", ["the API does not know this event"], None
        else:
            diffs = differences(body, fetched.raw)
            outcome = "mismatch" if diffs else "match"
            fetched_sha = _sha(fetched.raw)
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO alerts.fetch_back_checks (delivery_id, checked_at, outcome, "
                "delivered_sha256, fetched_sha256) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                r["id"],
                now,
                outcome,
                _sha(body),
                fetched_sha,
            )
        checked += 1
        last = r["leaf_index"] + 1
        if outcome != "match":
            mismatches.append(
                FetchBackMismatch(
                    provider="chargebee",
                    endpoint=endpoint,
                    delivery_id=r["id"],
                    event_id=r["event_id"],
                    delivered_sha256=_sha(body),
                    fetched_sha256=fetched_sha,
                    differences=tuple(diffs),
                )
            )
    if last != after:
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE alerts.cursors SET position = $2, updated_at = $3 WHERE name = $1 AND position < $2",
                cursor,
                last,
                now,
            )
    return checked, mismatches


async def run_fetch_back(
    pool: asyncpg.Pool, settings: Settings, now: datetime, http: httpx.AsyncClient | None = None
) -> tuple[int, int]:
    """Check new deliveries of every fetch-back endpoint; returns (checked, mismatches)."""
    endpoints = [
        e.name for e in settings.all_endpoints() if e.provider == "chargebee" and e.fetch_back
    ]
    if not endpoints:
        return 0, 0
    own = http is None
    client = http or cb.client(settings)
    checked = 0
    found: list[FetchBackMismatch] = []
    try:
        for name in endpoints:
            n, m = await _check_endpoint(pool, settings, client, name, now)
            checked += n
            found.extend(m)
    finally:
        if own:
            await client.aclose()
    if found:
        findings = rules.fetch_back_mismatch(
            Facts(config=settings.alerts, mismatches=tuple(found)), now
        )
        async with pool.acquire() as conn:
            await lifecycle.apply_findings(conn, findings, now, notify.channels(settings))
    return checked, len(found)
