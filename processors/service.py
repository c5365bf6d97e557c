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
5. Lock every object the event touches (advisory locks taken in ascending hash order, after the
   event lock, so two transactions never wait on each other in a cycle), load, apply the pure
   transition, write state, history, subscription changes and anomalies, and the processed row.

:func:`process_delivery` is usable outside arq (reconciliation backfills call it directly).

:func:`process_batch` does the same for many deliveries in ONE transaction, with a fixed number
of statements per batch instead of per delivery (the worker's throughput is round trips and
commits, see ``bench/results/profile.md``). Same steps, same rules, same lock order (all event
locks, then all object locks, each in hash order). Deliveries are decided in id order and the
batch carries its own state forward, so the result equals processing them one by one in id
order. If anything in the batch fails, the transaction rolls back and every delivery of the batch
is processed alone with :func:`process_delivery`: a failure stays the failing delivery's own.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from audit.dbtypes import Conn
from ledgerhook import metrics
from processors import repository as repo
from processors.errors import DeliveryNotFound, NormalisationError
from processors.model import NeutralEvent, StoredObject
from processors.normalize import SNAPSHOT_ORIGIN, normalize, normalize_delivery
from processors.transitions import Transition, apply

__all__ = ["LOCK_TIMEOUT", "Batch", "process_batch", "process_delivery"]

log = logging.getLogger(__name__)

# A lock held longer than this is a stuck transaction; give up and let the job retry.
LOCK_TIMEOUT = "10s"


def _normalize(d: repo.Delivery) -> NeutralEvent | None:
    if d.origin != SNAPSHOT_ORIGIN:
        return normalize(d.provider, d.body, account=d.account)
    return normalize_delivery(
        d.provider,
        d.body,
        account=d.account,
        origin=d.origin,
        event_id=d.event_id,
        event_type=d.event_type,
        event_created=d.event_created,
    )


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
    event = _normalize(d)
    if event is None or not event.updates:
        await repo.record_outcome(conn, d, outcome="ignored")
        return "ignored", True
    keys = sorted(
        {_object_key(d.provider, d.account, u.object_type, u.object_id) for u in event.updates}
    )
    await repo.lock_all(conn, keys)
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
    if fresh:
        _count(d, outcome)
    return outcome


def _count(d: repo.Delivery, outcome: str) -> None:
    metrics.events_processed.labels(provider=d.provider, outcome=outcome).inc()
    if outcome == "applied":
        age = (datetime.now(UTC) - d.received_at).total_seconds()
        metrics.receipt_to_applied_seconds.labels(provider=d.provider).observe(max(age, 0.0))


