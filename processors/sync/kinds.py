"""What ``ledgerhook sync`` can list, per provider: list names, object kinds, API paths. Pure.

A *list* is what ``--types`` names (the API's plural: ``customers``, ``charges``,
``transactions``); a *kind* is the object it lists (``customer``, ``charge``, ``transaction``),
which is also the kind in a synced delivery's event type ``snapshot.<kind>``. Lists are synced in
the order below (customers before what refers to them).
"""

from __future__ import annotations

from processors.errors import InvalidSyncRequest
from processors.model import ObjectType, Payment, StoredObject

__all__ = [
    "CHARGEBEE_LISTS",
    "CHARGEBEE_SINCE_FILTER",
    "STRIPE_LISTS",
    "kind_of",
    "kind_of_state",
    "lists",
    "parse_lists",
]

STRIPE_LISTS: dict[str, str] = {
    "customers": "customer",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "charges": "charge",
    "payment_intents": "payment_intent",
    "refunds": "refund",
    "credit_notes": "credit_note",
}
CHARGEBEE_LISTS: dict[str, str] = {
    "customers": "customer",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "transactions": "transaction",
    "credit_notes": "credit_note",
}
# Chargebee's creation-time filter differs per list (customers/subscriptions: created_at).
CHARGEBEE_SINCE_FILTER: dict[str, str] = {
    "customer": "created_at",
    "subscription": "created_at",
    "invoice": "date",
    "transaction": "date",
    "credit_note": "date",
}


def lists(provider: str) -> dict[str, str]:
    if provider == "stripe":
        return STRIPE_LISTS
    if provider == "chargebee":
        return CHARGEBEE_LISTS
    raise InvalidSyncRequest("provider must be stripe or chargebee")


def kind_of(provider: str, list_name: str) -> str:
    return lists(provider)[list_name]


def parse_lists(provider: str, names: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"customers,invoices"`` (or a list) → the lists to sync, in sync order; None → all."""
    known = lists(provider)
    if names is None:
        return tuple(known)
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    wanted = [n for n in wanted if n]
    unknown = sorted(set(wanted) - set(known))
    if unknown or not wanted:
        raise InvalidSyncRequest(
            f"unknown {provider} type(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(known)}"
        )
    return tuple(n for n in known if n in wanted)


_STATE_KINDS: dict[str, dict[ObjectType, str]] = {
    "stripe": {
        "customer": "customer",
        "subscription": "subscription",
        "invoice": "invoice",
        "refund": "refund",
        "credit_note": "credit_note",
    },
    "chargebee": {
        "customer": "customer",
        "subscription": "subscription",
        "invoice": "invoice",
        "payment": "transaction",
        "refund": "transaction",
        "credit_note": "credit_note",
    },
}


def kind_of_state(provider: str, obj: StoredObject) -> str:
    """The provider kind to fetch for a state object (a Stripe payment: charge or payment intent)."""
    if provider == "stripe" and obj.object_type == "payment":
        assert isinstance(obj.body, Payment)
        return "payment_intent" if obj.body.kind == "payment_intent" else "charge"
    return _STATE_KINDS[provider][obj.object_type]
