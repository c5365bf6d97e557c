"""Gathering the coexistence facts from the billing state, the links and the authority history.

Every query starts from the links (only linked customers and subscriptions are looked at) and
uses the state tables' own indexes (customer, primary key). Charges are narrowed in SQL: the
authority timelines are passed in as rows (``AuthorityBook.segment_rows``) so that PostgreSQL
returns only charges on a side that was not authoritative at their time, and only source/target
charge pairs whose periods overlap; a healthy migration returns almost nothing. Nothing here
tails a table: each sweep looks at the state as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from alerts.coexist.model import (
    BothActive,
    Charge,
    CoexistFacts,
    DoubleCharge,
    Orphan,
    PlanChange,
    StraySubscription,
)
from audit.dbtypes import Conn
from ledgerhook.settings import Settings
from processors.coexist.authority import AuthorityBook, side_at, timeline
from processors.coexist.cutover import load_events
from processors.coexist.metadata import tagged_unlinked

__all__ = ["gather_coexist"]

# The linked customers, one row per side, with the key of the authority timeline that applies
# (the account's own when it has changes of its own, else its cohort's: '').
_SIDES = """
segs AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
        AS g(cohort, account, side, from_ts, to_ts)
),
cust AS (
    SELECT l.cohort, l.billing_account,
           CASE WHEN l.billing_account = ANY($6::text[]) THEN l.billing_account ELSE '' END AS seg,
           l.source_provider, l.source_account, l.source_id,
           l.target_provider, l.target_account, l.target_id
    FROM coexist.links l WHERE l.kind = 'customer'
),
sides AS (
    SELECT cohort, billing_account, seg, 'source' AS side,
           source_provider AS provider, source_account AS account, source_id AS customer_id
    FROM cust
    UNION ALL
    SELECT cohort, billing_account, seg, 'target', target_provider, target_account, target_id
    FROM cust
)"""

# Paid invoices, and succeeded payments with no invoice in the state, with what came back.
_CHARGES = """
charges AS (
    SELECT s.cohort, s.billing_account, s.seg, s.side, i.provider, i.account,
           'invoice' AS object_type, i.id AS object_id, i.amount_paid AS amount, i.currency,
           coalesce((i.data->>'period_start')::bigint, (i.data->>'paid_at')::bigint,
                    (i.data->>'created_at')::bigint, 0) AS period_start,
           coalesce((i.data->>'period_end')::bigint, (i.data->>'paid_at')::bigint + 86400,
                    (i.data->>'created_at')::bigint + 86400, 86400) AS period_end,
           coalesce((
               SELECT sum(greatest(p.amount_refunded, coalesce((
                   SELECT sum(r.amount) FROM processors.refunds r
                   WHERE (r.provider, r.account, r.payment_id) = (p.provider, p.account, p.id)
                     AND r.status = 'succeeded'), 0)))
               FROM processors.payments p
               WHERE (p.provider, p.account, p.customer_id) = (i.provider, i.account, i.customer_id)
                 AND p.invoice_id = i.id), 0)
           + coalesce((
               SELECT sum(n.total) FROM processors.credit_notes n
               WHERE (n.provider, n.account, n.customer_id) = (i.provider, i.account, i.customer_id)
                 AND n.invoice_id = i.id AND n.status <> 'void'), 0) AS returned,
           i.last_delivery_id AS delivery_id
    FROM sides s
    JOIN processors.invoices i ON (i.provider, i.account, i.customer_id) = (s.provider, s.account, s.customer_id)
    WHERE i.status = 'paid' AND i.amount_paid > 0 AND NOT i.deleted
    UNION ALL
    SELECT s.cohort, s.billing_account, s.seg, s.side, p.provider, p.account,
           'payment', p.id, p.amount, p.currency,
           coalesce((p.data->>'created_at')::bigint, 0) / 86400 * 86400,
           coalesce((p.data->>'created_at')::bigint, 0) / 86400 * 86400 + 86400,
           greatest(p.amount_refunded, coalesce((
               SELECT sum(r.amount) FROM processors.refunds r
               WHERE (r.provider, r.account, r.payment_id) = (p.provider, p.account, p.id)
                 AND r.status = 'succeeded'), 0)),
           p.last_delivery_id
    FROM sides s
    JOIN processors.payments p ON (p.provider, p.account, p.customer_id) = (s.provider, s.account, s.customer_id)
    WHERE p.status = 'succeeded' AND p.amount > 0 AND NOT p.deleted
      AND NOT EXISTS (SELECT 1 FROM processors.invoices i
                      WHERE (i.provider, i.account, i.id) = (p.provider, p.account, p.invoice_id))
),
judged AS (
    SELECT c.*, coalesce((
        SELECT g.side FROM segs g
        WHERE g.cohort = c.cohort AND g.account = c.seg
          AND g.from_ts <= c.period_start AND c.period_start < g.to_ts
        LIMIT 1), 'source') AS authoritative
    FROM charges c
)"""

_COLUMNS = (
    "cohort, billing_account, side, provider, account, object_type, object_id, amount, "
    "returned, currency, period_start, period_end, authoritative, delivery_id"
)

_WRONG_SIDE = f"""
WITH {_SIDES}, {_CHARGES}
SELECT {_COLUMNS} FROM judged WHERE side <> authoritative AND amount > returned
ORDER BY billing_account, provider, object_id
"""

_DOUBLE = f"""
WITH {_SIDES}, {_CHARGES}
SELECT {", ".join("a." + c.strip() + " AS a_" + c.strip() for c in _COLUMNS.split(","))},
       {", ".join("b." + c.strip() + " AS b_" + c.strip() for c in _COLUMNS.split(","))}
