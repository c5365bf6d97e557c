"""HTTP routes of the transparency log: proofs, checkpoints, verification, the public key.

Everything an auditor needs to check the log from outside: the log's public key (no token: it
is public by nature), signed checkpoints (the latest also as the bare note text tlog tools read),
a delivery's proof bundle (:mod:`audit.proofs`), a consistency proof between two tree sizes, and
an on-demand verification. Signing a checkpoint on demand is ``admin``; the rest is ``auditor``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from audit import permissions
from audit.auth import require_role
from audit.checkpoints import (
    TreeCheckpoint,
    create_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    log_origin,
    public_key,
)
from audit.errors import InvalidQuery, NotFound, NotVerified
from audit.proofs import build_bundle
from audit.tree import consistency_proof, root_at, tree_size
from audit.verify import verify_tree
from ledgerhook.http_errors import documented
from ledgerhook.settings import Settings

__all__ = ["routes"]

_READ = documented(400, 401, 403, 429, 503)
_READ_ONE = documented(400, 401, 403, 404, 429, 503)


class CheckpointOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    created_at: datetime
    origin: str
    tree_size: int
    root_hash: str
    key_name: str
    key_id: str
    note: str

    @classmethod
    def of(cls, cp: TreeCheckpoint) -> CheckpointOut:
        return cls(
            id=cp.id,
            created_at=cp.created_at,
            origin=cp.origin,
            tree_size=cp.tree_size,
            root_hash=cp.root_hash.hex(),
            key_name=cp.key_name,
            key_id=cp.key_id.hex(),
            note=cp.note,
        )


class TreeOut(msgspec.Struct, frozen=True, kw_only=True):
    origin: str
    public_key: str
    tree_size: int
    root_hash: str
    latest_checkpoint: CheckpointOut | None


class ConsistencyOut(msgspec.Struct, frozen=True, kw_only=True):
    first: int
    second: int
    consistency: list[str]


class VerifyOut(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    tree_size: int
    root_hash: str
    from_size: int
    leaves_checked: int
    checkpoints_checked: int
    pending: int
    first_bad: str | None
    reason: str | None
    summary: str


@get(
    "/public-key",
    media_type="text/plain",
    tags=["audit"],
    summary="Get the log's public key",
    responses=documented(503),
)
async def log_public_key(request: Request[Any, Any, Any]) -> str:
    """The log's public key as a note verifier key (``<name>+<key id>+<key>``): checks every
    checkpoint, and so every proof. Public: no token needed."""
    return public_key(request.app.state.signer) + "\n"


@get("/tree", summary="Get the tree's size, root and latest checkpoint", responses=_READ)
async def tree(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
) -> TreeOut:
    """The tree as it is now (size and root, not signed yet) and the latest signed checkpoint."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        size = await tree_size(conn)
        root = await root_at(conn, size)
        cp = await latest_checkpoint(conn)
    return TreeOut(
        origin=log_origin(settings),
        public_key=public_key(request.app.state.signer),
        tree_size=size,
        root_hash=root.hex(),
        latest_checkpoint=None if cp is None else CheckpointOut.of(cp),
    )


