"""Signed webhook deliveries for the benchmarks, built from the real fixtures right before a run.

Every delivery is a real fixture (``../shared/fixtures``) with a distinct event id, its main
object's id spread over ``objects`` distinct objects (so per-object locking sees realistic
contention, not one hot row), and a provider time that increases with the delivery's index (so
the processors see events in order). Stripe deliveries carry a ``Stripe-Signature`` made now with
the benchmark's ``whsec_`` secret; Chargebee deliveries carry HTTP Basic credentials.

The requests are written as raw HTTP/1.1 bytes, one file per wrk thread (``<dir>/t<N>.req``:
``<length>\\n<bytes>`` records), so each wrk thread loads only its own slice and the Lua script
does no work but hand them out. ``<dir>/t<N>.ids`` lists the event ids of that file, one per line,
in the same order: the per-request results wrk records (thread, index) map back to event ids, and
from there to rows of the audit log.

Run alone: ``python -m bench.loadgen --count 1000 --threads 4 --out /tmp/reqs``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
if not FIXTURES.exists():
    FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"

STRIPE_SECRET = "whsec_bench_0123456789abcdef0123456789abcdef"
CHARGEBEE_USER = "benchhook"
CHARGEBEE_PASSWORD = "bench-pass-0123456789"
STRIPE_ACCOUNT = "acct_bench"
CHARGEBEE_SITE = "bench-site"
ENDPOINT = "bench"

# Billing events the processors apply (the rest would be cheap "ignored" rows and flatter the
# apply benchmark). The mix is the fixture set filtered by type, round-robin.
STRIPE_TYPES = frozenset(
    {
        "customer.created",
        "customer.updated",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.created",
        "invoice.updated",
        "invoice.finalized",
        "invoice.paid",
        "invoice.voided",
        "charge.succeeded",
        "charge.refunded",
        "charge.failed",
        "payment_intent.succeeded",
        "refund.created",
        "refund.updated",
        "credit_note.created",
        "credit_note.updated",
        "credit_note.voided",
    }
)


@dataclass(frozen=True, slots=True)
class Delivery:
    provider: str
    event_id: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def stripe_templates() -> list[dict[str, Any]]:
    out = []
    for path in sorted((FIXTURES / "stripe").glob("*.json")):
        data = json.loads(path.read_bytes())
        if data.get("type") in STRIPE_TYPES:
            out.append(data)
    if not out:
        raise SystemExit(f"no Stripe fixtures of billing types under {FIXTURES / 'stripe'}")
    return out


def chargebee_template() -> dict[str, Any]:
    path = FIXTURES / "chargebee" / "event_subscription_created_retrieve.json"
    data: dict[str, Any] = json.loads(path.read_bytes())["event"]
    return data


def stripe_signature(body: bytes, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _compact(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _stripe(tpl: dict[str, Any], i: int, run: str, objects: int, base: int, now: int) -> Delivery:
    data = json.loads(json.dumps(tpl))
    event_id = f"evt_bench_{run}_{i}"
    data["id"] = event_id
    data["created"] = base + i
    obj = data.get("data", {}).get("object")
    if isinstance(obj, dict) and isinstance(obj.get("id"), str):
        obj["id"] = f"{obj['id']}_b{i % objects}"
    body = _compact(data)
    headers = (
        ("Content-Type", "application/json; charset=utf-8"),
        ("Stripe-Signature", stripe_signature(body, STRIPE_SECRET, now)),
        ("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)"),
    )
    return Delivery("stripe", event_id, f"/webhooks/stripe/{ENDPOINT}", headers, body)


def _chargebee(tpl: dict[str, Any], i: int, run: str, objects: int, base: int) -> Delivery:
    data = json.loads(json.dumps(tpl))
    event_id = f"ev_bench_{run}_{i}"
    data["id"] = event_id
    data["occurred_at"] = base + i
    for resource in data.get("content", {}).values():
        if isinstance(resource, dict) and "resource_version" in resource:
            resource["resource_version"] = (base + i) * 1000
    sub = data.get("content", {}).get("subscription")
    if isinstance(sub, dict):
        sub["id"] = f"{sub['id']}_b{i % objects}"
    body = _compact(data)
    token = base64.b64encode(f"{CHARGEBEE_USER}:{CHARGEBEE_PASSWORD}".encode()).decode()
    headers = (
        ("Content-Type", "application/json"),
        ("Authorization", f"Basic {token}"),
        ("User-Agent", "ChargeBee"),
    )
    return Delivery("chargebee", event_id, f"/webhooks/chargebee/{ENDPOINT}", headers, body)


def deliveries(
    count: int,
    *,
    run: str,
    objects: int = 500,
    chargebee_every: int = 10,
    start: int = 0,
) -> Iterator[Delivery]:
    """``count`` distinct deliveries; every ``chargebee_every``-th is Chargebee (0: none)."""
    stripe = itertools.cycle(stripe_templates())
    chargebee = chargebee_template()
    now = int(time.time())
    base = now - 86_400  # provider times in the recent past, increasing with the index
    for i in range(start, start + count):
        if chargebee_every and i % chargebee_every == chargebee_every - 1:
            yield _chargebee(chargebee, i, run, objects, base)
        else:
            yield _stripe(next(stripe), i, run, objects, base, now)


def raw_request(d: Delivery, host: str) -> bytes:
    head = [f"POST {d.path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(d.body)}"]
    head += [f"{k}: {v}" for k, v in d.headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + d.body


def write_request_files(
    out: Path,
    count: int,
    threads: int,
    *,
    run: str,
    host: str,
    objects: int = 500,
    chargebee_every: int = 10,
) -> list[str]:
    """Write ``threads`` request files (delivery i goes to thread ``i % threads``); event ids."""
    out.mkdir(parents=True, exist_ok=True)
    req_files = [(out / f"t{t}.req").open("wb") for t in range(threads)]
    id_files = [(out / f"t{t}.ids").open("w") for t in range(threads)]
    ids: list[str] = []
    try:
        for n, d in enumerate(
            deliveries(count, run=run, objects=objects, chargebee_every=chargebee_every)
        ):
            raw = raw_request(d, host)
            t = n % threads
            req_files[t].write(f"{len(raw)}\n".encode() + raw)
            id_files[t].write(f"{d.provider} {d.event_id}\n")
            ids.append(d.event_id)
    finally:
        for f in (*req_files, *id_files):
            f.close()
    return ids


def read_ids(out: Path, thread: int) -> list[tuple[str, str]]:
    """(provider, event id) of each request of one thread file, in order."""
    lines = (out / f"t{thread}.ids").read_text().splitlines()
    return [(p, e) for p, e in (line.split(" ", 1) for line in lines)]


def endpoints_toml() -> str:
    """The ``[[endpoints]]`` tables a server under benchmark needs to accept these deliveries."""
    return (
        "[[endpoints]]\n"
        'provider = "stripe"\n'
        f'name = "{ENDPOINT}"\n'
        f'account = "{STRIPE_ACCOUNT}"\n'
        f'secrets = ["{STRIPE_SECRET}"]\n'
        "tolerance_seconds = 3600\n\n"
        "[[endpoints]]\n"
        'provider = "chargebee"\n'
        f'name = "{ENDPOINT}"\n'
        f'account = "{CHARGEBEE_SITE}"\n'
        f'basic_auth = ["{CHARGEBEE_USER}:{CHARGEBEE_PASSWORD}"]\n'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1:8000")
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--run", default=str(int(time.time())))
    args = parser.parse_args()
    ids = write_request_files(
        args.out, args.count, args.threads, run=args.run, host=args.host, objects=args.objects
    )
    print(f"wrote {len(ids)} requests in {args.threads} files under {args.out}")


if __name__ == "__main__":
    main()