FROM judged a JOIN judged b
  ON a.billing_account = b.billing_account AND a.side = 'source' AND b.side = 'target'
 AND a.period_start < b.period_end AND b.period_start < a.period_end
ORDER BY a.billing_account, a.object_id, b.object_id
"""

# Linked subscription pairs with both sides billing now.
_BOTH_ACTIVE = """
SELECT l.cohort, l.billing_account, l.source_provider, l.target_provider,
       l.source_provider || '/' || l.source_account || '/' || l.source_id AS source,
       l.target_provider || '/' || l.target_account || '/' || l.target_id AS target,
       s.cancel_at_period_end AS s_cancel, s.current_period_end AS s_end,
       t.cancel_at_period_end AS t_cancel, t.current_period_end AS t_end
FROM coexist.links l
JOIN processors.subscriptions s
  ON (s.provider, s.account, s.id) = (l.source_provider, l.source_account, l.source_id)
JOIN processors.subscriptions t
  ON (t.provider, t.account, t.id) = (l.target_provider, l.target_account, l.target_id)
WHERE l.kind = 'subscription' AND NOT s.deleted AND NOT t.deleted
  AND s.status IN ('active', 'past_due') AND t.status IN ('active', 'past_due')
ORDER BY l.id
"""

# Live subscriptions of linked customers that no subscription link covers.
_STRAYS = f"""
WITH {_SIDES}
SELECT s.cohort, s.billing_account, s.side, x.provider,
       x.provider || '/' || x.account || '/' || x.id AS ref, x.status,
       (x.data->>'created_at')::bigint AS created_at, x.last_delivery_id
FROM sides s
JOIN processors.subscriptions x
  ON (x.provider, x.account, x.customer_id) = (s.provider, s.account, s.customer_id)
WHERE x.status IN ('active', 'past_due', 'trialing') AND NOT x.deleted
  AND NOT EXISTS (SELECT 1 FROM coexist.linked_objects o WHERE o.kind = 'subscription'
                  AND (o.provider, o.account, o.id) = (x.provider, x.account, x.id))
