"""Alert rules: pure functions ``rule(facts, now) -> list[Finding]``, registered in :data:`RULES`.

No I/O and no clock: the sweep gathers :class:`~alerts.model.Facts` and passes ``now``. Thresholds
come from ``facts.config`` (``AlertSettings``, env ``LEDGERHOOK_ALERTS__*``):

- ``out_of_order``: every out-of-order anomaly, grouped per object (a burst is one finding whose
  count is the burst size);
- ``missing_predecessor``: a missing-predecessor anomaly older than
  ``missing_predecessor_grace_seconds`` whose predecessor has still not arrived;
- ``missing_event``: one per event that reconciliation found missing (and backfilled);
- ``fetch_back_mismatch``: a Chargebee delivery that differs from the API's copy (critical);
- ``silence``: no verified delivery on an endpoint for longer than its ``silence_after_seconds``;
- ``rejections``: more than ``rejections_threshold`` rejected deliveries on an endpoint within
  ``rejections_window_seconds`` (facts are already counted over that window);
- ``processing``: dead letters exist; the oldest unprocessed delivery is older than
  ``lag_threshold_seconds``;
- ``integrity``: the latest verification of the log (Merkle tree, leaves, checkpoints) failed
  (critical);
- ``merge_delay``: a committed delivery is still not in the tree after ``tlog``'s maximum merge
  delay (critical: the log's promise, and processing waits for it), or leaves were integrated
  later than that since the last sweep (warning).
- ``reconciliation_failing``: a reconciliation run could not list the provider's events (its API
  failed: wrong key or base URL, an outage), so missing events would go unnoticed. One alert per
  provider endpoint, counting failures; resolved by the next run that succeeds.
- ``state_drift``: a state object differs from the provider's current copy (one per object,
  naming the fields; the drift check resolves it when the object matches again);
- ``provider_api``: a provider's API failed ``provider_api_failures_threshold`` runs of sync or
  drift checks in a row, after every retry.
- ``coexist_*``: provider migration (double billing, both active after a cut-over, activity
  on the side that is not authoritative, orphans), see :mod:`alerts.coexist.rules`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from alerts.coexist import rules as coexist
from alerts.model import Anomaly, ApiFailure, Facts, Finding, RuleName, StateDrift

__all__ = ["RULES", "Rule", "drift_subject", "evaluate"]

Rule = Callable[[Facts, datetime], list[Finding]]
_MAX_IDS = 100


def _object_key(a: Anomaly) -> str:
    return f"{a.provider}:{a.account}:{a.object_type}:{a.object_id}"


def out_of_order(facts: Facts, now: datetime) -> list[Finding]:
    groups: dict[str, list[Anomaly]] = {}
    for a in facts.anomalies:
        if a.kind == "out_of_order":
            groups.setdefault(_object_key(a), []).append(a)
    out = []
    for subject, items in sorted(groups.items()):
        items.sort(key=lambda a: (a.event_created, a.delivery_id))
        first = items[0]
        summary = (
            f"{len(items)} event(s) older than the applied state of "
            f"{first.object_type} {first.object_id} ({first.provider}/{first.account})"
        )
        out.append(_object_finding("out_of_order", subject, items, summary))
    return out


def _object_finding(rule: RuleName, subject: str, items: list[Anomaly], summary: str) -> Finding:
    """One warning for a group of anomalies on one object (a burst is one alert, counted)."""
    first = items[0]
    return Finding(
        rule=rule,
        severity="warning",
        provider=first.provider,
        subject=subject,
        summary=summary,
        count=len(items),
        delivery_ids=tuple(a.delivery_id for a in items)[-_MAX_IDS:],
        evidence={
            "object_type": first.object_type,
            "object_id": first.object_id,
            "event_types": sorted({a.event_type for a in items}),
        },
    )


def missing_predecessor(facts: Facts, now: datetime) -> list[Finding]:
    grace = facts.config.missing_predecessor_grace_seconds
    groups: dict[str, list[Anomaly]] = {}
    for a in facts.anomalies:
        if a.kind != "missing_predecessor" or a.predecessor_arrived:
            continue
        if (now - a.created_at).total_seconds() < grace:
            continue
        groups.setdefault(_object_key(a), []).append(a)
    out = []
    for subject, items in sorted(groups.items()):
        first = items[0]
        summary = (
            f"{first.event_type} for {first.object_type} {first.object_id} arrived but its "
            f"lifecycle predecessor did not within {grace}s"
        )
        out.append(_object_finding("missing_predecessor", subject, items, summary))
    return out


def missing_event(facts: Facts, now: datetime) -> list[Finding]:
    return [
        Finding(
            rule="missing_event",
            severity="warning",
            provider=m.provider,
            subject=f"{m.provider}:{m.account}:{m.event_id}",
            summary=(
                f"{m.provider} event {m.event_id} ({m.event_type}) was never delivered to "
                f"{m.endpoint}; backfilled from the API"
            ),
            delivery_ids=() if m.delivery_id is None else (m.delivery_id,),
            evidence={
                "event_id": m.event_id,
                "event_type": m.event_type,
                "event_created": m.event_created,
                "endpoint": m.endpoint,
                "provider_reports_delivery_failed": m.delivery_failed,
            },
        )
        for m in facts.missing_events
    ]


def fetch_back_mismatch(facts: Facts, now: datetime) -> list[Finding]:
    return [
        Finding(
            rule="fetch_back_mismatch",
            severity="critical",
            provider=m.provider,
            subject=f"{m.provider}:{m.endpoint}:{m.event_id}",
            summary=(
                f"delivery {m.delivery_id} ({m.event_id}) differs from the event {m.provider}'s API "
                "returns: the delivered payload may be forged"
            ),
            delivery_ids=(m.delivery_id,),
            evidence={
                "event_id": m.event_id,
                "delivered_sha256": m.delivered_sha256,
                "fetched_sha256": m.fetched_sha256,
                "differences": list(m.differences),
            },
        )
        for m in facts.mismatches
    ]


def silence(facts: Facts, now: datetime) -> list[Finding]:
    out = []
    for e in facts.endpoints:
        if e.silence_after_seconds <= 0:
            continue
        since = e.last_verified_at or e.watching_since
        quiet = (now - since).total_seconds()
        if quiet > e.silence_after_seconds:
            out.append(
                Finding(
                    rule="silence",
                    severity="warning",
                    provider=e.provider,
                    subject=f"{e.provider}/{e.endpoint}",
                    summary=(
                        f"no verified delivery on {e.provider}/{e.endpoint} for {int(quiet)}s "
                        f"(window {e.silence_after_seconds}s)"
                    ),
                    accumulate=False,
                    evidence={
                        "last_verified_at": None
                        if e.last_verified_at is None
                        else e.last_verified_at.isoformat(),
                        "silent_seconds": int(quiet),
                    },
                )
            )
    return out


def rejections(facts: Facts, now: datetime) -> list[Finding]:
    limit = facts.config.rejections_threshold
    window = facts.config.rejections_window_seconds
    return [
        Finding(
            rule="rejections",
            severity="warning",
            provider=r.provider,
            subject=f"{r.provider}/{r.endpoint}",
            summary=(
                f"{r.count} rejected deliveries on {r.provider}/{r.endpoint} in {window}s "
                f"(threshold {limit}): a rotated secret not updated, or an attack"
            ),
            count=r.count,
            accumulate=False,
            evidence={"window_seconds": window, "reasons": dict(sorted(r.reasons.items()))},
        )
        for r in facts.rejections
        if r.count > limit
    ]


def processing(facts: Facts, now: datetime) -> list[Finding]:
    out = [
        Finding(
            rule="processing",
            severity="critical",
            provider=d.provider,
            subject=f"dead_letter:{d.provider}",
            summary=f"{d.count} {d.provider} deliveries are dead-lettered (failed to apply)",
            count=d.count,
            accumulate=False,
            delivery_ids=d.delivery_ids[:_MAX_IDS],
        )
        for d in facts.dead_letters
        if d.count > 0
    ]
    u = facts.oldest_unprocessed
    if u is not None:
        age = (now - u.received_at).total_seconds()
        if age > facts.config.lag_threshold_seconds:
            out.append(
                Finding(
                    rule="processing",
                    severity="warning",
                    provider=None,
                    subject="lag",
                    summary=(
                        f"oldest unprocessed delivery {u.delivery_id} is {int(age)}s old "
                        f"(threshold {facts.config.lag_threshold_seconds}s)"
                    ),
                    count=max(u.count, 1),
                    accumulate=False,
                    delivery_ids=(u.delivery_id,),
                    evidence={"age_seconds": int(age), "unprocessed": u.count},
                )
            )
    return out


def integrity(facts: Facts, now: datetime) -> list[Finding]:
    v = facts.verification
    if v is None or v.ok:
        return []
    return [
        Finding(
            rule="integrity",
            severity="critical",
            provider=None,
            subject="audit.log",
            summary=f"log verification failed at {v.first_bad}: {v.reason}",
            accumulate=False,
            evidence={
                "first_bad": v.first_bad,
                "reason": v.reason,
                "tree_size": v.tree_size,
                "source": v.source,
                "finished_at": v.finished_at.isoformat(),
            },
        )
    ]


def merge_delay(facts: Facts, now: datetime) -> list[Finding]:
    b = facts.integration
    if b is None:
        return []
    out = []
    delay = b.max_merge_delay_seconds
    if b.oldest_received_at is not None:
        age = (now - b.oldest_received_at).total_seconds()
        if age > delay:
            out.append(
                Finding(
                    rule="merge_delay",
                    severity="critical",
                    provider=None,
                    subject="pending",
                    summary=(
                        f"{b.pending} committed deliveries are not in the tree; the oldest was "
                        f"received {age:.1f}s ago (maximum merge delay {delay:g}s): is a "
                        "sequencer running, or a long transaction holding it back?"
                    ),
                    count=max(b.pending, 1),
                    accumulate=False,
                    evidence={"pending": b.pending, "oldest_age_seconds": round(age, 3)},
                )
            )
    if b.late_leaves:
        out.append(
            Finding(
                rule="merge_delay",
                severity="warning",
                provider=None,
                subject="late",
                summary=(
                    f"{b.late_leaves} deliveries were integrated later than the maximum merge "
                    f"delay ({delay:g}s); the slowest took {b.max_late_seconds:.1f}s"
                ),
                count=b.late_leaves,
                delivery_ids=() if b.first_late_delivery is None else (b.first_late_delivery,),
                evidence={"late": b.late_leaves, "max_seconds": round(b.max_late_seconds, 3)},
            )
        )
    return out


def reconciliation_failing(facts: Facts, now: datetime) -> list[Finding]:
    return [
        Finding(
            rule="reconciliation_failing",
            severity="warning",
            provider=f.provider,
            subject=f"{f.provider}/{f.endpoint}",
            summary=(
                f"{f.provider} reconciliation of endpoint {f.endpoint} is failing, so events the "
                f"provider never delivered go unnoticed: {f.error}"
            ),
            evidence={
                "endpoint": f.endpoint,
                "account": f.account,
                "api_url": f.api_url,
                "error": f.error,
            },
        )
        for f in facts.reconcile_failures
    ]


def drift_subject(d: StateDrift) -> str:
    return f"{d.provider}:{d.account}:{d.object_type}:{d.object_id}"


def state_drift(facts: Facts, now: datetime) -> list[Finding]:
    out = []
    for d in facts.drifts:
        where = f"{d.object_type} {d.object_id} ({d.provider}/{d.account})"
        if d.gone:
            summary = f"{where} is in the billing state but {d.provider} no longer has it"
        else:
            summary = f"{where} differs from {d.provider}: {', '.join(sorted(d.fields))}"
        if d.repaired:
            summary += f"; repaired by delivery {d.repair_delivery_id}"
        elif d.repair_delivery_id is not None:
            summary += f"; the provider's copy (delivery {d.repair_delivery_id}) did not change it"
        ids = [i for i in (d.last_delivery_id, d.repair_delivery_id) if i is not None]
        out.append(
            Finding(
                rule="state_drift",
                severity="warning",
                provider=d.provider,
                subject=drift_subject(d),
                summary=summary,
                accumulate=False,
                delivery_ids=tuple(ids),
                evidence={
                    "object_type": d.object_type,
                    "object_id": d.object_id,
                    "fields": {k: {"state": v[0], "provider": v[1]} for k, v in d.fields.items()},
                    "gone": d.gone,
                    "state_version": d.state_version,
                    "provider_version": d.provider_version,
                    "repair_delivery_id": d.repair_delivery_id,
                    "repaired": d.repaired,
                },
            )
        )
    return out


def provider_api(facts: Facts, now: datetime) -> list[Finding]:
    limit = facts.config.provider_api_failures_threshold
    worst: dict[tuple[str, str], list[ApiFailure]] = {}
    for f in facts.api_failures:
        if f.consecutive >= limit:
            worst.setdefault((f.provider, f.operation), []).append(f)
    out = []
    for (provider, operation), items in sorted(worst.items()):
        items.sort(key=lambda f: (-f.consecutive, f.where))
        first = items[0]
        out.append(
            Finding(
                rule="provider_api",
                severity="warning",
                provider=provider,
                subject=f"{provider}:{operation}",
                summary=(
                    f"{provider}'s API failed {first.consecutive} {operation} runs in a row "
                    f"({first.where}): {first.last_error or 'no detail'}"
                ),
                count=first.consecutive,
                accumulate=False,
                evidence={
                    "failing": [
                        {"where": f.where, "consecutive": f.consecutive, "last_error": f.last_error}
                        for f in items[:20]
                    ],
                    "threshold": limit,
                },
            )
        )
    return out


RULES: tuple[tuple[str, Rule], ...] = (
    ("out_of_order", out_of_order),
    ("missing_predecessor", missing_predecessor),
    ("missing_event", missing_event),
    ("fetch_back_mismatch", fetch_back_mismatch),
    ("silence", silence),
    ("rejections", rejections),
    ("processing", processing),
    ("integrity", integrity),
    ("merge_delay", merge_delay),
    ("reconciliation_failing", reconciliation_failing),
    ("state_drift", state_drift),
    ("provider_api", provider_api),
    ("coexist_double_billing", coexist.double_billing),
    ("coexist_both_active", coexist.both_active),
    ("coexist_wrong_side", coexist.wrong_side),
    ("coexist_orphan", coexist.orphan),
)


def evaluate(facts: Facts, now: datetime, only: frozenset[str] | None = None) -> list[Finding]:
    """Every registered rule (or those in ``only``) over the same facts."""
    out: list[Finding] = []
    for name, rule in RULES:
        if only is None or name in only:
            out.extend(rule(facts, now))
    return out
