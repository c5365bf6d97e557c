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
    "ApiFailure",
    "DeadLetters",
    "EndpointActivity",
    "Facts",
    "FetchBackMismatch",
    "Finding",
    "IntegrationBacklog",
    "MissingEvent",
    "ReconcileFailure",
    "RejectionCount",
    "RuleName",
    "Severity",
    "StateDrift",
    "Unprocessed",
    "VerificationStatus",
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
    "merge_delay",
    "reconciliation_failing",
    "state_drift",
    "provider_api",
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
    "merge_delay",
    "reconciliation_failing",
    "state_drift",
    "provider_api",
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


class VerificationStatus(msgspec.Struct, frozen=True, kw_only=True):
    """The latest tree verification (``audit.verification_runs``)."""

    ok: bool
    tree_size: int
    finished_at: datetime
    source: str
    first_bad: str | None = None
    reason: str | None = None


class IntegrationBacklog(msgspec.Struct, frozen=True, kw_only=True):
    """Committed deliveries not yet in the tree, and leaves integrated late since the last sweep."""

    max_merge_delay_seconds: float
    pending: int
    oldest_received_at: datetime | None
    late_leaves: int = 0
    max_late_seconds: float = 0.0
    first_late_delivery: int | None = None


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


class ReconcileFailure(msgspec.Struct, frozen=True, kw_only=True):
    """A reconciliation run that could not list the provider's events (the API failed)."""

    provider: str
    endpoint: str
    account: str
    # The API URL it called (no credentials) and what went wrong; never a key.
    api_url: str
    error: str


class FetchBackMismatch(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    endpoint: str
    delivery_id: int
    event_id: str
    delivered_sha256: str
    fetched_sha256: str | None
    differences: tuple[str, ...] = ()


class StateDrift(msgspec.Struct, frozen=True, kw_only=True):
    """A state object that differs from the provider's current copy (alerts.drift)."""

    provider: str
    account: str
    object_type: str
    object_id: str
    # field -> [state value, provider value], normalised (processors.model) on both sides.
    fields: dict[str, list[Any]]
    # The provider no longer has the object (404) while the state has it, not deleted.
    gone: bool = False
    last_delivery_id: int | None = None
    state_version: str = ""
    provider_version: str = ""
    # The delivery a repair appended (the fetched object, origin sync), if one was made, and
    # whether the state matches the provider after it was applied.
    repair_delivery_id: int | None = None
    repaired: bool = False


class ApiFailure(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's API failing runs of sync or drift checks, after every retry."""

    provider: str
    # sync: the endpoint and list; drift: the account.
    where: str
    operation: Literal["sync", "drift"]
    consecutive: int
    last_error: str | None
    updated_at: datetime


class Facts(msgspec.Struct, frozen=True, kw_only=True):
    config: AlertSettings = AlertSettings()
    anomalies: tuple[Anomaly, ...] = ()
    endpoints: tuple[EndpointActivity, ...] = ()
    rejections: tuple[RejectionCount, ...] = ()
    dead_letters: tuple[DeadLetters, ...] = ()
    oldest_unprocessed: Unprocessed | None = None
    verification: VerificationStatus | None = None
    integration: IntegrationBacklog | None = None
    missing_events: tuple[MissingEvent, ...] = ()
    mismatches: tuple[FetchBackMismatch, ...] = ()
    reconcile_failures: tuple[ReconcileFailure, ...] = ()
    drifts: tuple[StateDrift, ...] = ()
    api_failures: tuple[ApiFailure, ...] = ()
    # Provider migration (alerts.coexist): gathered by the coexistence sweep only.
    coexist: CoexistFacts | None = None
