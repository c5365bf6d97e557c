"""Does a state object still say what the provider says? Pure: two neutral snapshots in, a verdict.

Both sides are the neutral model (processors.model): the state's stored body, and the provider's
current object put through the same snapshot normaliser a sync uses. So representation is not
drift (key order, currency case, Stripe's API versions moving fields around, Chargebee's status
words): only what the billing state holds is compared, field by field, plus ``deleted``.
Subscription items are compared as a set (ordered by price). Fields an API version may not carry
at all (:data:`VERSION_DEPENDENT`: a Stripe payment's invoice since 2025-03-31, an invoice's
subscription when its parent is not expanded) are compared only when the provider's copy has
them.

Verdicts: ``match``; ``drift`` (the differing fields); ``state_newer`` (the state's version is
above the fetched one: an event newer than the fetch was applied meanwhile, nothing to compare);
``gone`` (the provider has no such object, and the state does not say it is deleted).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from processors.model import ObjectUpdate, StoredObject

__all__ = ["VERSION_DEPENDENT", "Verdict", "compare", "held_fields"]

VERSION_DEPENDENT: dict[str, frozenset[str]] = {
    "payment": frozenset({"invoice_id"}),
    "invoice": frozenset({"subscription_id"}),
}


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    result: Literal["match", "drift", "state_newer", "gone"]
    # field -> [state value, provider value]
    fields: dict[str, list[Any]] = {}


def held_fields(body: object, deleted: bool) -> dict[str, Any]:
    """What the state holds of an object, in a form where equal means equal."""
    out: dict[str, Any] = msgspec.to_builtins(body)
    out.pop("type", None)
    items = out.get("items")
    if isinstance(items, list | tuple):
        out["items"] = sorted(items, key=lambda i: (str(i.get("price_id")), str(i)))
    out["deleted"] = deleted
    return out


def compare(stored: StoredObject, fetched: ObjectUpdate | None) -> Verdict:
    """``fetched`` None: the provider answered that the object does not exist."""
    if fetched is None:
        if stored.deleted:
            return Verdict(result="match")
        return Verdict(result="gone", fields={"deleted": [False, True]})
    if fetched.version < stored.version:
        return Verdict(result="state_newer")
    state = held_fields(stored.body, stored.deleted)
    provider = held_fields(fetched.body, fetched.deleted)
    if fetched.tombstone:  # all the provider says is "deleted"
        state, provider = {"deleted": state["deleted"]}, {"deleted": provider["deleted"]}
    optional = VERSION_DEPENDENT.get(stored.object_type, frozenset())
    fields = {
        key: [state.get(key), provider.get(key)]
        for key in sorted(set(state) | set(provider))
        if state.get(key) != provider.get(key)
        and not (key in optional and provider.get(key) is None)
    }
    return Verdict(result="drift", fields=fields) if fields else Verdict(result="match")
