"""Telling people: Sentry, a Slack-compatible webhook and PagerDuty Events v2, via an outbox.

Alert changes write ``alerts.notifications`` rows in their own transaction (see
:mod:`alerts.lifecycle`); :func:`deliver_due` sends what is due. A row is claimed by pushing its
``next_attempt_at`` forward (a lease) before any HTTP, so two sweeps never send it twice at once
and a crashed sender's rows come back after the lease. A failure records the status code or the
exception class (never the URL or key) and retries with exponential backoff, up to
``alerts.notify_max_tries``. Per alert and channel, notifications go out in order (a PagerDuty
resolve never overtakes its trigger). Nothing here raises into the sweep.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import asyncpg
import httpx

from alerts.lifecycle import ALERT_COLUMNS, alert_from_row
from alerts.notify import pagerduty, sentry, slack
from alerts.notify.base import NotifyFailed
from ledgerhook.settings import Settings

__all__ = ["NotifyFailed", "backoff", "channels", "deliver_due"]

log = logging.getLogger(__name__)

LEASE_SECONDS = 120
BATCH = 100
BASE_BACKOFF_SECONDS = 30
MAX_BACKOFF_SECONDS = 3600
TIMEOUT_SECONDS = 5.0
# Notifications sent at once: a slow channel delays a batch by one timeout, not by one per row.
CONCURRENCY = 8


def channels(settings: Settings) -> tuple[str, ...]:
    """The channels configured: a channel without its setting is simply not used."""
    out: list[str] = []
    if settings.sentry_dsn:
        out.append("sentry")
    if settings.alerts.slack_webhook_url:
        out.append("slack")
    if settings.alerts.pagerduty_routing_key:
        out.append("pagerduty")
    return tuple(out)


def backoff(attempts: int) -> timedelta:
    return timedelta(
        seconds=min(BASE_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)
    )


async def deliver_due(
    pool: asyncpg.Pool,
    settings: Settings,
    now: datetime,
    client: httpx.AsyncClient | None = None,
) -> tuple[int, int]:
    """Send every due notification once; returns (delivered, failed)."""
    max_tries = settings.alerts.notify_max_tries
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """
            WITH due AS (
                SELECT id FROM alerts.notifications n
                WHERE delivered_at IS NULL AND next_attempt_at <= $1 AND attempts < $2
                  -- per alert and channel, in order: never a resolve before its trigger
                  AND NOT EXISTS (
                      SELECT 1 FROM alerts.notifications e
                      WHERE e.alert_id = n.alert_id AND e.channel = n.channel AND e.id < n.id
                        AND e.delivered_at IS NULL AND e.attempts < $2
                  )
                ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED
            )
            UPDATE alerts.notifications n SET next_attempt_at = $1::timestamptz + make_interval(secs => $4::float8)
            FROM due WHERE n.id = due.id
            RETURNING n.id AS notification_id, n.channel, n.action, n.attempts AS attempts_before,
                      n.alert_id
            """,
            now,
            max_tries,
            BATCH,
            float(LEASE_SECONDS),
        )
        alerts = {}
        if rows:
            for r in await conn.fetch(
                f"SELECT {ALERT_COLUMNS} FROM alerts.alerts WHERE id = ANY($1::bigint[])",
                list({r["alert_id"] for r in rows}),
            ):
                alerts[r["id"]] = alert_from_row(r)
    if not rows:
        return 0, 0
    own = client is None
    http = client or httpx.AsyncClient(timeout=TIMEOUT_SECONDS)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(r: asyncpg.Record) -> bool:
        alert = alerts[r["alert_id"]]
        error: str | None = None
        async with gate:
            try:
                if r["channel"] == "slack":
                    await slack.send(http, settings, alert, r["action"])
                elif r["channel"] == "pagerduty":
                    await pagerduty.send(http, settings, alert, r["action"])
                elif r["channel"] == "sentry":
                    sentry.send(settings, alert)
            except NotifyFailed as exc:
                error = str(exc)
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            except Exception as exc:  # a notifier must never take the sweep down
                error = type(exc).__name__
                log.exception("notifier %s crashed", r["channel"])
        attempts = r["attempts_before"] + 1
        async with pool.acquire() as conn:
            if error is None:
                await conn.execute(
                    "UPDATE alerts.notifications SET attempts = $2, delivered_at = $3, "
                    "last_error = NULL WHERE id = $1",
                    r["notification_id"],
                    attempts,
                    now,
                )
                return True
            log.warning(
                "notification %s (%s %s, alert %s) failed, attempt %s/%s: %s",
                r["notification_id"],
                r["channel"],
                r["action"],
                alert.id,
                attempts,
                max_tries,
                error,
            )
            await conn.execute(
                "UPDATE alerts.notifications SET attempts = $2, next_attempt_at = $3, "
                "last_error = $4 WHERE id = $1",
                r["notification_id"],
                attempts,
                now + backoff(attempts),
                error[:200],
            )
            return False

    try:
        results = await asyncio.gather(*(one(r) for r in rows))
        delivered = sum(results)
        failed = len(results) - delivered
    finally:
        if own:
            await http.aclose()
    return delivered, failed
