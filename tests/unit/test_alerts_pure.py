"""Pure helpers of the alerts package: fetch-back comparison, PagerDuty bodies, cursors, durations."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import msgspec
import pytest

from alerts.errors import InvalidAlertQuery
from alerts.fetchback import differences
from alerts.lifecycle import Alert
from alerts.notify import backoff
from alerts.notify.pagerduty import event
from alerts.repository import decode_cursor, encode_cursor
from ledgerhook.cli.reconcile import duration
from tests.conftest import fixture_bytes


def _event() -> dict:  # type: ignore[type-arg]
    data = msgspec.json.decode(
        fixture_bytes("chargebee", "event_subscription_created_retrieve.json")
    )
    return data["event"]  # type: ignore[no-any-return]


def test_fetch_back_identical_copies_agree_whatever_the_key_order() -> None:
    ev = _event()
    a = msgspec.json.encode(ev)
    b = msgspec.json.Encoder(order="sorted").encode(ev)
    assert a != b
    assert differences(a, b) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda e: e.update(event_type="subscription_cancelled"), "event_type differs"),
        (lambda e: e.update(occurred_at=e["occurred_at"] + 1), "occurred_at differs"),
        (
            lambda e: e["content"]["subscription"].update(resource_version=1),
            "content.subscription.resource_version differs",
        ),
        (
            lambda e: e["content"]["subscription"]["subscription_items"][0].update(amount=1),
            "content.subscription differs",
        ),
        (lambda e: e["content"].pop("customer"), "content resources differ"),
    ],
)
def test_fetch_back_finds_meaningful_differences(mutate, expected) -> None:  # type: ignore[no-untyped-def]
    original = _event()
    forged = _event()
    mutate(forged)
    diffs = differences(msgspec.json.encode(forged), msgspec.json.encode(original))
    assert any(d.startswith(expected) for d in diffs), diffs


def test_fetch_back_delivered_garbage_is_a_difference() -> None:
    assert differences(b"not json", msgspec.json.encode(_event()))


def _alert(status: str = "open") -> Alert:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Alert(
        id=42,
        rule="silence",
        severity="warning",
        provider="stripe",
        subject="stripe/default",
        summary="quiet",
        status=status,
        first_seen=now,
        last_seen=now,
        count=1,  # type: ignore[arg-type]
        delivery_ids=[1, 2],
        evidence={},
        acknowledged_at=None,
        acknowledged_by=None,
        resolved_at=None,
        resolved_by=None,
        resolution=None,
    )


def test_pagerduty_trigger_and_resolve_share_the_alert_id_as_dedup_key() -> None:
    trigger = event("rk", _alert(), "trigger")
    resolve = event("rk", _alert(), "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == "42"
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    payload = trigger["payload"]
    assert isinstance(payload, dict) and payload["severity"] == "warning"
    assert "payload" not in resolve


def test_backoff_grows_and_is_capped() -> None:
    waits = [backoff(n).total_seconds() for n in range(1, 12)]
    assert waits[0] == 30 and waits[1] == 60 and waits == sorted(waits)
    assert max(waits) == 3600


def test_cursor_round_trip_and_garbage() -> None:
    assert decode_cursor(encode_cursor(123)) == 123
    for bad in ("", "!!", "YWxlcnQ6eA", "ZGVsaXZlcnk6MQ"):
        with pytest.raises(InvalidAlertQuery):
            decode_cursor(bad)


@pytest.mark.parametrize(
    ("text", "seconds"), [("2h", 7200), ("15m", 900), ("90", 90), ("7d", 604800)]
)
def test_duration(text: str, seconds: int) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0h", "-1h", "2w", "h"])
def test_duration_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_reconcile_interval_zero_means_on_demand_only() -> None:
    """The development .env reconciles against the demo's stand-in, which only runs during the
    demo: periodic runs there would fail every 15 minutes for nothing."""
    from alerts.sweep import cron_jobs
    from ledgerhook.settings import ReconcileSettings, Secret, Settings

    settings = Settings(
        database_url=Secret("postgresql://x@127.0.0.1/y"),
        stripe_api_key=Secret("sk_test_x"),
        reconcile=ReconcileSettings(interval_seconds=0),
    )
    assert "alerts_reconcile" not in [j.name for j in cron_jobs(settings)]


def test_cron_jobs_schedule_reconciliation_only_with_credentials() -> None:
    from alerts.sweep import cron_jobs
    from ledgerhook.settings import DriftSettings, Secret, Settings
    from ledgerhook.worker import worker_settings

    plain = Settings(database_url=Secret("postgresql://x@127.0.0.1/y"))
    assert [j.name for j in cron_jobs(plain)] == [
        "alerts_sweep",
        "alerts_integrity",
        "alerts_coexist",
    ]
    with_keys = Settings(
        database_url=Secret("postgresql://x@127.0.0.1/y"), stripe_api_key=Secret("sk_test_x")
    )
    assert [j.name for j in cron_jobs(with_keys)] == [
        "alerts_sweep",
        "alerts_integrity",
        "alerts_coexist",
        "alerts_reconcile",
        "alerts_drift",
    ]
    no_drift = msgspec.structs.replace(with_keys, drift=DriftSettings(interval_seconds=0))
    assert "alerts_drift" not in [j.name for j in cron_jobs(no_drift)]
    sweep_job = cron_jobs(plain)[0]
    assert sweep_job.minute == {0, *range(1, 60)} and sweep_job.second == {0}  # every 60 s
    names = [j.name.split(":", 1)[1] for j in worker_settings(with_keys)["cron_jobs"]]
    assert {"alerts_sweep", "alerts_integrity", "alerts_reconcile"} <= set(names)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.stripe.com/v1/events", "https://api.stripe.com/v1/events"),
        ("http://127.0.0.1:12111/v1/events?limit=100", "http://127.0.0.1:12111/v1/events"),
        (
            "https://key:secret@acme.chargebee.com/api/v2/events",
            "https://acme.chargebee.com/api/v2/events",
        ),
    ],
)
def test_provider_urls_in_messages_carry_no_credentials_or_query(url: str, shown: str) -> None:
    from alerts.reconcile.base import public_url

    assert public_url(url) == shown
