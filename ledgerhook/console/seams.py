"""Where work built in parallel plugs into the console: every such place is in this module.

Each function below is the console's only contact with something another issue is replacing.
When that work is merged, change the body here (and nothing else in the console):

- **Sign-in brake** (issue 17, a shared ``audit/brake.py`` with ``check(address)`` /
  ``record_failure(address)``): :func:`sign_in_wait` and :func:`sign_in_failed` use the API's
  per-process :class:`audit.auth.FailureLimiter` today (the same instance the bearer guard uses,
  so API and console failures share one budget per address).
- **Client address and TLS behind a trusted proxy** (issue 17): :func:`client_address`,
  :func:`request_is_tls` read the socket today (``ledgerhook serve`` runs uvicorn without proxy
  headers); ``LEDGERHOOK_CONSOLE__SECURE_COOKIE=always`` forces Secure cookies meanwhile.
- **Access log** (issue 17 may reshape ``audit.auth``): :func:`record_access` writes the same
  ``audit.access_log`` row the API's guard writes.
- **Proof of inclusion and checkpoint** (issue 13, the Merkle tree): :func:`inclusion_proof`
  returns None, so the delivery page shows nothing in its marked place (``delivery.html``,
  block ``proof``); :func:`last_checkpoint` reads today's HMAC checkpoints; :func:`tree_status`
  (integration lag, tree size on the health page) returns None.
- **Links between providers** (issue 14): :func:`provider_links` returns no links, so the object
  page shows nothing in its marked place (``object.html``, block ``links``).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from litestar.connection import ASGIConnection

from audit.auth import _limiter, _record
from audit.checkpoints import latest_checkpoint
from audit.dbtypes import Conn
from audit.tokens import Principal, Role
from ledgerhook.settings import Settings

__all__ = [
    "CheckpointView",
    "ProviderLink",
    "Rows",
    "client_address",
    "inclusion_proof",
    "last_checkpoint",
    "provider_links",
    "record_access",
    "request_is_tls",
    "sign_in_failed",
    "sign_in_wait",
    "tree_status",
]


# ---------------------------------------------------------------- issue 17: brake, address, TLS


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    return connection.client.host if connection.client else None


def request_is_tls(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return connection.url.scheme in ("https", "wss")


async def sign_in_wait(
    connection: ASGIConnection[Any, Any, Any, Any], settings: Settings, address: str | None
) -> int | None:
    """Seconds the address must wait before trying again, or None when it may try now."""
    return _limiter(connection, settings).retry_after(address or "", time.monotonic())


async def sign_in_failed(
    connection: ASGIConnection[Any, Any, Any, Any], settings: Settings, address: str | None
) -> None:
    _limiter(connection, settings).fail(address or "", time.monotonic())


async def record_access(
    connection: ASGIConnection[Any, Any, Any, Any],
    *,
    principal: Principal | None,
    decision: str,
    required: Role,
) -> None:
    """One ``audit.access_log`` row (who, what, when, allowed or not), as the API writes."""
    pool: asyncpg.Pool = connection.app.state.pool
    await _record(
        pool,
        connection=connection,
        principal=principal,
        decision=decision,
        required=required,
        address=client_address(connection),
    )


# ---------------------------------------------------------------- issue 13: proofs, checkpoints


class CheckpointView(msgspec.Struct, frozen=True, kw_only=True):
    """What the health page says about the newest checkpoint."""

    created_at: datetime
    # Deliveries the checkpoint covers (the log's size when it was signed).
    size: int
    key_id: str


# What the delivery page and the health page show for the tree: (label, value) rows, as text.
Rows = list[tuple[str, str]]


async def inclusion_proof(conn: Conn, delivery_id: int) -> Rows | None:
    """The delivery's proof of inclusion and the checkpoint it verifies against: none yet."""
    del conn, delivery_id
    return None


async def last_checkpoint(conn: Conn) -> CheckpointView | None:
    cp = await latest_checkpoint(conn)  # type: ignore[arg-type]
    if cp is None:
        return None
    return CheckpointView(created_at=cp.created_at, size=cp.row_count, key_id=cp.key_id)


async def tree_status(conn: Conn) -> Rows | None:
    """Integration lag and tree size: none yet."""
    del conn
    return None


# ---------------------------------------------------------------- issue 14: links between providers


class ProviderLink(msgspec.Struct, frozen=True, kw_only=True):
    """The same customer or subscription under another provider (a migration in progress)."""

    kind: str
    provider: str
    account: str
    object_id: str
    reason: str


async def provider_links(
    conn: Conn, kind: str, provider: str, account: str, object_id: str
) -> list[ProviderLink]:
    """Objects linked to this one under another provider: none yet."""
    del conn, kind, provider, account, object_id
    return []
