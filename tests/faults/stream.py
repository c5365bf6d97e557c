"""A stream of signed webhook deliveries shaped like the real fixtures, as providers send them.

Every event is a real fixture body with a distinct event id (fixture ids repeat across files) and
a distinct, increasing provider time, so "which came first" is always defined. The send schedule
mixes in redeliveries (the same bytes again, freshly signed, as Stripe and Chargebee do on retry)
and shuffles sends inside a sliding window, so events of one object arrive out of order.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
if not FIXTURES.exists():
    FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"

STRIPE_SECRET = "whsec_fault_harness_0123456789abcdef"
CHARGEBEE_AUTH = "cbfault:harness-pass"
STRIPE_ACCOUNT = "acct_fault"
CHARGEBEE_SITE = "fault-site"

# Chargebee event types derived from the one real fixture (same envelope, see fixtures/README).
_CHARGEBEE_TYPES = (
    "subscription_created",
    "subscription_changed",
    "subscription_renewed",
    "subscription_cancelled",
)


@dataclass(frozen=True, slots=True)
class Event:
    """One provider event: what a provider would (re)send, byte for byte."""

    index: int
    provider: str
    event_id: str
    event_type: str
    body: bytes


def _stripe_templates() -> list[dict[str, Any]]:
    return [
        msgspec.json.decode(p.read_bytes()) for p in sorted((FIXTURES / "stripe").glob("*.json"))
    ]


def _chargebee_template() -> dict[str, Any]:
    raw = msgspec.json.decode(
        (FIXTURES / "chargebee" / "event_subscription_created_retrieve.json").read_bytes()
    )
    event: dict[str, Any] = raw["event"]
    return event


def build_events(count: int, *, tag: str, seed: int, chargebee_share: float = 0.2) -> list[Event]:
    """``count`` distinct events; ids ``evt_<tag>_<n>``, provider time strictly increasing."""
    rng = random.Random(seed)
    stripe = _stripe_templates()
    chargebee = _chargebee_template()
    base_time = 1_760_000_000
    events: list[Event] = []
    for n in range(count):
        if rng.random() < chargebee_share:
            data = msgspec.json.decode(msgspec.json.encode(chargebee))
            event_type = rng.choice(_CHARGEBEE_TYPES)
            data["id"] = f"ev_{tag}_{n}"
            data["event_type"] = event_type
            data["occurred_at"] = base_time + n
            sub = data["content"]["subscription"]
            sub["resource_version"] = (base_time + n) * 1000
            sub["updated_at"] = base_time + n
            events.append(
                Event(
                    index=n,
                    provider="chargebee",
                    event_id=data["id"],
                    event_type=event_type,
                    body=msgspec.json.encode(data),
                )
            )
        else:
            data = msgspec.json.decode(msgspec.json.encode(rng.choice(stripe)))
            data["id"] = f"evt_{tag}_{n}"
            data["created"] = base_time + n
            events.append(
                Event(
                    index=n,
                    provider="stripe",
                    event_id=data["id"],
                    event_type=data["type"],
                    body=msgspec.json.encode(data),
                )
            )
    return events


def schedule(events: list[Event], *, redeliver: float, window: int, seed: int) -> list[Event]:
    """Send order: every event once, ``redeliver`` extra sends of earlier events, shuffled locally."""
    rng = random.Random(seed)
    order: list[Event] = []
    for event in events:
        order.append(event)
        if order and rng.random() < redeliver / (1 - redeliver):
            order.append(rng.choice(order))
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        rng.shuffle(chunk)
        order[start : start + window] = chunk
    return order


def stripe_signature(body: bytes, timestamp: int, secret: str = STRIPE_SECRET) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def chargebee_authorization(pair: str = CHARGEBEE_AUTH) -> str:
    return "Basic " + base64.b64encode(pair.encode()).decode()


def headers_for(event: Event, now: float) -> dict[str, str]:
    """Headers a provider would send now (a redelivery is signed again with a new timestamp)."""
    headers = {"content-type": "application/json; charset=utf-8"}
    if event.provider == "stripe":
        headers["stripe-signature"] = stripe_signature(event.body, int(now))
        headers["user-agent"] = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
    else:
        headers["authorization"] = chargebee_authorization()
        headers["user-agent"] = "ChargeBee"
    return headers
