"""The brute-force brake: failed sign-ins per client address, one budget for every API process.

A fixed one-minute window per address in Redis: ``record_failure`` is one Lua call (INCR, and
PEXPIRE when the window starts), ``check`` another (the count and the window's remaining time).
Keys are ``<queue name>:auth-brake:<address>``, so installations and test runs that share a Redis
never share a budget. Redis, not PostgreSQL: a counter with an expiry is what Redis is for, while
in PostgreSQL every failed attempt of a flood would update one hot row (dead tuples, and
autovacuum may be off; see README, Database) in the database that holds the audit log.

The brake is a nuisance filter, not the security boundary (API tokens are 256-bit), so it fails
open: with Redis down, refusing or slower than ``api.brake_timeout_seconds``, ``check`` and
``record_failure`` answer None (nobody is refused, nothing is counted). A caller never sees a Redis error and never waits longer
than the timeout. The outage is logged once when it starts and once when it ends, and counted in
``ledgerhook_auth_brake_errors_total``.

How to use it (``app.state.brake``, opened by :func:`open_brake` in the app's lifespan)::

    address = scope_address(scope, settings.api.trusted_proxies, settings.api.proxy_header)

    # API tokens (unguessable; audit.auth): a valid token is served without asking the brake.
    # On a failed attempt:
    wait = await brake.record_failure(address)  # None while within budget: answer 401
    if wait is not None: -> 429, Retry-After: wait

    # Passwords (guessable: the console's sign-in): ask BEFORE verifying, or a correct guess
    # would still be served past the budget and the brake would slow nobody down.
    wait = await brake.check(address)           # None while within budget
    if wait is not None: -> 429, Retry-After: wait
    if the password is wrong: await brake.record_failure(address) and refuse
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import ConnectionPool, Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from ledgerhook import metrics
from ledgerhook.settings import Settings

__all__ = ["Brake", "open_brake"]

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0

# KEYS[1] the address's counter; ARGV[1] the window in ms. Returns {failures in the window,
# ms left in it}; a counter without an expiry (none should exist) gets one.
_RECORD = """
local n = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {n, left}
"""

# KEYS[1] the counter; ARGV[1] the budget. Returns -1 when below it, else the window's ms left.
_CHECK = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n < tonumber(ARGV[1]) then
  return -1
end
return redis.call('PTTL', KEYS[1])
"""


class Brake:
    """``limit`` failed attempts per address per window, counted in Redis; fails open."""

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        limit: int,
        timeout: float,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._redis = redis
        self._prefix = f"{namespace}:auth-brake:"
        self._timeout = timeout
        self._record = redis.register_script(_RECORD)
        self._check = redis.register_script(_CHECK)
        self._failing = False

    def key(self, address: str | None) -> str:
        return self._prefix + (address or "unknown")

    async def check(self, address: str | None) -> int | None:
        """Seconds until ``address`` may try again when its budget is spent, else None."""
        left = await self._call(self._check, address, self.limit)
        if not isinstance(left, int) or left < 0:
            return None
        return _seconds(left)

    async def record_failure(self, address: str | None) -> int | None:
        """Count one failed attempt from ``address``. When it went beyond the budget (the
        ``limit + 1``-th failure in the window and later), the seconds until the window ends,
        else None. Atomic: concurrent failures from many processes are all counted."""
        result = await self._call(self._record, address, math.ceil(self.window_seconds * 1000))
        if not isinstance(result, list):
            return None
        count, left = (int(x) for x in result)
        if count == self.limit + 1:
            log.warning(
                "auth brake: %s failed to authenticate %d times in %ds; refusing it with 429",
                address,
                self.limit,
                round(self.window_seconds),
            )
        return _seconds(left) if count > self.limit else None

    async def _call(self, script: AsyncScript, address: str | None, arg: int) -> object:
        try:
            async with asyncio.timeout(self._timeout):
                result: object = await script(keys=[self.key(address)], args=[arg])
        except (RedisError, OSError, TimeoutError) as exc:
            metrics.auth_brake_errors.inc()
            if not self._failing:
                self._failing = True
                log.warning(
                    "auth brake: Redis unavailable (%s); failed authentications are not counted "
                    "until it is back, and nobody is refused with 429",
                    type(exc).__name__,
                )
            return None
        if self._failing:
            self._failing = False
            log.info("auth brake: Redis is back; counting failed authentications again")
        return result


def _seconds(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


def _client(settings: Settings) -> Redis:
    timeout = settings.api.brake_timeout_seconds
    pool = ConnectionPool.from_url(
        settings.redis_url.reveal(),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        max_connections=32,
    )
    return Redis(connection_pool=pool)


@asynccontextmanager
async def open_brake(settings: Settings) -> AsyncIterator[Brake]:
    """A brake with a Redis client of its own (connected lazily: starts with Redis down)."""
    redis = _client(settings)
    try:
        yield Brake(
            redis,
            namespace=settings.processors.queue_name,
            limit=settings.api.auth_failures_per_minute,
            timeout=settings.api.brake_timeout_seconds,
        )
    finally:
        await redis.aclose(close_connection_pool=True)
