"""What must hold after any fault run, checked against the database as a superuser sees it.

- every 2xx delivery is in the audit log: by delivery id when the response names it, and always
  by event id with the exact body bytes sent;
- each (provider, account, event_id) has exactly one processed row that took effect
  (``applied``, ``stale`` or ``ignored``); every other delivery of it is a ``duplicate``;
- no delivery is left without a processed row, and none is dead-lettered;
- every stored delivery is exactly one leaf of the Merkle tree, leaf indexes gap-free from 0,
  whatever sequencer (leader or standby) was killed on the way.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import asyncpg

from tests.faults.load import Record

EFFECTIVE = ("applied", "stale", "ignored")


@dataclass
class Findings:
    counts: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def fail(self, message: str, examples: list[object]) -> None:
        self.problems.append(f"{message}: {len(examples)} (e.g. {examples[:5]})")


async def wait_processed(conn: asyncpg.Connection, within: float) -> int:
    """Poll until every delivery has a processed row (the sweeper's job); the number left."""
    deadline = time.monotonic() + within
    left = -1
    while time.monotonic() < deadline:
        left = await conn.fetchval(
            "SELECT count(*) FROM audit.deliveries d "
            "WHERE NOT EXISTS (SELECT 1 FROM processors.processed p WHERE p.delivery_id = d.id)"
        )
        if left == 0:
            return 0
        await asyncio.sleep(0.5)
    return int(left)


async def check(conn: asyncpg.Connection, record: Record) -> Findings:
    f = Findings()
    rows = await conn.fetch("SELECT id, provider, account, event_id, body FROM audit.deliveries")
    by_id = {r["id"]: r for r in rows}
    by_event: dict[str, list[asyncpg.Record]] = {}
    for r in rows:
        by_event.setdefault(r["event_id"], []).append(r)

    acked = [a for a in record.attempts if a.acknowledged]
    lost: list[str] = []
    wrong_id: list[str] = []
    for a in acked:
        stored = [r for r in by_event.get(a.event.event_id, []) if bytes(r["body"]) == a.event.body]
        if not stored:
            lost.append(a.event.event_id)
            continue
        did = a.delivery_id()
        if did is not None:
            row = by_id.get(did)
            if (
                row is None
                or row["event_id"] != a.event.event_id
                or bytes(row["body"]) != a.event.body
            ):
                wrong_id.append(f"{a.event.event_id}->{did}")
    if lost:
        f.fail("acknowledged but not in the audit log", lost)
    if wrong_id:
        f.fail("acknowledged delivery id does not hold that event's bytes", wrong_id)

    processed = await conn.fetch(
        "SELECT delivery_id, provider, account, event_id, outcome FROM processors.processed"
    )
    effective: dict[tuple[str, str, str], int] = {}
    outcomes: dict[str, int] = {}
    for p in processed:
        outcomes[p["outcome"]] = outcomes.get(p["outcome"], 0) + 1
        if p["outcome"] in EFFECTIVE:
            key = (p["provider"], p["account"], p["event_id"])
            effective[key] = effective.get(key, 0) + 1
    events = {(r["provider"], r["account"], r["event_id"]) for r in rows}
    double = [k for k, n in effective.items() if n > 1]
    never = [k for k in events if k not in effective]
    if double:
        f.fail("events applied more than once", double)
    if never:
        f.fail("events stored but never applied", never)
    dead = [p["delivery_id"] for p in processed if p["outcome"] == "dead_letter"]
    if dead:
        f.fail("dead-lettered deliveries", dead)
    done = {p["delivery_id"] for p in processed}
    unprocessed = [i for i in by_id if i not in done]
    if unprocessed:
        f.fail("deliveries never processed", unprocessed)

    leaves = await conn.fetch(
        "SELECT leaf_index, delivery_id FROM audit.leaves ORDER BY leaf_index"
    )
    if [r["leaf_index"] for r in leaves] != list(range(len(leaves))):
        f.fail("leaf indexes are not gap-free", [r["leaf_index"] for r in leaves][:5])
    leaf_of: dict[int, int] = {}
    twice = []
    for r in leaves:
        if r["delivery_id"] in leaf_of:
            twice.append(r["delivery_id"])
        leaf_of[r["delivery_id"]] = r["leaf_index"]
    if twice:
        f.fail("deliveries integrated twice", twice)
    outside = [i for i in by_id if i not in leaf_of]
    if outside:
        f.fail("stored deliveries not in the tree", outside)
    strangers = [d for d in leaf_of if d not in by_id]
    if strangers:
        f.fail("leaves without a delivery", strangers)

    f.counts = {
        "sent (requests)": len(record.attempts),
        "acknowledged (2xx responses)": len(acked),
        "distinct events acknowledged": len(record.acked_events()),
        "stored (audit rows)": len(rows),
        "stored (distinct events)": len(events),
        "applied (effective processed rows)": sum(effective.values()),
        "processed outcomes": outcomes,
        "lost": len(lost),
        "double-applied": len(double),
        "unprocessed": len(unprocessed),
        "leaves (tree size)": len(leaves),
        "not in the tree": len(outside),
    }
    return f
