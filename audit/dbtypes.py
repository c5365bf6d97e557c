"""The connection type repository functions accept: a plain connection or a pool's proxy.

Repository functions take a connection (the caller owns the transaction); callers hold either an
``asyncpg.Connection`` (CLI) or the proxy ``pool.acquire()`` yields (HTTP handlers, workers).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

__all__ = ["Conn"]

Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
