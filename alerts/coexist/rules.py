"""Coexistence rules: pure functions ``rule(facts, now) -> list[Finding]`` over
``facts.coexist`` (None: not gathered, nothing to say). Registered in :data:`alerts.rules.RULES`
and run by the coexistence sweep; each alert resolves as soon as its rule stops finding it.

- ``coexist_double_billing`` (critical): an account charged by both providers (an invoice
  paid, a payment succeeded) for overlapping service periods, neither charge returned in full;
  one alert per billing account.
- ``coexist_both_active`` (warning): after a switch (cut-over or rollback) plus the grace
  period, the subscription that is no longer authoritative still bills and is not set to end
  within the grace period; one alert per pair.
- ``coexist_wrong_side`` (warning): activity on a provider that was not authoritative when it
  happened: a charge, a new subscription of a linked customer, a plan change (upgrade,
  quantity, plan switch, reactivation). Changes to a linked target subscription before the
  account's first cut-over are preparation, not activity. One alert per account and provider.
- ``coexist_orphan`` (warning): a link whose object is absent from the state (past the orphan
  grace), a target object the migration tagged (metadata key) that has no link, a live source
  subscription left behind by a cut-over (no link, created before the switch).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alerts.coexist.model import Charge, CoexistFacts
from alerts.model import Facts, Finding

__all__ = ["COEXIST_RULES", "both_active", "double_billing", "orphan", "wrong_side"]

_MAX_ITEMS = 20


def _charge(c: Charge) -> dict[str, Any]:
    return {
        "side": c.side,
        "object": c.describe(),
        "amount": c.amount,
        "returned": c.returned,
        "currency": c.currency,
        "period": [c.period_start, c.period_end],
        "delivery_id": c.delivery_id,
    }


def double_billing(facts: Facts, now: datetime) -> list[Finding]:
    f = facts.coexist or CoexistFacts()
    groups: dict[str, list[tuple[Charge, Charge]]] = {}
    for d in f.double_charges:
        if d.source.net > 0 and d.target.net > 0:
            groups.setdefault(d.source.billing_account, []).append((d.source, d.target))
    out = []
    for account, pairs in sorted(groups.items()):
        first = pairs[0]
        out.append(
            Finding(
                rule="coexist_double_billing",
                severity="critical",
                provider=None,
                subject=account,
                summary=(
                    f"billing account {account} charged by both {first[0].provider} and "
                    f"{first[1].provider} for overlapping periods "
                    f"({first[0].describe()}, {first[1].describe()})"
                ),
                count=len(pairs),
                accumulate=False,
                delivery_ids=tuple(sorted({c.delivery_id for p in pairs for c in p})),
                evidence={
                    "cohort": first[0].cohort,
                    "billing_account": account,
                    "overlaps": [[_charge(s), _charge(t)] for s, t in pairs[:_MAX_ITEMS]],
                },
            )
        )
    return out


def both_active(facts: Facts, now: datetime) -> list[Finding]:
    f = facts.coexist or CoexistFacts()
    t = int(now.timestamp())
    out = []
    for b in f.both_active:
        if b.since is None or t < b.since + f.grace_seconds:
            continue  # nothing switched yet (verification's business), or within the grace
        ends = b.other_period_end
        if b.other_cancel_at_period_end and ends is not None and ends <= b.since + f.grace_seconds:
            continue  # set to end in time
        other = b.source if b.authoritative == "target" else b.target
        provider = b.source_provider if b.authoritative == "target" else b.target_provider
        out.append(
            Finding(
                rule="coexist_both_active",
                severity="warning",
                provider=provider,
                subject=f"{b.billing_account}:{b.source}",
                summary=(
                    f"{other} still bills {t - b.since}s after the {b.authoritative} became "
                    f"authoritative (grace {f.grace_seconds}s)"
                ),
                accumulate=False,
                evidence={
                    "cohort": b.cohort,
                    "billing_account": b.billing_account,
                    "source": b.source,
                    "target": b.target,
                    "authoritative": b.authoritative,
                    "since": b.since,
                    "not_authoritative": other,
                },
            )
        )
    return out


def wrong_side(facts: Facts, now: datetime) -> list[Finding]:
    f = facts.coexist or CoexistFacts()
    groups: dict[tuple[str, str], list[tuple[str, dict[str, Any], int]]] = {}
    cohorts: dict[str, str] = {}
    for c in f.wrong_side_charges:
        if c.net > 0 and c.side != c.authoritative:
            groups.setdefault((c.billing_account, c.provider), []).append(
                (f"charge {c.describe()}", _charge(c), c.delivery_id)
            )
            cohorts[c.billing_account] = c.cohort
    for s in f.strays:
        if s.authoritative_then is not None and s.side != s.authoritative_then:
            groups.setdefault((s.billing_account, s.provider), []).append(
                (
                    f"new subscription {s.ref}",
                    {"subscription": s.ref, "status": s.status, "created_at": s.created_at},
                    s.delivery_id,
                )
            )
            cohorts[s.billing_account] = s.cohort
    for p in f.plan_changes:
        groups.setdefault((p.billing_account, p.provider), []).append(
            (
                f"{p.kind} {p.ref}",
                {"subscription": p.ref, "change": p.kind, "at": p.at},
                p.delivery_id,
            )
        )
        cohorts[p.billing_account] = p.cohort
    out = []
    for (account, provider), items in sorted(groups.items()):
        out.append(
            Finding(
                rule="coexist_wrong_side",
                severity="warning",
                provider=provider,
                subject=f"{account}:{provider}",
                summary=(
                    f"activity on {provider}, not authoritative for billing account {account}: "
                    + ", ".join(i[0] for i in items[:3])
                    + (f" and {len(items) - 3} more" if len(items) > 3 else "")
                ),
                count=len(items),
                accumulate=False,
                delivery_ids=tuple(sorted({i[2] for i in items})),
                evidence={
                    "cohort": cohorts[account],
                    "billing_account": account,
                    "activity": [i[1] for i in items[:_MAX_ITEMS]],
                },
            )
        )
    return out


def orphan(facts: Facts, now: datetime) -> list[Finding]:
    f = facts.coexist or CoexistFacts()
    out = []
    for o in f.orphans:
        if o.reason == "left_behind":
            summary = (
                f"{o.kind} {o.ref} still bills on the source after the cut-over and has no link"
            )
        elif o.reason == "tagged_unlinked":
            summary = f"migrated {o.kind} {o.ref} has no link: {o.detail}"
        else:
            side = o.reason.removeprefix("missing_")
            summary = f"link {o.link_id}: the {side} {o.kind} {o.ref} is not in the state"
        subject = f"link:{o.link_id}:{o.reason}" if o.link_id is not None else f"{o.kind}:{o.ref}"
        out.append(
            Finding(
                rule="coexist_orphan",
                severity="warning",
                provider=o.provider,
                subject=subject,
                summary=summary,
                accumulate=False,
                delivery_ids=() if o.delivery_id is None else (o.delivery_id,),
                evidence={
                    "cohort": o.cohort,
                    "billing_account": o.billing_account,
                    "reason": o.reason,
                    "object": o.ref,
                    "link_id": o.link_id,
                },
            )
        )
    return out


COEXIST_RULES = frozenset(
    {"coexist_double_billing", "coexist_both_active", "coexist_wrong_side", "coexist_orphan"}
)