ORDER BY 2, 5
"""

# Plan changes of live subscriptions of linked customers, at the time of their event.
_CHANGES = f"""
WITH {_SIDES}
SELECT s.cohort, s.billing_account, s.side, x.provider,
       x.provider || '/' || x.account || '/' || x.id AS ref, c.kind, d.event_created AS at,
       c.delivery_id, EXISTS (SELECT 1 FROM coexist.linked_objects o WHERE o.kind = 'subscription'
                  AND (o.provider, o.account, o.id) = (x.provider, x.account, x.id)) AS linked
FROM sides s
JOIN processors.subscriptions x
  ON (x.provider, x.account, x.customer_id) = (s.provider, s.account, s.customer_id)
JOIN processors.subscription_changes c
  ON (c.provider, c.account, c.subscription_id) = (x.provider, x.account, x.id)
JOIN audit.deliveries d ON d.id = c.delivery_id
WHERE x.status IN ('active', 'past_due', 'trialing') AND NOT x.deleted
  AND c.kind IN ('upgraded', 'downgraded', 'quantity_changed', 'plan_switched', 'reactivated')
ORDER BY 2, 5, c.id
"""

# Links one of whose objects is not in the state, past the orphan grace.
_MISSING = """
SELECT l.id, l.kind, l.cohort, l.billing_account,
       l.source_provider, l.source_provider || '/' || l.source_account || '/' || l.source_id AS source,
       l.target_provider, l.target_provider || '/' || l.target_account || '/' || l.target_id AS target,
       CASE l.kind
           WHEN 'customer' THEN EXISTS (SELECT 1 FROM processors.customers x
               WHERE (x.provider, x.account, x.id) = (l.source_provider, l.source_account, l.source_id))
           ELSE EXISTS (SELECT 1 FROM processors.subscriptions x
               WHERE (x.provider, x.account, x.id) = (l.source_provider, l.source_account, l.source_id))
       END AS has_source,
       CASE l.kind
           WHEN 'customer' THEN EXISTS (SELECT 1 FROM processors.customers x
               WHERE (x.provider, x.account, x.id) = (l.target_provider, l.target_account, l.target_id))
           ELSE EXISTS (SELECT 1 FROM processors.subscriptions x
               WHERE (x.provider, x.account, x.id) = (l.target_provider, l.target_account, l.target_id))
       END AS has_target
FROM coexist.links l
WHERE l.linked_at <= to_timestamp($1)
"""


def _seg_args(book: AuthorityBook) -> list[Any]:
    rows = book.segment_rows()
    return [
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        sorted({a for _, a in book.overridden()}),
    ]


def _charge(r: asyncpg.Record, prefix: str = "") -> Charge:
    return Charge(
        cohort=r[prefix + "cohort"],
        billing_account=r[prefix + "billing_account"],
        side=r[prefix + "side"],
        provider=r[prefix + "provider"],
        account=r[prefix + "account"],
        object_type=r[prefix + "object_type"],
        object_id=r[prefix + "object_id"],
        amount=r[prefix + "amount"],
        returned=int(r[prefix + "returned"]),
        currency=r[prefix + "currency"],
        period_start=r[prefix + "period_start"],
        period_end=r[prefix + "period_end"],
        authoritative=r[prefix + "authoritative"],
        delivery_id=r[prefix + "delivery_id"],
    )


def _first_switch(book: AuthorityBook, cohort: str, account: str) -> int | None:
    """When the account's target first became authoritative (None: never)."""
    segs = timeline(book.events(cohort, account))
    return next((s.start for s in segs if s.side == "target"), None)


