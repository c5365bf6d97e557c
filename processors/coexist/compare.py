"""Side-by-side comparison of one linked pair, from the applied state. Pure: no I/O, no clock.

A pair is checked field by field; each check is a *match*, an *explained* difference (one a
migration legitimately has, with the reason) or a *mismatch*. The pair's verdict is its worst
check. What is legitimate depends on where the migration stands (:class:`Context`):

- **before any switch** (the source authoritative since always) the target may be *waiting*:
  trialing or future until the cut-over, its trial ending on the cut-over day;
- **after a switch** (cut-over, or a rollback) the side that is no longer authoritative may be
  *retired*: canceled, or set to cancel at the end of a period that ends on the cut-over day;
- both sides billing at once is a mismatch, except within the grace period after a switch;
- period ends differing by up to ``period_seconds`` are the same moment (Chargebee's terms end
  at 23:59:59, Stripe's periods at the next second), and two period ends both on the cut-over
  day (the UTC day of the cut-over instant) agree.

Money is compared as integers: unit amounts and MRR within ``amount_minor`` (default 0). MRR is
the *priced* monthly amount of the items whatever the status (:func:`priced_mrr`), so a retired
side is still compared on what it charged.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from processors.coexist.model import Check, CheckKind, Ref, Side, Verdict
from processors.coexist.prices import PriceMap
from processors.model import Customer, Discount, Subscription, SubscriptionItem
from processors.mrr import monthly_amount

__all__ = [
    "Context",
    "Tolerances",
    "compare_customers",
    "compare_subscriptions",
    "priced_mrr",
    "verdict_of",
]

BILLING = frozenset({"active", "past_due"})
WAITING = frozenset({"trialing", "future", "incomplete"})
ENDED = frozenset({"canceled", "incomplete_expired"})
DAY = 86_400
_RANK: dict[Verdict, int] = {"match": 0, "explained": 1, "mismatch": 2}


class Tolerances(msgspec.Struct, frozen=True, kw_only=True):
    period_seconds: int = 60
    amount_minor: int = 0
    grace_seconds: int = DAY


class Context(msgspec.Struct, frozen=True, kw_only=True):
    now: int
    # Who is authoritative now, since when (None: the source, since always), and the cut-over
    # instant tolerances refer to (the switch made, else the one planned).
    authority: Side
    since: int | None = None
    cutover_at: int | None = None
    tolerances: Tolerances = Tolerances()

    def in_cutover_day(self, t: int | None) -> bool:
        """Within the UTC day of the cut-over, widened by the period tolerance (a Chargebee
        term ending at 23:59:59 the evening before a midnight cut-over is on that day)."""
        if t is None or self.cutover_at is None:
            return False
        start = self.cutover_at - self.cutover_at % DAY
        slack = self.tolerances.period_seconds
        return start - slack <= t <= start + DAY + slack


def priced_mrr(sub: Subscription) -> int:
    return monthly_amount("active", sub.items)


def verdict_of(checks: Sequence[Check]) -> Verdict:
    worst: Verdict = "match"
    for c in checks:
        if _RANK[c.verdict] > _RANK[worst]:
            worst = c.verdict
    return worst


def _mismatch(kind: CheckKind, s: object, t: object, reason: str) -> Check:
    return Check(kind=kind, verdict="mismatch", source=_v(s), target=_v(t), reason=reason)


def _explained(kind: CheckKind, s: object, t: object, reason: str) -> Check:
    return Check(kind=kind, verdict="explained", source=_v(s), target=_v(t), reason=reason)


def _v(x: object) -> str | int | bool | None:
    return x if x is None or isinstance(x, str | int | bool) else str(x)


def _missing(source: object | None, target: object | None) -> list[Check]:
    out = []
    if source is None:
        out.append(_mismatch("missing_source", None, None, "the source object is not in the state"))
    if target is None:
        out.append(_mismatch("missing_target", None, None, "the target object is not in the state"))
    return out


def compare_customers(source: Customer | None, target: Customer | None) -> list[Check]:
    """Customers are checked for presence: their fields are contact data, not billing."""
    return _missing(source, target)


def _retired(s: Subscription) -> bool:
    return s.status in ENDED or (s.status in BILLING and s.cancel_at_period_end)


def _pick(s: Subscription, t: Subscription, ctx: Context) -> tuple[Subscription, Subscription]:
    """(authoritative, other)."""
    return (s, t) if ctx.authority == "source" else (t, s)


def _status(s: Subscription, t: Subscription, ctx: Context) -> Check | None:
    auth, other = _pick(s, t, ctx)
    other_side = "target" if ctx.authority == "source" else "source"
    switched = ctx.since is not None
    if s.status == t.status:
        if s.status not in BILLING or other.cancel_at_period_end:
            return None
        if (
            switched
            and ctx.since is not None
            and ctx.now < ctx.since + ctx.tolerances.grace_seconds
        ):
            return _explained(
                "status",
                s.status,
                t.status,
                "both billing, within the grace period after the switch",
            )
        return _mismatch(
            "status",
            s.status,
            t.status,
            f"both sides billing; the {other_side} is not authoritative",
        )
    if not switched and other.status in WAITING and auth.status in BILLING | WAITING:
        return _explained("status", s.status, t.status, "the target waits for the cut-over")
    if switched and _retired(other) and auth.status in BILLING | WAITING | ENDED:
        return _explained(
            "status", s.status, t.status, f"the {other_side} was retired at the switch"
        )
    return _mismatch("status", s.status, t.status, "statuses differ")


def _cancel_flag(s: Subscription, t: Subscription, ctx: Context) -> Check | None:
    if s.cancel_at_period_end == t.cancel_at_period_end:
        return None
    auth, other = _pick(s, t, ctx)
    if other.cancel_at_period_end and ctx.since is not None:
        return _explained(
            "cancel_at_period_end",
            s.cancel_at_period_end,
            t.cancel_at_period_end,
            "the side no longer authoritative ends with its period",
        )
    if (
        auth.cancel_at_period_end
        and ctx.since is None
        and ctx.in_cutover_day(auth.current_period_end)
    ):
        return _explained(
            "cancel_at_period_end",
            s.cancel_at_period_end,
            t.cancel_at_period_end,
            "the source ends at the planned cut-over",
        )
    return _mismatch(
        "cancel_at_period_end", s.cancel_at_period_end, t.cancel_at_period_end, "differs"
    )


def _close(a: int | None, b: int | None, tol: int) -> bool:
    return a == b or (a is not None and b is not None and abs(a - b) <= tol)


def _period_end(s: Subscription, t: Subscription, ctx: Context) -> Check | None:
    a, b = s.current_period_end, t.current_period_end
    if _close(a, b, ctx.tolerances.period_seconds):
        return None
    if ctx.in_cutover_day(a) and ctx.in_cutover_day(b):
        return _explained("period_end", a, b, "both within the cut-over day")
    _, other = _pick(s, t, ctx)
    if ctx.since is not None and _retired(other) and ctx.in_cutover_day(other.current_period_end):
        return _explained("period_end", a, b, "the retired side's period ended at the cut-over")
    return _mismatch("period_end", a, b, "current period ends differ")


def _trial_end(s: Subscription, t: Subscription, ctx: Context) -> Check | None:
    a, b = s.trial_end, t.trial_end
    if _close(a, b, ctx.tolerances.period_seconds):
        return None
    one = b if a is None else a if b is None else None
    if one is not None and ctx.in_cutover_day(one):
        return _explained("trial_end", a, b, "a trial bridging to the cut-over")
    return _mismatch("trial_end", a, b, "trial ends differ")


def _interval(item: SubscriptionItem) -> tuple[str, int]:
    """Comparable billing interval: a year is twelve months."""
    if item.interval == "year":
        return "month", 12 * item.interval_count
    return item.interval, item.interval_count


def _by_price(items: Sequence[SubscriptionItem]) -> dict[str, SubscriptionItem]:
    """Items per price, quantities summed (a price may be listed twice)."""
    out: dict[str, SubscriptionItem] = {}
    for it in items:
        prior = out.get(it.price_id)
        out[it.price_id] = (
            it
            if prior is None
            else msgspec.structs.replace(prior, quantity=prior.quantity + it.quantity)
        )
    return out


def _items(
    s: Subscription, t: Subscription, *, source: Ref, target: Ref, prices: PriceMap, ctx: Context
) -> list[Check]:
    out: list[Check] = []
    src, tgt = _by_price(s.items), _by_price(t.items)
    matched: set[str] = set()
    for sp, si in sorted(src.items()):
        tp = prices.target_for(source.provider, sp, target.provider)
        if tp is None and sp in tgt:
            tp = sp
        if tp is None:
            out.append(
                _mismatch(
                    "price_unmapped",
                    sp,
                    None,
                    f"no price map entry for {source.provider} price {sp} to {target.provider}",
                )
            )
            continue
        ti = tgt.get(tp)
        if ti is None:
            out.append(
                _mismatch(
                    "price",
                    sp,
                    ",".join(sorted(tgt)) or None,
                    f"{sp} maps to {tp}, which the target subscription does not have",
                )
            )
            continue
        matched.add(tp)
        if si.quantity != ti.quantity:
            out.append(_mismatch("quantity", si.quantity, ti.quantity, f"price {sp} -> {tp}"))
        if abs(si.unit_amount - ti.unit_amount) > ctx.tolerances.amount_minor:
            out.append(
                _mismatch("amount", si.unit_amount, ti.unit_amount, f"unit amount, {sp} -> {tp}")
            )
        if _interval(si) != _interval(ti):
            out.append(
                _mismatch(
                    "interval",
                    f"{si.interval_count} {si.interval}",
                    f"{ti.interval_count} {ti.interval}",
                    f"billing interval, {sp} -> {tp}",
                )
            )
    for tp in sorted(set(tgt) - matched):
        out.append(
            _mismatch("price", None, tp, f"target price {tp} is not mapped from any source price")
        )
    return out


def _discount_key(d: Discount) -> str | None:
    if d.percent_off is not None:
        return f"{d.percent_off / 100:g}%"
    if d.amount_off is not None:
        return f"{d.amount_off} {d.currency or ''}".strip()
    return None


def _discounts(s: Subscription, t: Subscription) -> Check | None:
    if not s.discounts and not t.discounts:
        return None
    sk = [_discount_key(d) for d in s.discounts]
    tk = [_discount_key(d) for d in t.discounts]
    if None in sk or None in tk:
        # A bare coupon reference carries no value: only the number of discounts can be compared.
        if len(sk) == len(tk):
            return None
        return _mismatch("discount", len(sk), len(tk), "numbers of discounts differ")
    sv, tv = sorted(k for k in sk if k), sorted(k for k in tk if k)
    if sv == tv:
        return None
    return _mismatch("discount", ", ".join(sv) or None, ", ".join(tv) or None, "discounts differ")


def compare_subscriptions(
    source: Subscription | None,
    target: Subscription | None,
    *,
    source_ref: Ref,
    target_ref: Ref,
    prices: PriceMap,
    ctx: Context,
    priced: tuple[int, int] | None = None,
) -> list[Check]:
    """Every check that is not a plain match, in a fixed order. ``priced``: both sides'
    :func:`priced_mrr` when the caller has them already."""
    if source is None or target is None:
        return _missing(source, target)
    status = _status(source, target, ctx)
    out: list[Check] = [] if status is None else [status]
    if (source.currency or "") != (target.currency or ""):
        out.append(_mismatch("currency", source.currency, target.currency, "currencies differ"))
    out += _items(source, target, source=source_ref, target=target_ref, prices=prices, ctx=ctx)
    sm, tm = priced or (priced_mrr(source), priced_mrr(target))
    if abs(sm - tm) > ctx.tolerances.amount_minor:
        out.append(_mismatch("mrr", sm, tm, "monthly recurring amounts differ"))
    for check in (
        _period_end(source, target, ctx),
        _trial_end(source, target, ctx),
        _cancel_flag(source, target, ctx),
        _discounts(source, target),
    ):
        if check is not None:
            out.append(check)
    return out
