"""Drift checks: fetch state objects' current copies from the provider, compare, alert, repair.

Per object: retrieve it through the SDK (:mod:`processors.sync`, with its retries), normalise it
like a synced snapshot, skip it while deliveries for it are still unprocessed (they may be about
to change it), and :func:`~alerts.drift.compare.compare`. A difference is a ``state_drift``
alert for the object (the alert lifecycle and notifiers, one alert per object); an object that
matches again resolves its alert. With ``repair`` the fetched object is appended like a sync
(origin ``sync``, the exact bytes, :func:`processors.sync.store.store`) and applied through the
processors; the state is never edited here. If that made the state match, the alert is resolved
at once, its history saying by which delivery.

The worker's sweep (:func:`drift_sweep`) walks the state a budget of calls at a time
(``DRIFT__CALLS_PER_MINUTE``, spaced evenly), from the position it stopped at
(``alerts.drift_positions``), so a large account is covered gradually; ``ledgerhook drift`` and
``POST /drift`` check one object, one type, or everything, on demand. A provider failing after
every retry stops the run (the position is kept) and counts towards ``provider_api``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import cast

import asyncpg
import msgspec

from alerts import lifecycle, notify, rules
from alerts.drift.compare import Verdict, compare
from alerts.model import Facts, StateDrift
from audit.dbtypes import Conn
from ledgerhook import metrics
from ledgerhook.settings import Settings
from processors import repository as repo
from processors.errors import InvalidSyncRequest, NormalisationError, ObjectGone, ProviderError
from processors.model import OBJECT_TYPES, Body, ObjectType, ObjectUpdate, StoredObject
from processors.normalize import normalize_delivery
from processors.service import process_batch
from processors.sync import kinds, target
from processors.sync.api import Fetched, ProviderApi, make_api
from processors.sync.store import SyncTarget, store

__all__ = ["DriftReport", "drift_sweep", "find_object", "load_objects", "run_drift"]

log = logging.getLogger(__name__)
_body = msgspec.json.Decoder(Body)
_BATCH = 100
_RESOLVE_EVERY = 500


class DriftReport(msgspec.Struct, kw_only=True):
    provider: str
    account: str
    checked: int = 0
    matched: int = 0
    drifted: int = 0
    repaired: int = 0
    skipped: int = 0
    gone: int = 0
    failed: int = 0
    opened: list[int] = []
    resolved: list[int] = []
    drifts: list[StateDrift] = []
    error: str | None = None


class _Copy(msgspec.Struct, frozen=True, kw_only=True):
    fetched: Fetched
    fetched_at: int
    headers: str
    update: ObjectUpdate


class Pacer:
    """At most ``per_minute`` calls a minute, spaced evenly (the first one at once)."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.spacing = 60.0 / per_minute if per_minute > 0 else 0.0
        self.clock = clock
        self._next = 0.0

    async def wait(self) -> None:
        now = self.clock()
        if self._next > now:
            await asyncio.sleep(self._next - now)
            now = self._next
        self._next = now + self.spacing


def _stored(
    object_type: ObjectType, provider: str, account: str, r: asyncpg.Record
) -> StoredObject:
    return StoredObject(
        object_type=object_type,
        provider=provider,
        account=account,
        id=r["id"],
        version=r["version"],
        deleted=r["deleted"],
        body=_body.decode(r["data"]),
        last_delivery_id=r["last_delivery_id"],
    )


async def load_objects(
    conn: Conn, provider: str, account: str, object_type: ObjectType, after_id: str, *, limit: int
) -> list[StoredObject]:
    """State objects of one type in id order after ``after_id`` (keyset)."""
    rows = await conn.fetch(
        f"SELECT id, data::text AS data, version, deleted, last_delivery_id "
        f"FROM processors.{repo.TABLES[object_type]} "
        "WHERE provider = $1 AND account = $2 AND id > $3 ORDER BY id LIMIT $4",
        provider,
        account,
        after_id,
        limit,
    )
    return [_stored(object_type, provider, account, r) for r in rows]