async def _orphans(
    conn: Conn, settings: Settings, book: AuthorityBook, strays: Sequence[StraySubscription]
) -> list[Orphan]:
    cfg = settings.coexist
    out: list[Orphan] = []
    for r in await conn.fetch(_MISSING, book.now - cfg.orphan_grace_seconds):
        for side in ("source", "target"):
            if r[f"has_{side}"]:
                continue
            out.append(
                Orphan(
                    reason="missing_source" if side == "source" else "missing_target",
                    kind=r["kind"],
                    ref=r[side],
                    provider=r[f"{side}_provider"],
                    cohort=r["cohort"],
                    billing_account=r["billing_account"],
                    link_id=r["id"],
                )
            )
    for kind in ("customer", "subscription"):
        for target, source_id, cohort, delivery in await tagged_unlinked(conn, cfg, kind):
            out.append(
                Orphan(
                    reason="tagged_unlinked",
                    kind=kind,
                    ref=str(target),
                    provider=target.provider,
                    cohort=cohort or cfg.default_cohort,
                    detail=f"its metadata names {cfg.metadata_source} {source_id!r}, which could not be linked",
                    delivery_id=delivery,
                )
            )
    for s in strays:
        # A source subscription still live after the cut-over, created before it: not migrated.
        if (
            s.side == "source"
            and s.authoritative_now == "target"
            and s.status != "trialing"
            and (s.created_at is None or s.authoritative_then == "source")
        ):
            out.append(
                Orphan(
                    reason="left_behind",
                    kind="subscription",
                    ref=s.ref,
                    provider=s.provider,
                    cohort=s.cohort,
                    billing_account=s.billing_account,
                    delivery_id=s.delivery_id,
                )
            )
    return out


async def gather_coexist(conn: Conn, settings: Settings, now: int) -> CoexistFacts:
    """Every coexistence fact as of ``now`` (unix seconds)."""
    book = AuthorityBook(await load_events(conn), now)
    args = _seg_args(book)
    wrong = [_charge(r) for r in await conn.fetch(_WRONG_SIDE, *args)]
    double = [
        DoubleCharge(source=_charge(r, "a_"), target=_charge(r, "b_"))
        for r in await conn.fetch(_DOUBLE, *args)
    ]
    both = []
    for r in await conn.fetch(_BOTH_ACTIVE):
        a = book.resolve(r["cohort"], r["billing_account"])
        other = "s" if a.side == "target" else "t"
        both.append(
            BothActive(
                cohort=r["cohort"],
                billing_account=r["billing_account"],
                source=r["source"],
                target=r["target"],
                source_provider=r["source_provider"],
                target_provider=r["target_provider"],
                authoritative=a.side,
                since=a.since,
                other_cancel_at_period_end=r[f"{other}_cancel"],
                other_period_end=r[f"{other}_end"],
            )
        )
    strays = []
    for r in await conn.fetch(_STRAYS, *args):
        a = book.resolve(r["cohort"], r["billing_account"])
        created = r["created_at"]
        then = None if created is None else side_at(a.segments, created)
        strays.append(
            StraySubscription(
                cohort=r["cohort"],
                billing_account=r["billing_account"],
                side=r["side"],
                provider=r["provider"],
                ref=r["ref"],
                status=r["status"],
                created_at=created,
                authoritative_then=then,
                authoritative_now=a.side,
                since=a.since,
                delivery_id=r["last_delivery_id"],
            )
        )
    changes = []
    for r in await conn.fetch(_CHANGES, *args):
        a = book.resolve(r["cohort"], r["billing_account"])
        if side_at(a.segments, r["at"]) == r["side"]:
            continue
        first = _first_switch(book, r["cohort"], r["billing_account"])
        if r["side"] == "target" and r["linked"] and (first is None or r["at"] < first):
            continue  # the migration preparing the target before its first cut-over
        changes.append(
            PlanChange(
                cohort=r["cohort"],
                billing_account=r["billing_account"],
                side=r["side"],
                provider=r["provider"],
                ref=r["ref"],
                kind=r["kind"],
                at=r["at"],
                delivery_id=r["delivery_id"],
            )
        )
    return CoexistFacts(
        grace_seconds=settings.coexist.grace_seconds,
        double_charges=tuple(double),
        wrong_side_charges=tuple(wrong),
        both_active=tuple(both),
        strays=tuple(strays),
        plan_changes=tuple(changes),
        orphans=tuple(await _orphans(conn, settings, book, strays)),
    )
