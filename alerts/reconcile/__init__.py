"""Reconciliation: what the provider's Events API has that the audit log does not.

For a window, list the provider's events, look each up in ``audit.events`` (provider, account,
event id), and for each one we never received: append it to the audit log exactly as the API
returned it (``origin='reconciliation'``, ``verification='reconciliation:api'``), apply it through
the processors' own path, and raise a ``missing_event`` alert. Missing events are appended oldest
first, so state is rebuilt in the provider's order. Running twice is harmless: the second run
finds the backfilled events in ``audit.events``. A webhook racing the backfill makes the later of
the two a duplicate (``duplicate_of``) and no alert is raised for it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Literal, cast

import asyncpg
import msgspec

from alerts import lifecycle, notify, rules
from alerts.errors import InvalidAlertQuery, ProviderApiError
from alerts.model import Facts, MissingEvent, ReconcileFailure
from alerts.reconcile import chargebee as cb
from alerts.reconcile import stripe as st
from alerts.reconcile.base import ProviderEvent
from audit.append import NewDelivery, append_deliveries
from audit.dbtypes import Conn
from audit.reconciliations import ReconciliationRun, record_run
from ledgerhook import metrics
from ledgerhook.settings import Settings
from processors.service import process_delivery

__all__ = ["ProviderEvent", "ReconcileSummary", "configured_providers", "reconcile"]

log = logging.getLogger(__name__)

Provider = Literal["stripe", "chargebee"]
VERIFICATION = "reconciliation:api"
_BATCH = 100


class ReconcileSummary(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    endpoint: str
    account: str
    since: int
    until: int
    clamped: bool
    pages: int
    listed: int
    present: int
    missing: int
    backfilled: list[int]
    applied: int
    alerts: list[int]


Progress = Callable[[int, int, int], None]  # pages, listed, missing so far


def configured_providers(settings: Settings) -> list[Provider]:
    """Providers with API credentials: only these are reconciled periodically."""
    out: list[Provider] = []
    if settings.stripe_api_key:
        out.append("stripe")
    if settings.chargebee_api_key and (settings.chargebee_site or settings.chargebee_api_base):
        out.append("chargebee")
    return out


def _target(settings: Settings, provider: str, endpoint: str | None) -> tuple[str, str]:
    """(endpoint name, account) the backfilled deliveries belong to."""
    name = endpoint or "default"
    e = settings.endpoint(provider, name)
    if e is not None:
        return name, e.account_id
    if endpoint is not None:
        raise InvalidAlertQuery(f"no {provider} endpoint named {endpoint!r} is configured")
    if provider == "stripe":
        return name, settings.stripe_account
    return name, settings.chargebee_site or "default"


async def _apply(pool: asyncpg.Pool, delivery_ids: list[int]) -> int:
    """Apply through the processors' own path; a failure is left for the processors' sweeper."""
    applied = 0
    for delivery_id in delivery_ids:
        try:
            async with pool.acquire() as conn:
                await process_delivery(cast(asyncpg.Connection, conn), delivery_id)
            applied += 1
        except Exception:  # the sweeper retries it; one bad event must not stop the backfill
            log.exception(
                "applying backfilled delivery %s failed; left for the sweeper", delivery_id
            )
    return applied


async def _present(conn: Conn, provider: str, account: str, ids: list[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT event_id FROM audit.events WHERE provider = $1 AND account = $2 AND event_id = ANY($3::text[])",
        provider,
        account,
        ids,
    )
    return {r["event_id"] for r in rows}


def _listing(
    settings: Settings, provider: str, since: int
) -> list[AsyncIterator[list[ProviderEvent]]]:
    if provider == "stripe":
        # Failed deliveries first, so the evidence can say Stripe knows it failed them.
        return [
            st.list_events(settings, since, delivery_success=False),
            st.list_events(settings, since),
        ]
    return [cb.list_events(settings, since)]


async def reconcile(
    pool: asyncpg.Pool,
    settings: Settings,
    provider: str,
    since_seconds: int,
    *,
    endpoint: str | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> ReconcileSummary:
    """Reconcile one provider endpoint over the last ``since_seconds``.

    Whoever runs it (the worker's cron, ``ledgerhook reconcile``, ``POST /reconcile``), a run
    whose provider API fails counts in ``ledgerhook_reconciliation_failures_total`` and raises
    (or counts up) the ``reconciliation_failing`` alert before the error goes to the caller; a run
    that lists the events sets the last-success gauge and resolves that alert.
    """
    if provider not in ("stripe", "chargebee"):
        raise InvalidAlertQuery("provider must be stripe or chargebee")
    if since_seconds <= 0:
        raise InvalidAlertQuery("since must be a positive number of seconds")
    now = now or datetime.now(UTC)
    name, account = _target(settings, provider, endpoint)
    try:
        summary = await _reconcile(
            pool,
            settings,
            provider,
            since_seconds,
            name=name,
            account=account,
            now=now,
            progress=progress,
        )
    except ProviderApiError as exc:
        failure = ReconcileFailure(
            provider=provider, endpoint=name, account=account, api_url=exc.url, error=str(exc)
        )
        await _record_outcome(
            pool, settings, failure=failure, provider=provider, endpoint=name, now=now
        )
        raise
    await _record_outcome(pool, settings, failure=None, provider=provider, endpoint=name, now=now)
    return summary


async def _record_outcome(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    provider: str,
    endpoint: str,
    failure: ReconcileFailure | None,
    now: datetime,
) -> None:
    """Metrics and the ``reconciliation_failing`` alert for a run that failed or succeeded.

    Only provider API failures count: a bad request or a bug is the caller's to see."""
    labels = {"provider": provider, "endpoint": endpoint}
    if failure is None:
        metrics.reconciliation_succeeded_at.labels(**labels).set(now.timestamp())
    else:
        metrics.reconciliation_failures.labels(**labels).inc()
    channels = notify.channels(settings)
    try:
        async with pool.acquire() as conn:
            if failure is not None:
                findings = rules.reconciliation_failing(
                    Facts(config=settings.alerts, reconcile_failures=(failure,)), now
                )
                await lifecycle.apply_findings(conn, findings, now, channels)
            else:
                await lifecycle.auto_resolve(
                    conn,
                    rules=("reconciliation_failing",),
                    firing=(),
                    now=now,
                    quiet_seconds=0,
                    channels=channels,
                    subjects=(f"{provider}/{endpoint}",),
                    note="reconciliation succeeded again",
                )
            await lifecycle.refresh_gauges(conn)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning(
            "could not record the %s/%s reconciliation outcome: %s",
            provider,
            endpoint,
            type(exc).__name__,
        )


async def _reconcile(
    pool: asyncpg.Pool,
    settings: Settings,
    provider: str,
    since_seconds: int,
    *,
    name: str,
    account: str,
    now: datetime,
    progress: Progress | None,
) -> ReconcileSummary:
    retention = st.RETENTION_SECONDS if provider == "stripe" else cb.RETENTION_SECONDS
    clamped = since_seconds > retention
    until = int(now.timestamp())
    since = until - min(since_seconds, retention)
    if clamped:
        log.warning("%s lists events of the last %ss only: window clamped", provider, retention)

    missing: dict[str, ProviderEvent] = {}
    seen: set[str] = set()
    pages = listed = present = 0
    for listing in _listing(settings, provider, since):
        async for page in listing:
            pages += 1
            fresh = [e for e in page if e.id not in seen]
            seen.update(e.id for e in fresh)
            listed += len(fresh)
            if fresh:
                async with pool.acquire() as conn:
                    have = await _present(conn, provider, account, [e.id for e in fresh])
                present += len(have)
                for e in fresh:
                    if e.id not in have:
                        missing[e.id] = e
            if progress is not None:
                progress(pages, listed, len(missing))

    ordered = sorted(missing.values(), key=lambda e: (e.created, e.id))
    backfilled: list[int] = []
    found: list[MissingEvent] = []
    for i in range(0, len(ordered), _BATCH):
        batch = ordered[i : i + _BATCH]
        received = datetime.now(UTC)
        news = [
            NewDelivery(
                received_at=received,
                provider=provider,
                endpoint=name,
                account=account,
                event_id=e.id,
                event_type=e.type,
                event_created=e.created,
                object_id=e.object_id,
                origin="reconciliation",
                source_address=None,
                content_type="application/json",
                headers="[]",
                verification=VERIFICATION,
                body=e.raw,
            )
            for e in batch
        ]
        async with pool.acquire() as conn:
            appended = await append_deliveries(cast(asyncpg.Connection, conn), news)
        for e, a in zip(batch, appended, strict=True):
            backfilled.append(a.id)
            if a.duplicate:
                continue  # the webhook arrived meanwhile: not missing after all
            found.append(
                MissingEvent(
                    provider=provider,
                    account=account,
                    endpoint=name,
                    event_id=e.id,
                    event_type=e.type,
                    event_created=e.created,
                    delivery_id=a.id,
                    delivery_failed=e.delivery_failed,
                )
            )
    applied = await _apply(pool, backfilled)
    findings = rules.missing_event(Facts(config=settings.alerts, missing_events=tuple(found)), now)
    async with pool.acquire() as conn:
        fired = await lifecycle.apply_findings(conn, findings, now, notify.channels(settings))
        await lifecycle.refresh_gauges(conn)
        await record_run(
            conn,
            ReconciliationRun(
                finished_at=datetime.now(UTC),
                provider=provider,
                endpoint=name,
                account=account,
                window_start=datetime.fromtimestamp(since, UTC),
                window_end=datetime.fromtimestamp(until, UTC),
                clamped=clamped,
                listed=listed,
                missing=len(found),
                backfilled=len(backfilled),
            ),
        )
    # Info when it found something; a routine run that found the log complete is debug.
    log.log(
        logging.INFO if found else logging.DEBUG,
        "reconciled %s/%s: %s listed, %s missing, %s backfilled, %s applied",
        provider,
        name,
        listed,
        len(found),
        len(backfilled),
        applied,
    )
    return ReconcileSummary(
        provider=provider,
        endpoint=name,
        account=account,
        since=since,
        until=until,
        clamped=clamped,
        pages=pages,
        listed=listed,
        present=present,
        missing=len(found),
        backfilled=backfilled,
        applied=applied,
        alerts=[f.alert_id for f in fired],
    )