async def find_object(
    conn: Conn, provider: str, account: str, object_id: str, object_type: ObjectType | None
) -> StoredObject | None:
    for t in (object_type,) if object_type else OBJECT_TYPES:
        found = await repo.load_state(conn, t, provider, account, object_id)
        if found is not None:
            return found
    return None


async def _pending(conn: Conn, provider: str, account: str, object_id: str) -> bool:
    """Deliveries for the object not processed yet: the state may be about to change."""
    found: bool = await conn.fetchval(
        """
        SELECT EXISTS (
            SELECT 1 FROM audit.deliveries d
            WHERE d.object_id = $3 AND d.provider = $1 AND d.account = $2
              AND NOT EXISTS (SELECT 1 FROM processors.processed p WHERE p.delivery_id = d.id))
        """,
        provider,
        account,
        object_id,
    )
    return found


class _Run:
    """One run's checks, findings and resolutions."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        api: ProviderApi,
        where: SyncTarget,
        *,
        repair: bool,
        pacer: Pacer,
    ) -> None:
        self.pool, self.settings, self.api, self.where = pool, settings, api, where
        self.repair, self.pacer = repair, pacer
        self.report = DriftReport(provider=where.provider, account=where.account)
        self.clean: list[str] = []
        self.fixed: list[tuple[str, int]] = []
        self.last_checked: StoredObject | None = None

    def _count(self, obj: StoredObject, result: str) -> None:
        metrics.drift_checks.labels(
            provider=self.where.provider, object_type=obj.object_type, result=result
        ).inc()

    async def _fetch(self, obj: StoredObject) -> _Copy | None:
        """The provider's current copy, normalised like a synced snapshot; None: gone."""
        kind = kinds.kind_of_state(self.where.provider, obj)
        try:
            fetched, fetched_at, headers = await self.api.retrieve(kind, obj.id)
        except ObjectGone:
            return None
        event = normalize_delivery(
            self.where.provider,
            fetched.raw,
            account=self.where.account,
            origin="sync",
            event_id="",
            event_type=f"snapshot.{kind}",
            event_created=fetched_at,
        )
        assert event is not None
        return _Copy(
            fetched=fetched, fetched_at=fetched_at, headers=headers, update=event.updates[0]
        )

    async def _repair(self, obj: StoredObject, copy: _Copy) -> tuple[int, bool]:
        """Append the copy like a sync and apply it; (its delivery, whether the state matches now)."""
        async with self.pool.acquire() as conn:
            (appended,) = await store(
                cast(Conn, conn),
                self.where,
                [copy.fetched],
                fetched_at=copy.fetched_at,
                headers=copy.headers,
                key_fingerprint=self.api.key_fingerprint,
            )
            await process_batch(conn, [appended.id])
            now_state = await repo.load_state(
                conn, obj.object_type, obj.provider, obj.account, obj.id
            )
        assert now_state is not None
        return appended.id, compare(now_state, copy.update).result == "match"

    async def check(self, obj: StoredObject) -> None:
        r = self.report
        await self.pacer.wait()
        r.checked += 1
        try:
            copy = await self._fetch(obj)
        except NormalisationError as exc:
            r.failed += 1
            self._count(obj, "failed")
            log.warning(
                "drift check: the provider's copy cannot be read",
                extra={"object_id": obj.id, "error": str(exc)[:200]},
            )
            return
        self.last_checked = obj
        async with self.pool.acquire() as conn:
            if await _pending(conn, obj.provider, obj.account, obj.id):
                r.skipped += 1
                self._count(obj, "pending")
                return
        update = copy.update if copy is not None else None
        verdict = compare(obj, update)
        subject = rules.drift_subject(_drift(obj, verdict, update))
        if verdict.result == "state_newer":
            r.skipped += 1
            self._count(obj, "state_newer")
            return
        if verdict.result == "match":
            r.matched += 1
            self._count(obj, "match")
            self.clean.append(subject)
            if len(self.clean) >= _RESOLVE_EVERY:
                await self._resolve_clean(datetime.now(UTC))
            return
        repair_id, repaired = None, False
        if self.repair and copy is not None:
            repair_id, repaired = await self._repair(obj, copy)
        if verdict.result == "gone":
            r.gone += 1
        r.drifted += 1
        self._count(obj, "repaired" if repaired else verdict.result)
        if repaired:
            r.repaired += 1
            assert repair_id is not None
            self.fixed.append((subject, repair_id))
        r.drifts.append(_drift(obj, verdict, update, repair_id=repair_id, repaired=repaired))

    async def _resolve_clean(self, now: datetime) -> None:
        """Resolve the alerts of objects found matching (in batches: a sweep may check many)."""
        subjects, self.clean = self.clean, []
        async with self.pool.acquire() as conn:
            self.report.resolved += await lifecycle.resolve_subjects(
                conn,
                rule="state_drift",
                subjects=subjects,
                now=now,
                note="the object matches the provider again",
                channels=notify.channels(self.settings),
            )

    async def finish(self, now: datetime) -> DriftReport:
        r = self.report
        channels = notify.channels(self.settings)
        findings = rules.state_drift(
            Facts(config=self.settings.alerts, drifts=tuple(r.drifts)), now
        )
        await self._resolve_clean(now)
        async with self.pool.acquire() as conn:
            fired = await lifecycle.apply_findings(conn, findings, now, channels)
            r.opened = [f.alert_id for f in fired if f.opened]
            for subject, delivery_id in self.fixed:
                r.resolved += await lifecycle.resolve_subjects(
                    conn,
                    rule="state_drift",
                    subjects=[subject],
                    now=now,
                    note=f"repaired: the provider's copy was appended as delivery {delivery_id} "
                    "and applied; the object matches the provider again",
                    channels=channels,
                )
            await lifecycle.refresh_gauges(conn)
        return r


