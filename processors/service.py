"""Apply one audited delivery to billing state, exactly once: claim → lock → apply → mark.

Everything happens in ONE transaction, so a crash at any point applies all or nothing, and the
processed row written at the end makes a second run a no-op:

1. Lock the *event* (advisory lock on provider/account/event id). Two deliveries of one event, or
   two jobs for one delivery, now run one after the other.
2. If this delivery has a processed row with a final outcome: return it (no-op).
3. If another delivery of the same event already settled it (applied, stale or ignored):
   record ``duplicate``. Whichever delivery of an event is processed first applies it; this is
   what makes a duplicate of a still-unprocessed or dead-lettered delivery safe: it tries the
   event itself (and dead-letters too if the payload is bad). The partial unique index
   ``processed_event_once`` makes a second settlement impossible even if this logic were wrong.
4. Normalise (pure). Unknown type → ``ignored``. Bad payload → :class:`NormalisationError`: the
   transaction rolls back, and a second, separate transaction records ``dead_letter``.
5. Lock every object the event touches (advisory locks taken in sorted key order, after the
   event lock, so two transactions never wait on each other in a cycle), load, apply the pure
   transition, write state, history, subscription changes and anomalies, and the processed row.

:func:`process_delivery` is usable outside arq (reconciliation backfills call it directly).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from audit.dbtypes import Conn
from ledgerhook import metrics
from processors import repository as repo
from processors.errors import DeliveryNotFound, NormalisationError
from processors.normalize import normalize
from processors.transitions import Transition, apply

__all__ = ["LOCK_TIMEOUT", "process_delivery"]

log = logging.getLogger(__name__)

# A lock held longer than this is a stuck transaction; give up and let the job retry.
LOCK_TIMEOUT = "10s"


def _object_key(provider: str, account: str, object_type: str, object_id: str) -> str:
    return f"obj\x1f{provider}\x1f{account}\x1f{object_type}\x1f{object_id}"


def _event_key(d: repo.Delivery) -> str:
    return f"evt\x1f{d.provider}\x1f{d.account}\x1f{d.event_id}"


async def _apply(conn: Conn, d: repo.Delivery) -> tuple[str, bool]:
    """(outcome, whether this call decided it rather than finding it already recorded)."""
    await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    await repo.lock(conn, _event_key(d))
    done = await repo.processed_outcome(conn, d.id)
    if done is not None and done != "dead_letter":
        return done, False
    if await repo.event_settled(conn, d.provider, d.account, d.event_id) is not None:
        await repo.record_outcome(conn, d, outcome="duplicate")
        return "duplicate", True
    event = normalize(d.provider, d.body, account=d.account)
    if event is None or not event.updates:
        await repo.record_outcome(conn, d, outcome="ignored")
        return "ignored", True
    keys = sorted(
        {_object_key(d.provider, d.account, u.object_type, u.object_id) for u in event.updates}
    )
    for key in keys:
        await repo.lock(conn, key)
    transitions: list[Transition] = []
    for u in event.updates:
        prior = await repo.load_state(conn, u.object_type, d.provider, d.account, u.object_id)
        t = apply(prior, u, provider=d.provider, account=d.account, delivery_id=d.id)
        transitions.append(t)
        if t.outcome == "applied":
            await repo.save_state(conn, [t.state])
        elif t.outcome == "unchanged" and u.related:
            continue  # context resent as it was: nothing to record
        await repo.insert_history(
            conn,
            provider=d.provider,
            account=d.account,
            object_type=u.object_type,
            object_id=u.object_id,
            delivery_id=d.id,
            event_type=d.event_type,
            version=u.version,
            outcome=t.outcome,
            change=t.change,
        )
        if t.subscription_change is not None:
            await repo.insert_subscription_change(
                conn,
                t.subscription_change,
                provider=d.provider,
                account=d.account,
                subscription_id=u.object_id,
                delivery_id=d.id,
                event_type=d.event_type,
                version=u.version,
            )
        await repo.insert_anomalies(
            conn,
            t.anomalies,
            provider=d.provider,
            account=d.account,
            delivery_id=d.id,
            event_type=d.event_type,
            event_created=d.event_created,
        )
    main, first = event.updates[0], transitions[0]
    outcome = "stale" if first.outcome == "stale" else "applied"
    await repo.record_outcome(
        conn,
        d,
        outcome=outcome,
        object_type=main.object_type,
        object_id=main.object_id,
        change=first.change,
    )
    return outcome, True


async def _dead_letter(conn: Conn, d: repo.Delivery, error: str) -> str:
    async with conn.transaction():
        await repo.lock(conn, _event_key(d))
        done = await repo.processed_outcome(conn, d.id)
        if done is not None and done != "dead_letter":
            return done
        await repo.record_outcome(conn, d, outcome="dead_letter", error=error[:2000])
    return "dead_letter"


async def process_delivery(conn: Conn, delivery_id: int) -> str:
    """Process one delivery; returns its outcome. Idempotent: a second call returns the first outcome.

    Raises :class:`DeliveryNotFound` for an id not in the log, and lets asyncpg's errors through
    (the caller decides whether to retry: every effect was rolled back).
    """
    d = await repo.fetch_delivery(conn, delivery_id)
    if d is None:
        raise DeliveryNotFound(f"delivery {delivery_id} is not in the audit log")
    try:
        async with conn.transaction():
            outcome, fresh = await _apply(conn, d)
    except NormalisationError as exc:
        log.warning(
            "delivery dead-lettered",
            extra={"delivery_id": d.id, "event_type": d.event_type, "error": str(exc)},
        )
        outcome = await _dead_letter(conn, d, str(exc))
        fresh = True
    if not fresh:
        return outcome
    metrics.events_processed.labels(provider=d.provider, outcome=outcome).inc()
    if outcome == "applied":
        age = (datetime.now(UTC) - d.received_at).total_seconds()
        metrics.receipt_to_applied_seconds.labels(provider=d.provider).observe(max(age, 0.0))
    return outcome
