"""Retrying calls to a provider's API, on top of the SDK's own retries.

The SDKs retry some failures themselves (Stripe: connection errors, 409 and 5xx, with
``max_network_retries``; Chargebee: 500/502/503/504 with its RetryConfig, and 429 after waiting
the ``Retry-After`` it was given). What they give up on, or do not retry (Stripe's 429 with its
``Retry-After``, Chargebee's timeouts and lost connections, a 200 whose body is not the JSON it
should be), comes here as a :class:`Failure`. :func:`delay` (pure) decides: wait the provider's
``Retry-After`` (capped) for a rate limit, else exponential backoff with jitter, up to
``retries`` more attempts; then the caller gets a :class:`~processors.errors.ProviderError`.
Every failed attempt is logged (never the key or the body) and counted in
``ledgerhook_provider_api_errors_total{provider,operation,kind}``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import msgspec

from ledgerhook import metrics
from ledgerhook.settings import SyncSettings
from processors.errors import ObjectGone, ProviderError

__all__ = [
    "TRANSIENT",
    "FailedCall",
    "Failure",
    "FailureKind",
    "Malformed",
    "call",
    "common_failure",
    "delay",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
FailureKind = Literal[
    "rate_limited",
    "server_error",
    "timeout",
    "connection",
    "malformed",
    "not_found",
    "auth",
    "client_error",
]
TRANSIENT: frozenset[str] = frozenset(
    {"rate_limited", "server_error", "timeout", "connection", "malformed"}
)


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    kind: FailureKind
    status: int | None = None
    retry_after: float | None = None
    # For logs and alerts: the exception class, status and the provider's error code.
    detail: str = ""
    # Stripe: the request parameter the provider complained about (e.g. starting_after).
    param: str | None = None


class Malformed(Exception):
    """The provider answered 2xx with a body that is not what its API documents."""


class FailedCall(Exception):
    """A provider module's classified failure of one attempt."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.kind)
        self.failure = failure


def common_failure(exc: BaseException) -> Failure | None:
    """A classified attempt, or what looks the same whatever the provider: our own bound on a
    call, an answer that does not decode as documented. None: not a provider failure."""
    if isinstance(exc, FailedCall):
        return exc.failure
    if isinstance(exc, TimeoutError):
        return Failure(kind="timeout", detail="no answer within the call timeout")
    if isinstance(exc, Malformed | msgspec.DecodeError | msgspec.ValidationError):
        return Failure(kind="malformed", detail=str(exc)[:200])
    return None


def delay(
    settings: SyncSettings, failure: Failure, attempt: int, jitter: float = 1.0
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None: give up. ``jitter`` in [0, 1]."""
    if failure.kind not in TRANSIENT or attempt > settings.retries:
        return None
    if failure.kind == "rate_limited" and failure.retry_after is not None:
        return max(0.0, min(failure.retry_after, settings.max_retry_after_seconds))
    backoff = min(
        settings.retry_base_seconds * float(2 ** (attempt - 1)), settings.retry_max_seconds
    )
    return backoff * (0.5 + 0.5 * jitter)


async def call(
    fn: Callable[[], Awaitable[T]],
    settings: SyncSettings,
    *,
    provider: str,
    operation: str,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_failure: Callable[[Failure], Awaitable[T | None]] | None = None,
) -> T:
    """``await fn()`` until it succeeds or :func:`delay` gives up.

    ``fn`` raises :class:`FailedCall` for a provider failure it classified; anything
    :func:`common_failure` does not know is not a provider failure and goes through.
    ``on_failure`` may turn a failure into a result or raise (e.g. for a vanished list cursor);
    returning None means "not handled".
    """
    attempt = 0
    while True:
        try:
            async with asyncio.timeout(settings.call_timeout_seconds):
                return await fn()
        except Exception as exc:
            failure = common_failure(exc)
            if failure is None:
                raise
        attempt += 1
        metrics.provider_api_errors.labels(
            provider=provider, operation=operation, kind=failure.kind
        ).inc()
        if on_failure is not None:
            handled = await on_failure(failure)
            if handled is not None:
                return handled
        wait = delay(settings, failure, attempt, random.random())  # noqa: S311 (jitter)
        log.warning(
            "provider API call failed",
            extra={
                "provider": provider,
                "operation": operation,
                "call": what,
                "kind": failure.kind,
                "status": failure.status,
                "detail": failure.detail,
                "attempt": attempt,
                "retry_in": None if wait is None else round(wait, 3),
            },
        )
        if wait is None:
            error = ObjectGone if failure.kind == "not_found" else ProviderError
            raise error(
                f"{provider} API {what} failed after {attempt} attempt(s): {failure.kind}"
                + (f" (HTTP {failure.status})" if failure.status else "")
                + (f": {failure.detail}" if failure.detail else ""),
                kind=failure.kind,
                status=failure.status,
            )
        await sleep(wait)