def _drift(
    obj: StoredObject,
    verdict: Verdict,
    update: ObjectUpdate | None,
    *,
    repair_id: int | None = None,
    repaired: bool = False,
) -> StateDrift:
    return StateDrift(
        provider=obj.provider,
        account=obj.account,
        object_type=obj.object_type,
        object_id=obj.id,
        fields=verdict.fields,
        gone=verdict.result == "gone",
        last_delivery_id=obj.last_delivery_id,
        state_version=obj.version,
        provider_version=update.version if update is not None else "",
        repair_delivery_id=repair_id,
        repaired=repaired,
    )


async def run_drift(
    pool: asyncpg.Pool,
    settings: Settings,
    provider: str,
    *,
    endpoint: str | None = None,
    object_type: ObjectType | None = None,
    object_id: str | None = None,
    repair: bool = False,
    calls_per_minute: float | None = None,
    api: ProviderApi | None = None,
    now: datetime | None = None,
    progress: Callable[[DriftReport], None] | None = None,
) -> DriftReport:
    """Check one object (``object_id``), one type, or every state object of the endpoint's
    account, at most ``calls_per_minute`` (default ``DRIFT__CALLS_PER_MINUTE``) calls a minute."""
    where = target(settings, provider, endpoint)
    own_api = api is None
    api = api or make_api(settings, provider, operation="drift")
    run = _Run(
        pool,
        settings,
        api,
        where,
        repair=repair,
        pacer=Pacer(calls_per_minute or settings.drift.calls_per_minute),
    )
    try:
        if object_id is not None:
            async with pool.acquire() as conn:
                obj = await find_object(conn, provider, where.account, object_id, object_type)
            if obj is None:
                raise InvalidSyncRequest(
                    f"{provider} object {object_id} is not in the billing state of "
                    f"{where.account}; `ledgerhook sync` brings in objects it does not have"
                )
            await run.check(obj)
        else:
            for t in (object_type,) if object_type else OBJECT_TYPES:
                after = ""
                while True:
                    async with pool.acquire() as conn:
                        batch = await load_objects(
                            conn, provider, where.account, t, after, limit=_BATCH
                        )
                    for obj in batch:
                        await run.check(obj)
                        if progress is not None:
                            progress(run.report)
                    if len(batch) < _BATCH:
                        break
                    after = batch[-1].id
    except ProviderError as exc:
        run.report.failed += 1
        run.report.error = str(exc)
    finally:
        if own_api:
            await api.close()
    return await run.finish(now or datetime.now(UTC))


