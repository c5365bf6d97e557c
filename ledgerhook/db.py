"""PostgreSQL connections: the application pool, and URL helpers for the migration runner.

Every service connection acts as the application role (``ledgerhook_app``): when the URL names a
more privileged user (local use with one URL), ``SET ROLE`` runs on connect, so the privileges the
code runs with are the same in development and production. asyncpg's ``RESET ALL`` on release
does not reset the role (``role`` is exempt from ``RESET ALL``), so the role sticks.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import asyncpg

from ledgerhook.settings import Secret, Settings

__all__ = ["APP_ROLE", "OWNER_ROLE", "connect", "create_pool", "database_name", "with_database"]

APP_ROLE = "ledgerhook_app"
OWNER_ROLE = "ledgerhook_owner"


async def _as_app_role(conn: asyncpg.Connection) -> None:
    current = await conn.fetchval("SELECT current_user")
    if current != APP_ROLE:
        await conn.execute(f"SET ROLE {APP_ROLE}")


async def create_pool(
    settings: Settings, *, min_size: int | None = None, max_size: int | None = None
) -> asyncpg.Pool:
    """The application pool. Connections are sized for the machine, not per request."""
    pool = await asyncpg.create_pool(
        settings.database_url.reveal(),
        min_size=settings.db_pool_min if min_size is None else min_size,
        max_size=settings.db_pool_max if max_size is None else max_size,
        init=_as_app_role,
        server_settings={"application_name": "ledgerhook"},
        command_timeout=60,
    )
    assert pool is not None
    return pool


async def connect(url: Secret, *, as_app: bool = True, **kwargs: Any) -> asyncpg.Connection:
    """One connection (CLI commands); as the application role unless ``as_app`` is false."""
    conn: asyncpg.Connection = await asyncpg.connect(url.reveal(), **kwargs)
    if as_app:
        await _as_app_role(conn)
    return conn


def database_name(url: Secret) -> str:
    path = urllib.parse.urlsplit(url.reveal()).path.lstrip("/")
    return urllib.parse.unquote(path) or "postgres"


def with_database(url: Secret, name: str) -> Secret:
    """The same URL pointing at another database (to reach ``postgres`` for CREATE DATABASE)."""
    parts = urllib.parse.urlsplit(url.reveal())
    return Secret(urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(name))))
