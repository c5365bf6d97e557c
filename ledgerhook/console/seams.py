"""Where work built in parallel plugs into the console: every such place is in this module.

Each function below is the console's only contact with something another issue is replacing.
When that work is merged, change the body here (and nothing else in the console):

- **Sign-in brake** (issue 17): :func:`sign_in_wait` and :func:`sign_in_failed` use the API's
  shared brake (:mod:`audit.brake`, in Redis: API and console failures share one budget per
  client address, across all API processes; valid tokens are never braked).
- **Client address and TLS behind a trusted proxy** (issue 17): :func:`client_address` is the
  API's (:func:`audit.auth.request_address`); :func:`request_is_tls` reads the request's scheme
  (``LEDGERHOOK_CONSOLE__SECURE_COOKIE=always`` behind a TLS-terminating proxy).
- **Access log**: :func:`record_access` writes the same ``audit.access_log`` row the API's guard
  writes.
- **Proof of inclusion and checkpoint** (issue 13, the Merkle tree): :func:`inclusion_proof`
  (the delivery page's ``proof`` block, with the bundle download), :func:`last_checkpoint` and
  :func:`tree_status` (the health page).
- **Links between providers** (issue 14): :func:`provider_links` reads the provider-migration
  link of a customer or subscription (:func:`processors.coexist.queries.coexistence`): the other
  side, and which side is authoritative now (``object.html``, block ``links``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from litestar.connection import ASGIConnection

from audit.auth import _record, request_address
from audit.brake import Brake
from audit.checkpoints import latest_checkpoint
from audit.dbtypes import Conn
from audit.errors import InvalidRange
from audit.proofs import build_bundle
from audit.tokens import Principal, Role
from ledgerhook.log_gauges import read_state
from ledgerhook.settings import Settings
from processors.coexist.model import Ref
from processors.coexist.queries import coexistence

__all__ = [
    "CheckpointView",
    "ProofView",
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
    return request_address(connection)


def request_is_tls(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return connection.url.scheme in ("https", "wss")


async def sign_in_wait(
    connection: ASGIConnection[Any, Any, Any, Any], settings: Settings, address: str | None
) -> int | None:
    """Seconds the address must wait before trying again, or None when it may try now."""
    del settings
    brake: Brake = connection.app.state.brake
    return await brake.check(address)


async def sign_in_failed(
    connection: ASGIConnection[Any, Any, Any, Any], settings: Settings, address: str | None
) -> None:
    del settings
    brake: Brake = connection.app.state.brake
    await brake.record_failure(address)


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


class ProofView(msgspec.Struct, frozen=True, kw_only=True):
    rows: Rows
    # A signed checkpoint covers the leaf: the bundle can be downloaded and checked offline.
    bundle: bool


async def inclusion_proof(
    conn: Conn, delivery_id: int, *, origin: str, public_key: str
) -> ProofView:
    """Where the delivery is in the tree and what proves it (the bundle is downloadable)."""
    leaf = await conn.fetchrow(
        "SELECT leaf_index, leaf_hash, integrated_at FROM audit.leaves WHERE delivery_id = $1",
        delivery_id,
    )
    if leaf is None:
        waiting = [("Leaf", "not integrated into the tree yet (within the maximum merge delay)")]
        return ProofView(rows=waiting, bundle=False)
    rows: Rows = [
        ("Leaf index", str(leaf["leaf_index"])),
        ("Leaf hash", bytes(leaf["leaf_hash"]).hex()),
        ("Integrated", leaf["integrated_at"].astimezone(UTC).isoformat()),
    ]
    try:
        bundle = await build_bundle(conn, delivery_id, origin=origin, public_key=public_key)
    except InvalidRange:
        unsigned = ("Checkpoint", "not in a signed checkpoint yet (signed every minute)")
        return ProofView(rows=[*rows, unsigned], bundle=False)
    return ProofView(
        bundle=True,
        rows=[
            *rows,
            ("Signed tree size", str(bundle["tree_size"])),
            ("Inclusion proof", f"{len(bundle['inclusion'])} hashes (in the bundle)"),
            ("Checkpoint", bundle["checkpoint"]),
            ("Public key", public_key),
            (
                "Verify offline",
                f"ledgerhook verify-proof delivery-{delivery_id}.proof.json "
                f"--public-key '{public_key}'",
            ),
        ],
    )


async def last_checkpoint(conn: Conn) -> CheckpointView | None:
    cp = await latest_checkpoint(conn)
    if cp is None:
        return None
    return CheckpointView(created_at=cp.created_at, size=cp.tree_size, key_id=cp.key_id.hex())


async def tree_status(conn: Conn) -> Rows | None:
    """The transparency log's state, as /metrics reports it (read from PostgreSQL)."""
    s = await read_state(conn)
    verified = (
        "never"
        if s.verification_ok is None
        else ("passed" if s.verification_ok else "FAILED")
        + (
            ""
            if s.verification_at is None
            else f" at {datetime.fromtimestamp(s.verification_at, UTC).isoformat()}"
        )
    )
    return [
        ("Tree size", str(s.tree_size)),
        ("Waiting for the tree", f"{s.pending} (oldest {s.oldest_pending_seconds:.1f}s)"),
        ("Sequencer leading", "yes" if s.sequencer_leaders else "NO: nothing is integrated"),
        ("Last verification", verified),
    ]


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
    """The object linked to this one under another provider (a migration in progress), with who
    bills now; none for other kinds or unlinked objects."""
    neutral = {"customers": "customer", "subscriptions": "subscription"}.get(kind)
    if neutral is None:
        return []
    here = Ref(provider=provider, account=account, id=object_id)
    view = await coexistence(conn, neutral, here, int(datetime.now(UTC).timestamp()))
    if view is None:
        return []
    other = view.target if view.source == here else view.source
    side = "source" if other == view.source else "target"
    bills = "authoritative now" if view.authoritative == other else "not authoritative now"
    return [
        ProviderLink(
            kind=kind,
            provider=other.provider,
            account=other.account,
            object_id=other.id,
            reason=f"{side} of billing account {view.billing_account}, cohort {view.cohort}; "
            f"{bills} (authority: {view.authority.side})",
        )
    ]