async def _position(conn: Conn, provider: str, account: str, now: datetime) -> asyncpg.Record:
    await conn.execute(
        "INSERT INTO alerts.drift_positions (provider, account, updated_at) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING",
        provider,
        account,
        now,
    )
    row = await conn.fetchrow(
        "SELECT object_type, last_id, passes FROM alerts.drift_positions "
        "WHERE provider = $1 AND account = $2",
        provider,
        account,
    )
    assert row is not None
    return cast(asyncpg.Record, row)


async def _sweep_provider(
    pool: asyncpg.Pool, settings: Settings, provider: str, api: ProviderApi, now: datetime
) -> DriftReport:
    d = settings.drift
    where = target(settings, provider, None if d.endpoint == "default" else d.endpoint)
    budget = max(1, d.calls_per_minute * d.interval_seconds // 60)
    deadline = time.monotonic() + d.interval_seconds * 0.9
    async with pool.acquire() as conn:
        pos = await _position(conn, provider, where.account, now)
    types = list(OBJECT_TYPES)
    start = types.index(pos["object_type"]) if pos["object_type"] in types else 0
    after = pos["last_id"] if pos["object_type"] in types else ""
    run = _Run(pool, settings, api, where, repair=d.repair, pacer=Pacer(d.calls_per_minute))
    position: tuple[str, str] = (pos["object_type"], pos["last_id"])
    wrapped = False
    try:
        i = start
        while run.report.checked < budget and time.monotonic() < deadline:
            if i >= len(types):
                wrapped, position = True, ("", "")
                break
            async with pool.acquire() as conn:
                batch = await load_objects(
                    conn, provider, where.account, types[i], after, limit=min(_BATCH, budget)
                )
            for obj in batch:
                if run.report.checked >= budget or time.monotonic() >= deadline:
                    break
                await run.check(obj)
                position = (obj.object_type, obj.id)
            else:
                if len(batch) < min(_BATCH, budget):
                    i, after = i + 1, ""
                    continue
                after = batch[-1].id
                continue
            break
    except ProviderError as exc:
        run.report.failed += 1
        run.report.error = str(exc)
        if run.last_checked is not None:
            position = (run.last_checked.object_type, run.last_checked.id)
    async with pool.acquire() as conn:
        await conn.execute(
            """
            UPDATE alerts.drift_positions SET object_type = $3, last_id = $4,
                passes = passes + $5, checked = checked + $6,
                consecutive_failures = CASE WHEN $7::text IS NULL THEN 0
                                            ELSE consecutive_failures + 1 END,
                last_error = $7, updated_at = $8
            WHERE provider = $1 AND account = $2
            """,
            provider,
            where.account,
            position[0],
            position[1],
            1 if wrapped else 0,
            run.report.checked,
            None if run.report.error is None else run.report.error[:500],
            now,
        )
    return await run.finish(now)


async def drift_sweep(
    pool: asyncpg.Pool,
    settings: Settings,
    providers: Sequence[str],
    now: datetime | None = None,
    make: Callable[[Settings, str], ProviderApi] | None = None,
) -> list[DriftReport]:
    """The worker's periodic slice of drift checks, for each provider with an API key."""
    out = []
    for provider in providers:
        api = (make or (lambda s, p: make_api(s, p, operation="drift")))(settings, provider)
        try:
            report = await _sweep_provider(pool, settings, provider, api, now or datetime.now(UTC))
            out.append(report)
            if report.drifted or report.error:
                log.warning(
                    "drift sweep found differences or failed",
                    extra={
                        "provider": provider,
                        "checked": report.checked,
                        "drifted": report.drifted,
                        "error": report.error,
                    },
                )
        except Exception:
            log.exception("drift sweep of %s failed; continued next interval", provider)
        finally:
            await api.close()
    return out