class Batch:
    """The rows one batch writes, gathered while deciding its deliveries in id order.

    ``processors.replay`` folds the whole log through this same class, so a rebuild derives
    history, subscription changes and anomalies exactly as live processing does.
    """

    def __init__(self, states: dict[repo.StateKey, StoredObject]) -> None:
        self.states = states
        self.changed: dict[repo.StateKey, StoredObject] = {}
        self.history: list[repo.HistoryRow] = []
        self.changes: list[repo.ChangeRow] = []
        self.anomalies: list[repo.AnomalyRow] = []

    def apply(self, d: repo.Delivery, event: NeutralEvent) -> repo.Outcome:
        """:func:`_apply`'s step 5 for one delivery, against the batch's current states."""
        transitions: list[Transition] = []
        for u in event.updates:
            key = (u.object_type, d.provider, d.account, u.object_id)
            t = apply(
                self.states.get(key), u, provider=d.provider, account=d.account, delivery_id=d.id
            )
            transitions.append(t)
            if t.outcome == "applied":
                self.states[key] = self.changed[key] = t.state
            elif t.outcome == "unchanged" and u.related:
                continue
            self.history.append(
                repo.HistoryRow(
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
            )
            if t.subscription_change is not None:
                self.changes.append(
                    repo.ChangeRow(
                        change=t.subscription_change,
                        provider=d.provider,
                        account=d.account,
                        subscription_id=u.object_id,
                        delivery_id=d.id,
                        event_type=d.event_type,
                        version=u.version,
                    )
                )
            self.anomalies.extend(
                repo.AnomalyRow(
                    anomaly=a,
                    provider=d.provider,
                    account=d.account,
                    delivery_id=d.id,
                    event_type=d.event_type,
                    event_created=d.event_created,
                )
                for a in t.anomalies
            )
        main, first = event.updates[0], transitions[0]
        return repo.Outcome(
            delivery=d,
            outcome="stale" if first.outcome == "stale" else "applied",
            object_type=main.object_type,
            object_id=main.object_id,
            change=first.change,
        )


async def _apply_batch(conn: Conn, ds: list[repo.Delivery]) -> dict[int, tuple[str, bool]]:
    """:func:`_apply` for many deliveries (sorted by id) in the caller's transaction."""
    await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    await repo.lock_all(conn, [_event_key(d) for d in ds])
    done, settled = await repo.settlement(
        conn, [d.id for d in ds], [(d.provider, d.account, d.event_id) for d in ds]
    )
    result: dict[int, tuple[str, bool]] = {}
    outcomes: list[repo.Outcome] = []
    todo: list[tuple[repo.Delivery, NeutralEvent]] = []
    for d in ds:
        prior = done.get(d.id)
        if prior is not None and prior != "dead_letter":
            result[d.id] = (prior, False)
            continue
        evt = (d.provider, d.account, d.event_id)
        if evt in settled:
            outcomes.append(repo.Outcome(delivery=d, outcome="duplicate"))
            continue
        try:
            event = _normalize(d)
        except NormalisationError as exc:
            log.warning(
                "delivery dead-lettered",
                extra={"delivery_id": d.id, "event_type": d.event_type, "error": str(exc)},
            )
            outcomes.append(repo.Outcome(delivery=d, outcome="dead_letter", error=str(exc)[:2000]))
            continue
        settled.add(evt)
        if event is None or not event.updates:
            outcomes.append(repo.Outcome(delivery=d, outcome="ignored"))
        else:
            todo.append((d, event))
            outcomes.append(repo.Outcome(delivery=d, outcome="pending"))
    keys = {(u.object_type, d.provider, d.account, u.object_id) for d, e in todo for u in e.updates}
    if keys:
        await repo.lock_all(conn, [_object_key(k[1], k[2], k[0], k[3]) for k in keys])
        batch = Batch(await repo.load_states(conn, list(keys)))
        applied = {d.id: batch.apply(d, e) for d, e in todo}
        outcomes = [applied.get(o.delivery.id, o) for o in outcomes]
        await repo.save_states(conn, list(batch.changed.values()))
        await repo.insert_history_rows(conn, batch.history)
        await repo.insert_change_rows(conn, batch.changes)
        await repo.insert_anomaly_rows(conn, batch.anomalies)
    await repo.record_outcomes(conn, outcomes)
    result.update((o.delivery.id, (o.outcome, True)) for o in outcomes)
    return result


async def process_batch(conn: Conn, delivery_ids: list[int]) -> dict[int, str | BaseException]:
    """Process many deliveries; the outcome (or the error) of each, by id.

    Idempotent like :func:`process_delivery`. Errors are per delivery: :class:`DeliveryNotFound`
    for an id not in the log, asyncpg's errors from the one-by-one fallback.
    """
    ids = sorted(set(delivery_ids))
    found = await repo.fetch_deliveries(conn, ids)
    ds = [found[i] for i in ids if i in found]
    out: dict[int, str | BaseException] = {
        i: DeliveryNotFound(f"delivery {i} is not in the audit log") for i in ids if i not in found
    }
    if not ds:
        return out
    try:
        async with conn.transaction():
            decided = await _apply_batch(conn, ds)
    except Exception as exc:  # one bad delivery must not fail the others: go one by one
        if len(ds) > 1:
            log.info(
                "batch failed, processing its deliveries one by one",
                extra={"size": len(ds), "error": type(exc).__name__},
            )
        for d in ds:
            try:
                out[d.id] = await process_delivery(conn, d.id)
            except Exception as one:
                out[d.id] = one
        return out
    for d in ds:
        outcome, fresh = decided[d.id]
        if fresh:
            _count(d, outcome)
        out[d.id] = outcome
    return out
