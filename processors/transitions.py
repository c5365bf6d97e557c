"""Pure state transitions: ``apply(state, update, delivery_id) -> Transition``. No I/O, no clock.

The rule that makes the result independent of arrival order: an update replaces the state only
when its version is strictly higher than the stored one. Updates carry full snapshots, so the
final state is the snapshot with the highest version among everything applied, whatever the
order. An older update is *stale*: recorded, not applied, and reported as ``out_of_order``. An
update with the stored version is the same snapshot again (Chargebee sends unchanged related
resources with their old ``resource_version``): ``unchanged``, no anomaly. An update for an
object never seen creates it from its snapshot; unless it is the object's creation event, that
is a ``missing_predecessor`` anomaly.

Snapshots (objects fetched from the provider's API, ``update.snapshot``) follow the same rule
with two differences: they introduce objects without a missing-predecessor anomaly and without a
``created`` business change (the object existed before Ledgerhook looked), and a snapshot older
than the stored state is stale without an ``out_of_order`` anomaly (a newer event simply won).
A tombstone snapshot keeps the stored fields and marks the object deleted.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from processors.model import Anomaly, ObjectUpdate, StoredObject, Subscription

__all__ = ["SubscriptionChange", "Transition", "apply", "classify", "diff"]

ChangeKind = Literal[
    "created",
    "upgraded",
    "downgraded",
    "quantity_changed",
    "plan_switched",
    "canceled",
    "reactivated",
    "renewed",
    "paused",
    "resumed",
]


class SubscriptionChange(msgspec.Struct, frozen=True, kw_only=True):
    kind: ChangeKind
    mrr_before: int
    mrr_after: int
    currency: str | None

    @property
    def mrr_delta(self) -> int:
        return self.mrr_after - self.mrr_before


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    outcome: Literal["applied", "stale", "unchanged"]
    # The state after the update: the prior state when stale or unchanged.
    state: StoredObject
    anomalies: tuple[Anomaly, ...] = ()
    # Field-level diff {"field": [old, new]} the update made (empty unless applied).
    change: dict[str, list[Any]] = {}
    subscription_change: SubscriptionChange | None = None


def _fields(state: StoredObject | None) -> dict[str, Any]:
    if state is None:
        return {}
    out: dict[str, Any] = msgspec.to_builtins(state.body)
    out.pop("type", None)
    out["deleted"] = state.deleted
    return out


def diff(old: StoredObject | None, new: StoredObject) -> dict[str, list[Any]]:
    """Fields whose value differs, as ``{"field": [old, new]}`` (old is None for a new object)."""
    before, after = _fields(old), _fields(new)
    return {
        key: [before.get(key), value]
        for key, value in after.items()
        if key not in before or before[key] != value
    }


def _price_quantities(sub: Subscription) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in sub.items:
        out[item.price_id] = out.get(item.price_id, 0) + item.quantity
    return out


def _unit_amounts(sub: Subscription) -> dict[str, int]:
    return {item.price_id: item.unit_amount for item in sub.items}


def _kind(
    old: Subscription, new: Subscription, old_deleted: bool, new_deleted: bool
) -> ChangeKind | None:
    was_canceled = old.status == "canceled" or old_deleted
    is_canceled = new.status == "canceled" or new_deleted
    if is_canceled and not was_canceled:
        return "canceled"
    if was_canceled and not is_canceled:
        return "reactivated"
    if new.cancel_at_period_end and not old.cancel_at_period_end:
        return "canceled"
    if old.cancel_at_period_end and not new.cancel_at_period_end:
        return "reactivated"
    if new.status == "paused" and old.status != "paused":
        return "paused"
    if old.status == "paused" and new.status != "paused":
        return "resumed"
    old_q, new_q = _price_quantities(old), _price_quantities(new)
    if set(old_q) != set(new_q):
        if new.mrr > old.mrr:
            return "upgraded"
        if new.mrr < old.mrr:
            return "downgraded"
        return "plan_switched"
    if old_q != new_q:
        return "quantity_changed"
    if _unit_amounts(old) != _unit_amounts(new):
        return "upgraded" if new.mrr >= old.mrr else "downgraded"
    if (
        new.current_period_start is not None
        and old.current_period_start is not None
        and new.current_period_start > old.current_period_start
    ):
        return "renewed"
    return None


def classify(old: StoredObject | None, new: StoredObject) -> SubscriptionChange | None:
    """The business meaning of a subscription update, with its MRR delta; None if it has none."""
    if not isinstance(new.body, Subscription):
        return None
    if old is None or not isinstance(old.body, Subscription):
        kind: ChangeKind | None = "created"
        before = 0
    else:
        kind = _kind(old.body, new.body, old.deleted, new.deleted)
        before = old.body.mrr
    if kind is None:
        return None
    return SubscriptionChange(
        kind=kind, mrr_before=before, mrr_after=new.body.mrr, currency=new.body.currency
    )


def apply(
    state: StoredObject | None,
    update: ObjectUpdate,
    *,
    provider: str,
    account: str,
    delivery_id: int,
) -> Transition:
    body = update.body
    if update.tombstone and state is not None and type(state.body) is type(update.body):
        body = state.body  # the provider said only "deleted": keep what was known
    new = StoredObject(
        object_type=update.object_type,
        provider=provider,
        account=account,
        id=update.object_id,
        version=update.version,
        deleted=update.deleted,
        body=body,
        last_delivery_id=delivery_id,
    )
    if state is None:
        anomalies: tuple[Anomaly, ...] = ()
        if not update.creates and not update.related and not update.snapshot:
            anomalies = (
                Anomaly(
                    kind="missing_predecessor",
                    object_type=update.object_type,
                    object_id=update.object_id,
                    detail={"version": update.version},
                ),
            )
        return Transition(
            outcome="applied",
            state=new,
            anomalies=anomalies,
            change=diff(None, new),
            subscription_change=None if update.snapshot else classify(None, new),
        )
    if update.version == state.version:
        return Transition(outcome="unchanged", state=state)
    if update.version < state.version:
        anomaly = Anomaly(
            kind="out_of_order",
            object_type=update.object_type,
            object_id=update.object_id,
            detail={"version": update.version, "stored_version": state.version},
        )
        quiet = update.related or update.snapshot
        return Transition(outcome="stale", state=state, anomalies=() if quiet else (anomaly,))
    return Transition(
        outcome="applied",
        state=new,
        change=diff(state, new),
        subscription_change=classify(state, new),
    )
