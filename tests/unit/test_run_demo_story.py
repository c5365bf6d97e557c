"""The demo story and the stand-in Events API are pure: check the story is coherent."""

from __future__ import annotations

import msgspec

from ledgerhook.demo.standin import list_page
from ledgerhook.demo.story import PRO, build_story, stripe_signature

NOW = 1_760_000_000


def test_story_is_coherent() -> None:
    story = build_story("abc123", NOW)
    sent = [d.event for d in story.deliveries]
    ids = [e.event_id for e in sent]
    assert ids.count(story.redelivered.event_id) == 2
    assert len(set(ids)) == len(ids) - 1
    assert story.withheld.event_id not in ids
    # The late event is older than one sent before it, for the same subscription.
    late_at = ids.index(story.late.event_id)
    assert any(
        e.object_id == story.late.object_id and e.created > story.late.created
        for e in sent[:late_at]
    )
    assert all(NOW - 3600 < e.created < NOW for e in sent)
    for event in sent:
        data = msgspec.json.decode(event.body)
        assert data["id"] == event.event_id
        assert "abc123" in event.body.decode()
    upgrade = msgspec.json.decode(next(e.body for e in sent if "Pro" in e.note))
    price = upgrade["data"]["object"]["items"]["data"][0]["price"]
    assert (price["id"], price["unit_amount"]) == PRO
    assert "previous_attributes" in upgrade["data"]


def test_stand_in_lists_like_stripe() -> None:
    story = build_story("abc123", NOW)
    events = story.stripe_api_events
    page = msgspec.json.decode(list_page(events, frozenset(), {"limit": ["3"]}))
    assert page["object"] == "list" and page["has_more"] is True
    got = [e["id"] for e in page["data"]]
    assert got == [e.event_id for e in sorted(events, key=lambda e: -e.created)][:3]
    rest = msgspec.json.decode(
        list_page(events, frozenset(), {"limit": ["100"], "starting_after": [got[-1]]})
    )
    assert len(rest["data"]) == len(events) - 3 and rest["has_more"] is False
    failed = msgspec.json.decode(
        list_page(events, frozenset({story.withheld.event_id}), {"delivery_success": ["false"]})
    )
    assert [e["id"] for e in failed["data"]] == [story.withheld.event_id]
    later = msgspec.json.decode(list_page(events, frozenset(), {"created[gte]": [str(NOW)]}))
    assert later["data"] == []
    # Events are embedded byte for byte.
    assert story.withheld.body in list_page(events, frozenset(), {"limit": ["100"]})


def test_signature_is_stripes_scheme() -> None:
    # Stripe's documented example shape: t=<ts>,v1=<hex hmac of "<ts>.<body>">.
    sig = stripe_signature("whsec_x", 1_700_000_000, b'{"id":"evt_1"}')
    assert sig.startswith("t=1700000000,v1=")
    assert len(sig.split("v1=")[1]) == 64
