"""Reading the console's search forms into the same filter structs the JSON API uses (pure).

A browser submits every field of a GET form, empty or not, so an empty value means "any".
Values the API would refuse are refused here with the same words (``check_filter`` and the
repositories' own validation run on the result); this module only turns text into types.
Times come from ``datetime-local`` inputs, which have no zone: they are read as UTC, and the
form says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, get_args

import msgspec

from alerts.model import RULES, Severity
from audit.repository import DeliveryFilter, Outcome, check_filter
from ledgerhook.console.errors import BadForm
from processors.queries import KINDS, StateFilter

__all__ = [
    "ALERT_FIELDS",
    "ALERT_STATUSES",
    "DELIVERY_FIELDS",
    "OBJECT_FIELDS",
    "OUTCOMES",
    "PROVIDERS",
    "SEVERITIES",
    "AlertSearch",
    "DeliverySearch",
    "ObjectSearch",
    "alert_search",
    "delivery_search",
    "object_search",
    "values",
]

PROVIDERS = ("stripe", "chargebee")
OUTCOMES: tuple[str, ...] = get_args(Outcome)
ORIGINS = ("webhook", "reconciliation")
SEVERITIES: tuple[str, ...] = get_args(Severity)
ALERT_STATUSES = ("open", "acknowledged", "resolved")
_TEXT_FIELDS = ("endpoint", "account", "event_type", "event_id", "object_id")


class DeliverySearch(msgspec.Struct, frozen=True, kw_only=True):
    filter: DeliveryFilter
    cursor: str | None


class AlertSearch(msgspec.Struct, frozen=True, kw_only=True):
    status: str | None
    rule: str | None
    severity: str | None
    provider: str | None
    cursor: str | None


class ObjectSearch(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    provider: str | None
    object_id: str | None
    account: str | None
    filter: StateFilter
    cursor: str | None


def _get(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value:
        return None
    if "\x00" in value or len(value) > 255:
        raise BadForm(f"{name}: must be 1 to 255 characters without NUL")
    return value


def _choice(params: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = _get(params, name)
    if value is not None and value not in allowed:
        raise BadForm(f"{name}: must be one of {', '.join(allowed)}")
    return value


def _time(params: Mapping[str, Any], name: str) -> datetime | None:
    value = _get(params, name)
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise BadForm(f"{name}: use a date and time like 2026-01-31T23:59 (UTC)") from None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


DELIVERY_FIELDS = (
    "provider",
    *_TEXT_FIELDS,
    "origin",
    "outcome",
    "received_from",
    "received_to",
)
ALERT_FIELDS = ("status", "rule", "severity", "provider")
OBJECT_FIELDS = ("kind", "provider", "id", "account", "status", "customer")


def values(params: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, str]:
    """What the form showed, to fill it in again (raw text; escaped when printed)."""
    out: dict[str, str] = {}
    for name in names:
        value = params.get(name)
        out[name] = value[:255] if isinstance(value, str) else ""
    return out


def delivery_search(params: Mapping[str, Any]) -> DeliverySearch:
    f = DeliveryFilter(
        provider=_choice(params, "provider", PROVIDERS),  # type: ignore[arg-type]
        origin=_choice(params, "origin", ORIGINS),  # type: ignore[arg-type]
        outcome=_choice(params, "outcome", OUTCOMES),  # type: ignore[arg-type]
        received_from=_time(params, "received_from"),
        received_to=_time(params, "received_to"),
        endpoint=_get(params, "endpoint"),
        account=_get(params, "account"),
        event_type=_get(params, "event_type"),
        event_id=_get(params, "event_id"),
        object_id=_get(params, "object_id"),
    )
    check_filter(f)
    return DeliverySearch(filter=f, cursor=_get(params, "cursor"))


def alert_search(params: Mapping[str, Any]) -> AlertSearch:
    return AlertSearch(
        status=_choice(params, "status", ALERT_STATUSES),
        rule=_choice(params, "rule", RULES),
        severity=_choice(params, "severity", SEVERITIES),
        provider=_choice(params, "provider", PROVIDERS),
        cursor=_get(params, "cursor"),
    )


def object_search(params: Mapping[str, Any]) -> ObjectSearch:
    kind = _choice(params, "kind", tuple(KINDS)) or "customers"
    provider = _choice(params, "provider", PROVIDERS)
    account = _get(params, "account")
    return ObjectSearch(
        kind=kind,
        provider=provider,
        object_id=_get(params, "id"),
        account=account,
        filter=StateFilter(
            provider=provider,
            account=account,
            status=_get(params, "status"),
            customer=_get(params, "customer"),
        ),
        cursor=_get(params, "cursor"),
    )
