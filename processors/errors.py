"""Errors of the processors package.

    ProcessorError
    ├── NormalisationError   a payload of a mapped event type the normaliser cannot handle:
    │                        deterministic, so the delivery is dead-lettered, never retried
    ├── DeliveryNotFound     a job or replay named a delivery id that is not in the audit log
    ├── StateNotFound        a state object the read API was asked for does not exist (HTTP 404)
    └── InvalidStateQuery    a filter, cursor or page size the caller got wrong (HTTP 400)

Transient database failures are not wrapped: the worker sees asyncpg's own exceptions and
retries them (see :mod:`processors.worker`).
"""

from __future__ import annotations

__all__ = [
    "DeliveryNotFound",
    "InvalidStateQuery",
    "NormalisationError",
    "ProcessorError",
    "StateNotFound",
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