@get("/checkpoints", summary="List signed checkpoints", responses=_READ)
async def checkpoints(
    pool: NamedDependency[asyncpg.Pool],
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> list[CheckpointOut]:
    """Signed checkpoints, newest first: each ``note`` is the exact text to keep and verify."""
    async with pool.acquire() as conn:
        return [CheckpointOut.of(cp) for cp in await list_checkpoints(conn, limit=limit)]


@get(
    "/checkpoints/latest",
    media_type="text/plain",
    summary="Get the latest signed checkpoint as a note",
    responses=_READ_ONE,
)
async def checkpoint_latest(pool: NamedDependency[asyncpg.Pool]) -> str:
    """The latest signed checkpoint as its note text (C2SP tlog-checkpoint, signed note)."""
    async with pool.acquire() as conn:
        cp = await latest_checkpoint(conn)
    if cp is None:
        raise NotFound("no checkpoint has been signed yet")
    return cp.note


@post(
    "/checkpoints",
    guards=[require_role(permissions.CHECKPOINT)],
    status_code=201,
    summary="Sign a checkpoint now",
    responses=documented(
        400,
        401,
        403,
        409,
        429,
        503,
        s409="The log does not verify: nothing was signed (`error`: conflict).",
    ),
)
async def checkpoint_now(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
) -> CheckpointOut:
    """Verify the leaves added since the last checkpoint and sign the tree now (admin). 409 when
    the log does not verify (nothing is signed; see ``GET /audit/verify``)."""
    async with pool.acquire() as conn:
        cp = await create_checkpoint(
            conn, request.app.state.signer, log_origin(settings), source="api"
        )
    if cp is None:
        raise NotVerified("the log does not verify: nothing was signed (see GET /audit/verify)")
    return CheckpointOut.of(cp)


@get(
    "/deliveries/{delivery_id:int}/proof",
    summary="Get a delivery's proof of inclusion",
    responses=documented(
        400,
        401,
        403,
        404,
        429,
        503,
        s400="No checkpoint of that tree size was signed, or the delivery is not in it yet.",
    ),
)
async def delivery_proof(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    delivery_id: FromPath[int],
    tree_size: Annotated[int | None, QueryParameter(ge=1)] = None,
) -> dict[str, Any]:
    """A proof bundle: the delivery's leaf fields, its inclusion proof in a signed checkpoint
    (``tree_size``, default the latest) and that checkpoint; check it offline with
    ``ledgerhook verify-proof FILE --public-key KEY``."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        return await build_bundle(
            conn,
            delivery_id,
            origin=log_origin(settings),
            public_key=public_key(request.app.state.signer),
            tree_size=tree_size,
        )


@get("/tree/consistency", summary="Get a consistency proof between two tree sizes", responses=_READ)
async def tree_consistency(
    pool: NamedDependency[asyncpg.Pool],
    first: Annotated[int, QueryParameter(ge=0)],
    second: Annotated[int, QueryParameter(ge=0)],
) -> ConsistencyOut:
    """RFC 9162 consistency proof that the tree of ``first`` leaves is a prefix of ``second``."""
    if first > second:
        raise InvalidQuery("first must not be larger than second")
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        hashes = await consistency_proof(conn, first, second)
    return ConsistencyOut(first=first, second=second, consistency=[h.hex() for h in hashes])


@get("/verify", summary="Verify the audit log", responses=_READ)
async def verify(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    from_checkpoint: Annotated[int | None, QueryParameter(ge=1)] = None,
    bodies: FromQuery[bool] = True,
) -> VerifyOut:
    """Verify the log (from a signed checkpoint if given): leaves against deliveries, the tree
    against every checkpoint; reports the first problem. Recorded like any verification."""
    async with pool.acquire() as conn:
        result = await verify_tree(
            conn,
            verifiers=[request.app.state.signer.verifier],
            origin=log_origin(settings),
            from_checkpoint=from_checkpoint,
            bodies=bodies,
            record="api",
        )
    return VerifyOut(
        ok=result.ok,
        tree_size=result.tree_size,
        root_hash=result.root.hex(),
        from_size=result.from_size,
        leaves_checked=result.leaves_checked,
        checkpoints_checked=result.checkpoints_checked,
        pending=result.pending,
        first_bad=result.first_bad,
        reason=result.reason,
        summary=result.describe(),
    )


routes: list[Any] = [
    Router(path="/audit", route_handlers=[log_public_key]),
    Router(
        path="/audit",
        route_handlers=[
            tree,
            checkpoints,
            checkpoint_latest,
            checkpoint_now,
            delivery_proof,
            tree_consistency,
            verify,
        ],
        guards=[require_role(permissions.READ)],
        tags=["audit"],
        security=[{"bearer": []}],
    ),
]
