"""What the rules read (facts) and what they say (findings): plain values, no I/O.

A :class:`Finding` names an alert by ``(rule, subject)``; the lifecycle turns findings into alert
rows. ``accumulate`` says how a repeat firing counts: event-like findings (an out-of-order burst,
a missing event) add their count to the open alert; state-like findings (silence, a lag) replace it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from alerts.coexist.model import CoexistFacts
from ledgerhook.settings import AlertSettings

__all__ = [
    "RULES",
    "Anomaly",
    "ChainStatus",
    "DeadLetters",
    "EndpointActivity",
    "Facts",
    "FetchBackMismatch",
    "Finding",
    "MissingEvent",
    "RejectionCount",
    "RuleName",
    "Severity",
    "Unprocessed",
]

Severity = Literal["info", "warning", "critical"]
RuleName = Literal[
    "out_of_order",
    "missing_predecessor",
    "missing_event",
    "fetch_back_mismatch",
    "silence",
    "rejections",
    "processing",
    "integrity",
    "coexist_double_billing",
    "coexist_both_active",
    "coexist_wrong_side",
    "coexist_orphan",
]
RULES: tuple[RuleName, ...] = (
    "out_of_order",
    "missing_predecessor",
    "missing_event",
    "fetch_back_mismatch",
    "silence",
    "rejections",
    "processing",
    "integrity",
    "coexist_double_billing",
    "coexist_both_active",
    "coexist_wrong_side",
    "coexist_orphan",
)


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    rule: RuleName
    severity: Severity
    provider: str | None
    subject: str
    summary: str
    count: int = 1
    accumulate: bool = True
    delivery_ids: tuple[int, ...] = ()
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)


class Anomaly(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``processors.anomalies`` the sweep has not turned into a finding yet."""

    id: int
    kind: Literal["out_of_order", "missing_predecessor"]
    provider: str
    account: str
    object_type: str
    object_id: str
    delivery_id: int
    event_type: str
    event_created: int
    created_at: datetime
    # missing_predecessor only: an earlier delivery for the object has arrived since.
    predecessor_arrived: bool = False


class EndpointActivity(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    endpoint: str
    silence_after_seconds: int
    last_verified_at: datetime | None
    # When the sweeps first saw this endpoint configured: silence counts from here if nothing came.
    watching_since: datetime


class RejectionCount(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    endpoint: str
    count: int
    reasons: dict[str, int] = msgspec.field(default_factory=dict)


class DeadLetters(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    count: int
    delivery_ids: tuple[int, ...] = ()


class Unprocessed(msgspec.Struct, frozen=True, kw_only=True):
    delivery_id: int
    provider: str
    received_at: datetime
    count: int


class ChainStatus(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    checked: int
    head_id: int
    first_bad_id: int | None = None
    reason: str | None = None


class MissingEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event the provider's API lists and the audit log did not have (now backfilled)."""

    provider: str
    account: str
    endpoint: str
    event_id: str
    event_type: str
    event_created: int
    delivery_id: int | None
    delivery_failed: bool | None = None


class FetchBackMismatch(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    endpoint: str
    delivery_id: int
    event_id: str
    delivered_sha256: str
    fetched_sha256: str | None
    differences: tuple[str, ...] = ()


class Facts(msgspec.Struct, frozen=True, kw_only=True):
    config: AlertSettings = AlertSettings()
    anomalies: tuple[Anomaly, ...] = ()
    endpoints: tuple[EndpointActivity, ...] = ()
    rejections: tuple[RejectionCount, ...] = ()
    dead_letters: tuple[DeadLetters, ...] = ()
    oldest_unprocessed: Unprocessed | None = None
    chain: ChainStatus | None = None
    missing_events: tuple[MissingEvent, ...] = ()
    mismatches: tuple[FetchBackMismatch, ...] = ()
    # Provider migration (alerts.coexist): gathered by the coexistence sweep only.
    coexist: CoexistFacts | None = None
