"""Every Prometheus metric Ledgerhook exports, defined once.

Multi-process safe: when ``PROMETHEUS_MULTIPROC_DIR`` is set (``ledgerhook serve --workers N``
sets it), the client library writes per-process files and ``/metrics`` aggregates them. Gauges
state how they combine across processes. Labels never carry secrets or unbounded values (no event
ids, no object ids).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _mp

__all__ = ["CONTENT_TYPE_LATEST", "MEDIA_TYPE", "render"]

# Prometheus' content type without its charset: Litestar appends ``; charset=utf-8`` to every
# text/* media type itself, and the header carried the charset twice.
MEDIA_TYPE = CONTENT_TYPE_LATEST.split("; charset=")[0]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

deliveries_received = Counter(
    "ledgerhook_deliveries_received_total",
    "Webhook deliveries received, by provider, endpoint and outcome (stored, duplicate, rejected, unavailable).",
    ["provider", "endpoint", "outcome"],
)
verification_failures = Counter(
    "ledgerhook_verification_failures_total",
    "Deliveries that failed verification, by provider and reason.",
    ["provider", "reason"],
)
rejections_unrecorded = Counter(
    "ledgerhook_rejections_unrecorded_total",
    "Rejections counted but not written to the rejection log (over the per-minute cap).",
    ["provider", "endpoint"],
)
request_seconds = Histogram(
    "ledgerhook_http_request_duration_seconds",
    "HTTP request latency by route and status class.",
    ["route", "status"],
    buckets=_LATENCY,
)
commit_batch_size = Histogram(
    "ledgerhook_ingest_commit_batch_size",
    "Deliveries committed per group-commit transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
enqueue_failures = Counter(
    "ledgerhook_enqueue_failures_total",
    "Wake-ups that could not be sent to Redis (the sweeper picks these deliveries up).",
)
receipt_to_applied_seconds = Histogram(
    "ledgerhook_receipt_to_applied_seconds",
    "Time from a delivery's receipt to its application to billing state.",
    ["provider"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)
events_processed = Counter(
    "ledgerhook_events_processed_total",
    "Deliveries processed by the workers, by provider and outcome (applied, duplicate, stale, ignored, dead_letter).",
    ["provider", "outcome"],
)
queue_depth = Gauge(
    "ledgerhook_queue_depth",
    "Committed deliveries not yet processed.",
    multiprocess_mode="max",
)
oldest_unprocessed_seconds = Gauge(
    "ledgerhook_oldest_unprocessed_age_seconds",
    "Age of the oldest committed delivery not yet processed.",
    multiprocess_mode="max",
)
dead_letters = Gauge(
    "ledgerhook_dead_letters",
    "Deliveries in the dead-letter state.",
    multiprocess_mode="max",
)
alerts_open = Gauge(
    "ledgerhook_alerts_open",
    "Open (unresolved) alerts by rule and severity.",
    ["rule", "severity"],
    multiprocess_mode="max",
)
alerts_fired = Counter(
    "ledgerhook_alerts_fired_total",
    "Alerts opened, by rule and severity.",
    ["rule", "severity"],
)
reconciliation_failures = Counter(
    "ledgerhook_reconciliation_failures_total",
    "Reconciliation runs that could not list the provider's events, by provider and endpoint.",
    ["provider", "endpoint"],
)
reconciliation_succeeded_at = Gauge(
    "ledgerhook_reconciliation_last_success_timestamp_seconds",
    "Unix time of the last reconciliation run that listed the provider's events.",
    ["provider", "endpoint"],
    multiprocess_mode="max",
)
integration_lag_seconds = Histogram(
    "ledgerhook_integration_lag_seconds",
    "Receipt to integration in the Merkle tree (the sequencer's merge delay), per delivery.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
)
merge_delay_exceeded = Counter(
    "ledgerhook_merge_delay_exceeded_total",
    "Deliveries integrated later than the maximum merge delay.",
)
leaves_integrated = Counter(
    "ledgerhook_leaves_integrated_total",
    "Deliveries integrated into the Merkle tree by this process's sequencer.",
)
sequencer_leader = Gauge(
    "ledgerhook_sequencer_leading",
    "1 while this process's sequencer is the leader (see ledgerhook_sequencer_leaders).",
    multiprocess_mode="max",
)

auth_refusals = Counter(
    "ledgerhook_api_auth_refusals_total",
    "Read/ops API requests the token guard refused, by reason (missing, invalid, throttled, forbidden).",
    ["reason"],
)
auth_brake_errors = Counter(
    "ledgerhook_auth_brake_errors_total",
    "Brute-force brake calls that failed or timed out in Redis (the brake let the request through).",
)

sync_objects = Counter(
    "ledgerhook_sync_objects_total",
    "Objects read by ledgerhook sync and stored as deliveries, by provider, list and outcome (stored, duplicate: an unchanged re-fetch).",
    ["provider", "object_type", "outcome"],
)
sync_pages = Counter(
    "ledgerhook_sync_pages_total",
    "List pages read and stored by ledgerhook sync.",
    ["provider", "object_type"],
)
sync_expected_objects = Gauge(
    "ledgerhook_sync_expected_objects",
    "Objects the provider said a list being synced has (0 when it does not say).",
    ["provider", "object_type"],
    multiprocess_mode="max",
)
sync_running = Gauge(
    "ledgerhook_sync_running",
    "Syncs running in this process, by provider.",
    ["provider"],
    multiprocess_mode="livesum",
)
provider_api_errors = Counter(
    "ledgerhook_provider_api_errors_total",
    "Failed calls to a provider's API (each attempt), by provider, operation (sync, drift) and kind (rate_limited, server_error, timeout, connection, malformed, not_found, auth, client_error).",
    ["provider", "operation", "kind"],
)
drift_checks = Counter(
    "ledgerhook_drift_checks_total",
    "State objects compared with the provider's copy, by provider, object type and result (match, drift, repaired, state_newer, pending, gone, failed).",
    ["provider", "object_type", "result"],
)


def render() -> bytes:
    """The exposition text: aggregated across processes in multi-process mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()
