"""Sync and drift, the pure parts, from tables: identities, retries, classification, locations,
snapshot normalisation, drift comparison, the rules, progress lines and --since."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

import chargebee
import httpx
import msgspec
import pytest
import stripe

from alerts.drift.compare import compare
from alerts.model import ApiFailure, Facts, StateDrift
from alerts.rules import evaluate
from ledgerhook.cli.sync import ListPrinter, parse_since
from ledgerhook.settings import AlertSettings, SyncSettings
from processors.errors import InvalidSyncRequest, NormalisationError, SyncNotConfigured
from processors.model import Customer, StoredObject, Subscription, SubscriptionItem
from processors.normalize import normalize_delivery
from processors.sync import ListProgress, identity, kinds, retry
from processors.sync.chargebee_api import classify as cb_classify
from processors.sync.chargebee_api import sdk_location
from processors.sync.stripe_api import classify as stripe_classify
from processors.transitions import apply
from tests.conftest import fixture_bytes

NOW = datetime(2024, 1, 1, tzinfo=UTC)


# --- identity ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_id", "origin", "basis"),
    [
        ("evt_1abc", "webhook", "evt_1abc"),  # a webhook changed it last
        ("evt_1abc", "reconciliation", "evt_1abc"),
        ("sync:" + "a" * 24 + ":evt_9", "sync", "evt_9"),  # a snapshot: inherits its basis
        ("sync:" + "b" * 24 + ":-", "sync", "-"),  # a snapshot of an object never evented
        ("sync:customer:cust_1:5000", "sync", "sync:customer:cust_1:5000"),  # Chargebee form
    ],
)
def test_the_basis_a_snapshot_inherits(event_id: str, origin: str, basis: str) -> None:
    assert identity.basis_of(event_id, origin) == basis


def test_stripe_ids_change_with_content_or_basis_only() -> None:
    d1, d2 = "1" * 24, "2" * 24
    assert identity.stripe_event_id(d1, None) == identity.stripe_event_id(d1, None)
    assert identity.stripe_event_id(d1, None) != identity.stripe_event_id(d2, None)
    assert identity.stripe_event_id(d1, "evt_a") != identity.stripe_event_id(d1, "evt_b")
    # A -> B -> A: the second A follows event B, so it is not "unchanged".
    first_a = identity.stripe_event_id(d1, None)
    second_a = identity.stripe_event_id(d1, identity.basis_of("evt_b", "webhook"))
    assert first_a != second_a
    # A snapshot of unchanged content on top of a snapshot: the same id (a duplicate).
    again = identity.stripe_event_id(d1, identity.basis_of(first_a, "sync"))
    assert again == first_a


def test_the_neutral_digest_ignores_representation() -> None:
    obj = json.loads(fixture_bytes("stripe", "customer_updated.json"))["data"]["object"]
    pretty = json.dumps(obj, indent=2).encode()
    compact = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    noted = json.dumps({**obj, "invoice_prefix": "NOT-HELD-BY-THE-STATE"}).encode()
    renamed = json.dumps({**obj, "email": "other@example.com"}).encode()
    # The state keeps metadata (provider migration links read it): a change there is a change.
    tagged = json.dumps({**obj, "metadata": {"chargebee_customer_id": "AzZ1"}}).encode()

    def digest(body: bytes) -> str:
        e = normalize_delivery(
            "stripe",
            body,
            account="a",
            origin="sync",
            event_id="",
            event_type="snapshot.customer",
            event_created=1,
        )
        assert e is not None
        return identity.neutral_digest(e.updates[0])

    assert digest(pretty) == digest(compact) == digest(noted)
    assert digest(renamed) != digest(pretty)
    assert digest(tagged) != digest(pretty)


@pytest.mark.parametrize(
    ("started", "date", "second"),
    [
        (1_700_000_000.7, None, 1_700_000_000),
        (1_700_000_000.7, "Tue, 14 Nov 2023 22:13:21 GMT", 1_700_000_000),  # ours is earlier
        (1_700_000_005.2, "Tue, 14 Nov 2023 22:13:21 GMT", 1_700_000_001),  # ours runs ahead
        (1_700_000_000.0, "not a date", 1_700_000_000),
    ],
)
def test_fetch_second(started: float, date: str | None, second: int) -> None:
    assert identity.fetch_second(started, date) == second


def test_chargebee_ids_follow_the_resource_version() -> None:
    assert identity.chargebee_event_id("customer", "c1", 5, b"{}") == "sync:customer:c1:5"
    assert identity.chargebee_event_id("customer", "c1", None, b"{}").startswith(
        "sync:customer:c1:"
    )


# --- lists ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "text", "lists"),
    [
        ("stripe", None, tuple(kinds.STRIPE_LISTS)),
        ("stripe", "invoices,customers", ("customers", "invoices")),  # sync order
        ("chargebee", "transactions", ("transactions",)),
        ("chargebee", ["credit_notes", "customers"], ("customers", "credit_notes")),
    ],
)
def test_parse_lists(provider: str, text: Any, lists: tuple[str, ...]) -> None:
    assert kinds.parse_lists(provider, text) == lists


@pytest.mark.parametrize(
    ("provider", "text"),
    [("stripe", "transactions"), ("chargebee", "charges"), ("stripe", ","), ("paypal", None)],
)
def test_parse_lists_refuses(provider: str, text: str | None) -> None:
    with pytest.raises(InvalidSyncRequest):
        kinds.parse_lists(provider, text)


# --- retries -------------------------------------------------------------------------------

S = SyncSettings(
    retries=3, retry_base_seconds=1.0, retry_max_seconds=5.0, max_retry_after_seconds=30
)


@pytest.mark.parametrize(
    ("failure", "attempt", "jitter", "wait"),
    [
        (retry.Failure(kind="server_error"), 1, 1.0, 1.0),
        (retry.Failure(kind="server_error"), 2, 1.0, 2.0),
        (retry.Failure(kind="timeout"), 3, 0.0, 2.0),  # 4 s with the least jitter
        (retry.Failure(kind="connection"), 3, 1.0, 4.0),
        (retry.Failure(kind="malformed"), 4, 1.0, None),  # retries exhausted
        (retry.Failure(kind="rate_limited", retry_after=7), 1, 0.0, 7.0),  # Retry-After as is
        (retry.Failure(kind="rate_limited", retry_after=600), 1, 1.0, 30.0),  # capped
        (retry.Failure(kind="rate_limited"), 2, 1.0, 2.0),  # no Retry-After: backoff
        (retry.Failure(kind="not_found"), 1, 1.0, None),  # not transient
        (retry.Failure(kind="auth"), 1, 1.0, None),
        (retry.Failure(kind="client_error"), 1, 1.0, None),
    ],
)
def test_delay(failure: retry.Failure, attempt: int, jitter: float, wait: float | None) -> None:
    assert retry.delay(S, failure, attempt, jitter) == wait


def test_backoff_is_capped() -> None:
    big = SyncSettings(retries=20, retry_base_seconds=1.0, retry_max_seconds=5.0)
    assert retry.delay(big, retry.Failure(kind="server_error"), 10, 1.0) == 5.0


def _stripe_error(
    cls: type[stripe.StripeError], status: int | None, **kw: Any
) -> stripe.StripeError:
    return cls("m", http_status=status, **kw)


@pytest.mark.parametrize(
    ("exc", "kind", "retry_after", "param"),
    [
        (
            stripe.RateLimitError("slow", http_status=429, headers={"Retry-After": "3"}),
            "rate_limited",
            3.0,
            None,
        ),
        (stripe.APIError("boom", http_status=500), "server_error", None, None),
        (
            stripe.APIError("Invalid response body from API", http_status=200),
            "malformed",
            None,
            None,
        ),
        (stripe.APIConnectionError("Request timed out"), "timeout", None, None),
        (stripe.APIConnectionError("connection refused"), "connection", None, None),
        (stripe.AuthenticationError("no", http_status=401), "auth", None, None),
        (
            stripe.InvalidRequestError(
                "No such customer", "starting_after", code="resource_missing", http_status=404
            ),
            "not_found",
            None,
            "starting_after",
        ),
        (
            stripe.InvalidRequestError("bad", "limit", http_status=400),
            "client_error",
            None,
            "limit",
        ),
        # A 404 without resource_missing is a wrong URL, not a vanished object.
        (
            stripe.InvalidRequestError("Unrecognized request URL", None, http_status=404),
            "client_error",
            None,
            None,
        ),
    ],
)
def test_stripe_classify(
    exc: stripe.StripeError, kind: str, retry_after: float | None, param: str | None
) -> None:
    f = stripe_classify(exc)
    assert f is not None
    assert (f.kind, f.retry_after, f.param) == (kind, retry_after, param)


def _cb_error(status: int, code: str) -> chargebee.APIError:
    return chargebee.APIError(
        status,
        {"message": code, "api_error_code": code, "type": "x"},
        httpx.Headers({"Retry-After": "4"}),
    )


@pytest.mark.parametrize(
    ("exc", "response_status", "kind", "retry_after"),
    [
        (_cb_error(429, "api_request_limit_exceeded"), None, "rate_limited", 4.0),
        (_cb_error(500, "internal_error"), None, "server_error", None),
        (_cb_error(503, "site_not_ready"), None, "server_error", None),
        (_cb_error(404, "resource_not_found"), None, "not_found", None),
        (_cb_error(404, "site_not_found"), None, "client_error", None),
        (_cb_error(401, "api_authentication_failed"), None, "auth", None),
        (_cb_error(400, "param_wrong_value"), None, "client_error", None),
        (httpx.ReadTimeout("slow"), None, "timeout", None),
        (httpx.ConnectError("refused"), None, "connection", None),
        # The SDK's plain Exception for a body that is not JSON: the response says what it was.
        (Exception("... http_status_code: 500 ..."), 200, "malformed", None),
        (Exception("... http_status_code: 500 ..."), 502, "server_error", None),
    ],
)
def test_chargebee_classify(
    exc: BaseException, response_status: int | None, kind: str, retry_after: float | None
) -> None:
    response = None if response_status is None else httpx.Response(response_status)
    f = cb_classify(exc, response)
    assert f is not None
    assert (f.kind, f.retry_after) == (kind, retry_after)


def test_chargebee_classify_lets_other_errors_through() -> None:
    assert cb_classify(KeyError("x"), None) is None


@pytest.mark.parametrize(
    ("base", "site", "location"),
    [
        ("", "acme", ("acme", "chargebee.com", "https")),
        ("https://acme.chargebee.com", "acme", ("acme", "chargebee.com", "https")),
        (
            "https://acme-test.chargebee.test/",
            "acme-test",
            ("acme-test", "chargebee.test", "https"),
        ),
        ("http://127.0.0.1:8123", "", ("127", "0.0.1:8123", "http")),
        ("http://127.0.0.1:8123", "acme", ("127", "0.0.1:8123", "http")),
    ],
)
def test_sdk_location(base: str, site: str, location: tuple[str, str, str]) -> None:
    assert sdk_location(base, site) == location


@pytest.mark.parametrize(
    ("base", "site"),
    [
        ("", ""),
        ("http://localhost:8123", ""),
        ("https://acme.chargebee.com/api/v2", "acme"),
        ("ftp://a.b", ""),
    ],
)
def test_sdk_location_refuses(base: str, site: str) -> None:
    with pytest.raises(SyncNotConfigured):
        sdk_location(base, site)


# --- snapshot normalisation ----------------------------------------------------------------


def _snapshot(
    provider: str, kind: str, obj: dict[str, Any], fetched_at: int = 1_700_000_000
) -> Any:
    event = normalize_delivery(
        provider,
        json.dumps(obj).encode(),
        account="a",
        origin="sync",
        event_id="sync:x",
        event_type=f"snapshot.{kind}",
        event_created=fetched_at,
    )
    assert event is not None
    return event.updates[0]


def test_a_deleted_stripe_customer_is_a_tombstone_that_keeps_what_was_known() -> None:
    full = Customer(email="ada@example.com", name="Ada")
    state = StoredObject(
        object_type="customer",
        provider="stripe",
        account="a",
        id="cus_1",
        version="000000000001.02.evt_1",
        body=full,
        last_delivery_id=1,
    )
    stub = _snapshot("stripe", "customer", {"id": "cus_1", "object": "customer", "deleted": True})
    assert stub.tombstone and stub.deleted and stub.snapshot
    t = apply(state, stub, provider="stripe", account="a", delivery_id=2)
    assert t.outcome == "applied"
    assert t.state.deleted and t.state.body == full
    assert t.change == {"deleted": [False, True]}


@pytest.mark.parametrize(
    ("provider", "kind", "body"),
    [
        ("stripe", "plan", {"id": "p"}),  # not a kind sync knows
        ("stripe", "customer", {"id": "ch_1", "object": "charge", "amount": 1}),  # wrong object
        ("stripe", "subscription", {"id": "sub_1"}),  # not a subscription's shape
        ("chargebee", "card", {"id": "c"}),
        ("chargebee", "customer", {"id": "c"}),  # no resource_version
    ],
)
def test_unreadable_snapshots_are_dead_letters(
    provider: str, kind: str, body: dict[str, Any]
) -> None:
    with pytest.raises(NormalisationError):
        _snapshot(provider, kind, body)


def test_a_sync_delivery_must_be_a_snapshot() -> None:
    with pytest.raises(NormalisationError):
        normalize_delivery(
            "stripe",
            b"{}",
            account="a",
            origin="sync",
            event_id="x",
            event_type="customer.updated",
            event_created=1,
        )


def test_a_first_snapshot_is_no_business_change_and_no_anomaly() -> None:
    obj = json.loads(fixture_bytes("stripe", "subscription_created.json"))["data"]["object"]
    t = apply(
        None,
        _snapshot("stripe", "subscription", obj),
        provider="stripe",
        account="a",
        delivery_id=1,
    )
    assert t.outcome == "applied" and t.anomalies == () and t.subscription_change is None


# --- drift comparison ----------------------------------------------------------------------


def _sub(status: str = "active", qty: int = 1, items: int = 1) -> Subscription:
    its = tuple(
        SubscriptionItem(price_id=f"p{i}", quantity=qty, unit_amount=100) for i in range(items)
    )
    return Subscription(status=status, currency="EUR", items=its, mrr=100 * qty * items)


def _state(body: Any, version: str = "0005", deleted: bool = False) -> StoredObject:
    return StoredObject(
        object_type="subscription",
        provider="chargebee",
        account="a",
        id="s1",
        version=version,
        deleted=deleted,
        body=body,
        last_delivery_id=7,
    )


def _fetched(
    body: Any, version: str = "0006", deleted: bool = False, tombstone: bool = False
) -> Any:
    from processors.model import ObjectUpdate

    return ObjectUpdate(
        object_type="subscription",
        object_id="s1",
        version=version,
        deleted=deleted,
        snapshot=True,
        tombstone=tombstone,
        body=body,
    )


@pytest.mark.parametrize(
    ("state", "fetched", "result", "fields"),
    [
        (_state(_sub()), _fetched(_sub()), "match", {}),
        (_state(_sub()), _fetched(_sub(), version="0005"), "match", {}),
        (
            _state(_sub()),
            _fetched(_sub("canceled")),
            "drift",
            {"status": ["active", "canceled"]},
        ),
        (
            _state(_sub(qty=1)),
            _fetched(_sub(qty=3)),
            "drift",
            {
                "items": [
                    [
                        {
                            "price_id": "p0",
                            "product_id": None,
                            "quantity": 1,
                            "unit_amount": 100,
                            "interval": "month",
                            "interval_count": 1,
                        }
                    ],
                    [
                        {
                            "price_id": "p0",
                            "product_id": None,
                            "quantity": 3,
                            "unit_amount": 100,
                            "interval": "month",
                            "interval_count": 1,
                        }
                    ],
                ],
                "mrr": [100, 300],
            },
        ),
        (_state(_sub()), _fetched(_sub("canceled"), version="0004"), "state_newer", {}),
        (_state(_sub()), None, "gone", {"deleted": [False, True]}),
        (_state(_sub(), deleted=True), None, "match", {}),
        (_state(_sub()), _fetched(_sub(), deleted=True), "drift", {"deleted": [False, True]}),
        # A tombstone says only "deleted": the other fields are not compared.
        (
            _state(_sub(), deleted=True),
            _fetched(_sub("canceled"), deleted=True, tombstone=True),
            "match",
            {},
        ),
    ],
)
def test_compare(state: StoredObject, fetched: Any, result: str, fields: dict[str, Any]) -> None:
    verdict = compare(state, fetched)
    assert (verdict.result, verdict.fields) == (result, fields)


def test_item_order_is_not_drift() -> None:
    two = _sub(items=2)
    swapped = msgspec.structs.replace(two, items=tuple(reversed(two.items)))
    assert compare(_state(two), _fetched(swapped)).result == "match"


def test_fields_an_api_version_drops_are_compared_only_when_present() -> None:
    from processors.model import ObjectUpdate, Payment

    state = StoredObject(
        object_type="payment",
        provider="stripe",
        account="a",
        id="ch_1",
        version="0001",
        body=Payment(kind="charge", status="succeeded", invoice_id="in_1", amount=5),
        last_delivery_id=1,
    )
    fetched = ObjectUpdate(
        object_type="payment",
        object_id="ch_1",
        version="0002",
        snapshot=True,
        body=Payment(kind="charge", status="succeeded", invoice_id=None, amount=5),
    )
    assert compare(state, fetched).result == "match"
    other = msgspec.structs.replace(
        fetched, body=msgspec.structs.replace(fetched.body, invoice_id="in_2")
    )
    assert compare(state, other).fields == {"invoice_id": ["in_1", "in_2"]}


# --- the rules -----------------------------------------------------------------------------


def test_state_drift_names_the_object_and_fields() -> None:
    d = StateDrift(
        provider="stripe",
        account="acct",
        object_type="subscription",
        object_id="sub_1",
        fields={"status": ["active", "canceled"], "mrr": [100, 0]},
        last_delivery_id=9,
    )
    (f,) = evaluate(Facts(drifts=(d,)), NOW)
    assert (f.rule, f.subject, f.severity) == (
        "state_drift",
        "stripe:acct:subscription:sub_1",
        "warning",
    )
    assert f.summary.endswith("differs from stripe: mrr, status")
    assert f.evidence["fields"]["status"] == {"state": "active", "provider": "canceled"}
    assert f.delivery_ids == (9,)
    repaired = msgspec.structs.replace(d, repair_delivery_id=12, repaired=True)
    (g,) = evaluate(Facts(drifts=(repaired,)), NOW)
    assert "repaired by delivery 12" in g.summary and g.delivery_ids == (9, 12)


def test_provider_api_fires_at_the_threshold() -> None:
    def failure(n: int, where: str = "default/customers") -> ApiFailure:
        return ApiFailure(
            provider="stripe",
            where=where,
            operation="sync",
            consecutive=n,
            last_error="server_error (HTTP 500)",
            updated_at=NOW,
        )

    cfg = AlertSettings(provider_api_failures_threshold=3)
    assert evaluate(Facts(config=cfg, api_failures=(failure(2),)), NOW) == []
    (f,) = evaluate(
        Facts(config=cfg, api_failures=(failure(3), failure(5, "default/invoices"))), NOW
    )
    assert (f.rule, f.subject, f.count) == ("provider_api", "stripe:sync", 5)
    assert "default/invoices" in f.summary


# --- the terminal ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("progress", "line"),
    [
        (
            ListProgress(
                provider="stripe",
                object_type="customers",
                listed=2500,
                stored=2400,
                duplicates=100,
                total=10000,
                seconds=5.0,
            ),
            "stripe customers: 2 500/10 000 (25%) objects, 500/s, ETA 15s (new 2 400, unchanged 100)",
        ),
        (
            ListProgress(
                provider="chargebee",
                object_type="invoices",
                listed=300,
                stored=300,
                duplicates=0,
                total=None,
                seconds=3.0,
                resumed_at=1000,
            ),
            "chargebee invoices: 1 300 objects, 100/s (new 300, unchanged 0, resumed after 1 000)",
        ),
    ],
)
def test_progress_line(progress: ListProgress, line: str) -> None:
    assert ListPrinter.line(progress) == line


def test_progress_is_throttled_per_list() -> None:
    t = [0.0]
    out: list[str] = []
    printer = ListPrinter(interval=2.0, clock=lambda: t[0], out=out.append)
    p = ListProgress(
        provider="stripe",
        object_type="customers",
        listed=1,
        stored=1,
        duplicates=0,
        total=None,
        seconds=1.0,
    )
    printer(p)
    printer(p)
    t[0] = 2.5
    printer(p)
    printer(msgspec.structs.replace(p, object_type="invoices"))
    assert len(out) == 3


@pytest.mark.parametrize(
    ("text", "since"),
    [
        ("90d", int(NOW.timestamp()) - 90 * 86400),
        ("12h", int(NOW.timestamp()) - 12 * 3600),
        ("2023-06-01", int(datetime(2023, 6, 1, tzinfo=UTC).timestamp())),
        ("2023-06-01T12:00:00+02:00", int(datetime(2023, 6, 1, 10, tzinfo=UTC).timestamp())),
    ],
)
def test_parse_since(text: str, since: int) -> None:
    assert parse_since(text, NOW) == since


@pytest.mark.parametrize("text", ["", "yesterday", "-3d", "2023-13-01"])
def test_parse_since_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_since(text, NOW)


# --- settings ------------------------------------------------------------------------------


def test_sync_and_drift_settings_come_from_their_sections() -> None:
    from ledgerhook.settings import load_settings

    s = load_settings(
        {
            "LEDGERHOOK_DATABASE_URL": "postgresql://x@127.0.0.1/y",
            "LEDGERHOOK_SYNC__PAGE_SIZE": "50",
            "LEDGERHOOK_SYNC__RETRIES": "7",
            "LEDGERHOOK_SYNC__STRIPE_API_VERSION": "2020-03-02",
            "LEDGERHOOK_DRIFT__CALLS_PER_MINUTE": "12",
            "LEDGERHOOK_DRIFT__REPAIR": "true",
            "LEDGERHOOK_ALERTS__PROVIDER_API_FAILURES_THRESHOLD": "5",
        }
    )
    assert (s.sync.page_size, s.sync.retries, s.sync.stripe_api_version) == (50, 7, "2020-03-02")
    assert (s.drift.calls_per_minute, s.drift.repair, s.drift.interval_seconds) == (12, True, 300)
    assert s.alerts.provider_api_failures_threshold == 5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEDGERHOOK_SYNC__PAGE_SIZE", "101"),
        ("LEDGERHOOK_SYNC__PAGE_SIZE", "0"),
        ("LEDGERHOOK_SYNC__RETRIES", "-1"),
        ("LEDGERHOOK_DRIFT__CALLS_PER_MINUTE", "0"),
    ],
)
def test_bad_sync_settings_stop_the_program_naming_them(name: str, value: str) -> None:
    from ledgerhook.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match=name.rsplit("__", 1)[0]):
        load_settings({"LEDGERHOOK_DATABASE_URL": "postgresql://x@127.0.0.1/y", name: value})
