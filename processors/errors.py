"""Errors of the processors package.

    ProcessorError
    ├── NormalisationError   a payload of a mapped event type the normaliser cannot handle:
    │                        deterministic, so the delivery is dead-lettered, never retried
    ├── DeliveryNotFound     a job or replay named a delivery id that is not in the audit log
    ├── StateNotFound        a state object the read API was asked for does not exist (HTTP 404)
    ├── InvalidStateQuery    a filter, cursor or page size the caller got wrong (HTTP 400)
    └── SyncError            reading the provider's objects (processors.sync) cannot go on
        ├── SyncNotConfigured    no API key for the provider, an unknown endpoint (HTTP 400)
        ├── InvalidSyncRequest   an unknown object type, a bad --since (HTTP 400)
        ├── SyncBusy             a sync of the same endpoint is already running (HTTP 409)
        ├── JobQueueUnavailable  a run started by API could not be queued: Redis is down (503)
        └── ProviderError        the provider's API failed or answered nonsense, after every
            │                    retry; ``kind`` says how (rate_limited, server_error, timeout,
            │                    connection, malformed, not_found, auth, client_error) (HTTP 502)
            └── ObjectGone       the provider no longer has the object (404 on retrieve)

Transient database failures are not wrapped: the worker sees asyncpg's own exceptions and
retries them (see :mod:`processors.worker`). Messages never contain API keys or bodies.
"""

from __future__ import annotations

__all__ = [
    "DeliveryNotFound",
    "InvalidStateQuery",
    "InvalidSyncRequest",
    "JobQueueUnavailable",
    "NormalisationError",
    "ObjectGone",
    "ProcessorError",
    "ProviderError",
    "StateNotFound",
    "SyncBusy",
    "SyncError",
    "SyncNotConfigured",
]


class ProcessorError(Exception):
    pass


class NormalisationError(ProcessorError):
    pass


class DeliveryNotFound(ProcessorError):
    pass


class StateNotFound(ProcessorError):
    pass


class InvalidStateQuery(ProcessorError):
    pass


class SyncError(ProcessorError):
    pass


class SyncNotConfigured(SyncError):
    pass


class InvalidSyncRequest(SyncError):
    pass


class SyncBusy(SyncError):
    pass


class JobQueueUnavailable(SyncError):
    pass


class ProviderError(SyncError):
    def __init__(self, message: str, *, kind: str = "unknown", status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


class ObjectGone(ProviderError):
    pass
