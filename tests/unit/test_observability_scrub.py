"""Sentry scrubbing is a pure function of the event: tables of events in, events out."""

from __future__ import annotations

from typing import Any

import pytest

from ledgerhook.observability import FILTERED, scrub_crumb, scrub_event, secret_values
from ledgerhook.settings import AlertSettings, EndpointSettings, Secret, Settings

SECRETS = frozenset({"whsec_live_abcdef123456", "s3cret-pass"})


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            {"request": {"url": "/webhooks/stripe", "data": '{"id": "evt_1"}', "method": "POST"}},
            {"request": {"url": "/webhooks/stripe", "method": "POST"}},
        ),
        (
            {"request": {"cookies": {"session": "x"}, "env": {"REMOTE_ADDR": "1.2.3.4"}}},
            {"request": {}},
        ),
        (
            {
                "request": {
                    "headers": {
                        "Authorization": "Bearer lh_admin_token",
                        "Stripe-Signature": "t=1,v1=abc",
                        "Content-Type": "application/json",
                    }
                }
            },
            {
                "request": {
                    "headers": {
                        "Authorization": FILTERED,
                        "Stripe-Signature": FILTERED,
                        "Content-Type": "application/json",
                    }
                }
            },
        ),
        (
            {"request": {"headers": [["authorization", "Basic Y2I6cHc="], ["accept", "*/*"]]}},
            {"request": {"headers": [["authorization", FILTERED], ["accept", "*/*"]]}},
        ),
        (
            {"message": "bad secret whsec_live_abcdef123456 in config"},
            {"message": f"bad secret {FILTERED} in config"},
        ),
        (
            {
                "exception": {
                    "values": [{"type": "ValueError", "value": "auth cbhook:s3cret-pass failed"}]
                },
                "extra": {"nested": ("s3cret-pass", 3)},
            },
            {
                "exception": {
                    "values": [{"type": "ValueError", "value": f"auth cbhook:{FILTERED} failed"}]
                },
                "extra": {"nested": (FILTERED, 3)},
            },
        ),
        (
            {
                "breadcrumbs": {
                    "values": [{"category": "httpx", "data": {"url": "u", "body": "raw"}}]
                }
            },
            {"breadcrumbs": {"values": [{"category": "httpx", "data": {"url": "u"}}]}},
        ),
        ({"tags": {"delivery_id": "42"}}, {"tags": {"delivery_id": "42"}}),
    ],
)
def test_scrub_event(event: dict[str, Any], expected: dict[str, Any]) -> None:
    assert scrub_event(event, SECRETS) == expected


def test_scrub_event_does_not_mutate_its_input() -> None:
    event = {"request": {"data": "body", "headers": {"Authorization": "x"}}}
    scrub_event(event, SECRETS)
    assert event == {"request": {"data": "body", "headers": {"Authorization": "x"}}}


def test_scrub_crumb_drops_bodies_and_credential_headers() -> None:
    crumb = {"data": {"url": "u", "data": "payload", "headers": {"Cookie": "c", "Accept": "a"}}}
    assert scrub_crumb(crumb) == {
        "data": {"url": "u", "headers": {"Cookie": FILTERED, "Accept": "a"}}
    }
    assert scrub_crumb({"message": "plain"}) == {"message": "plain"}


def test_secret_values_finds_every_secret_in_settings() -> None:
    settings = Settings(
        database_url=Secret("postgresql://lh:db-password-1@db/ledgerhook"),
        stripe_webhook_secrets=(Secret("whsec_one_0123456789"),),
        chargebee_basic_auth=(Secret("cbuser:cb-password-2"),),
        stripe_api_key=Secret("sk_test_0123456789"),
        alerts=AlertSettings(slack_webhook_url=Secret("https://hooks.slack.com/services/T/B/XYZ")),
        endpoints=(
            EndpointSettings(provider="stripe", name="eu", secrets=(Secret("whsec_eu_987654321"),)),
        ),
    )
    found = secret_values(settings)
    for value in (
        "db-password-1",
        "whsec_one_0123456789",
        "cbuser:cb-password-2",
        "cb-password-2",
        "sk_test_0123456789",
        "https://hooks.slack.com/services/T/B/XYZ",
        "whsec_eu_987654321",
    ):
        assert value in found
    # Non-secret fields never count, and tiny values would shred events if substituted.
    assert "ledgerhook" not in found
    minimal = Settings(database_url=Secret("postgresql://db/x"), checkpoint_key=Secret("k"))
    assert secret_values(minimal) == {"postgresql://db/x", "redis://127.0.0.1:6379/0"}
