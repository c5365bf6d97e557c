"""The demo's migration story is pure: its events normalise to the three customers it tells of."""

from __future__ import annotations

from ledgerhook.demo.migration_story import build_migration_story, links_csv, prices_csv
from processors.coexist.imports import parse_links, parse_prices
from processors.model import Invoice, Subscription
from processors.normalize import normalize

NOW = 1_790_000_123


def test_migration_story_is_coherent() -> None:
    story = build_migration_story("abc123", NOW)
    assert story.cutover_at > NOW and story.cutover_at % 86_400 == 0
    subs: dict[str, Subscription] = {}
    invoices: dict[str, Invoice] = {}
    for e in story.events:
        assert "abc123" in e.event_id and NOW - 3600 < e.created < NOW
        event = normalize(e.provider, e.body, account="a")
        assert event is not None
        for u in event.updates:
            if isinstance(u.body, Subscription):
                subs[u.object_id] = u.body
            if isinstance(u.body, Invoice):
                invoices[u.object_id] = u.body
    for p in story.customers:
        cb, st = subs[p.chargebee_subscription], subs[p.stripe_subscription]
        assert (cb.status, cb.current_period_end) == ("active", story.cutover_at - 1)
        assert (st.status, st.trial_end) == ("trialing", story.cutover_at)
        assert st.items[0].unit_amount == p.stripe_amount
    assert story.mismatched.stripe_amount != story.matching.stripe_amount
    # Marie's two paid invoices overlap in time.
    paid = [i for i in invoices.values() if i.status == "paid"]
    assert len(paid) == 2
    a, b = paid
    assert a.period_start is not None and b.period_start is not None
    assert a.period_end is not None and b.period_end is not None
    assert a.period_start < b.period_end and b.period_start < a.period_end
    lines = parse_links(links_csv(story), "csv", default_accounts={"stripe": "s", "chargebee": "c"})
    assert len(lines) == 6 and {ln.cohort for ln in lines} == {story.cohort}
    assert parse_prices(prices_csv(story), "csv")[0].target_price == story.stripe_price
