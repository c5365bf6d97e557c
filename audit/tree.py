"""The Merkle tree in PostgreSQL: leaves, stored subtrees, and roots and proofs read from them.

Storage (migration 0020): ``audit.leaves`` holds every leaf hash (level 0) and
``audit.tree_nodes`` the complete subtrees at levels 4, 8, 12, ... (:data:`STRIDE`). Those are
written once, by the sequencer, in the transaction that integrates their last leaf, and never
change. Any other complete subtree is at most ``2**(STRIDE-1)`` = 8 stored hashes away (the
subtree at level ``b + k`` folds ``2**k`` hashes of level ``b``), so a root or a proof needs one
indexed read of at most a few hundred hashes however large the tree is, while the table holds
one row per 16 leaves instead of one per leaf. This is the idea of C2SP tlog-tiles (tiles of
hashes every few levels) with rows instead of files.

Everything here takes a connection: the caller owns the transaction (REPEATABLE READ when several
reads must agree, as :mod:`audit.verify` does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from audit.dbtypes import Conn
from audit.errors import InvalidRange, MissingNode, NotFound
from audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    Node,
    NodeId,
    assemble,
    consistency_plan,
    frontier_nodes,
    inclusion_plan,
    node_hash,
    root_plan,
)

__all__ = [
    "STRIDE",
    "InclusionProof",
    "consistency_proof",
    "inclusion_proof",
    "load_frontier",
    "root_at",
    "storable",
    "subtree_hashes",
    "tree_size",
]

STRIDE = 4


class InclusionProof(msgspec.Struct, frozen=True, kw_only=True):
    delivery_id: int
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    hashes: list[bytes]


def storable(completed: Iterable[Node]) -> list[Node]:
    """The nodes of an append that are stored: levels that are multiples of :data:`STRIDE`."""
    return [n for n in completed if n.level % STRIDE == 0]


def _stored_for(ids: Iterable[tuple[int, int]]) -> tuple[set[int], set[tuple[int, int]]]:
    """Leaf indexes and stored (level, index) nodes from which ``ids`` are computed."""
    leaves: set[int] = set()
    nodes: set[tuple[int, int]] = set()
    for level, index in ids:
        base = level - level % STRIDE
        span = 1 << (level - base)
        for j in range(index * span, (index + 1) * span):
            if base == 0:
                leaves.add(j)
            else:
                nodes.add((base, j))
    return leaves, nodes


async def subtree_hashes(
    conn: Conn, ids: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """The hash of every complete subtree in ``ids``; raises MissingNode if one is not stored."""
    wanted = set(ids)
    leaf_ix, node_ix = _stored_for(wanted)
    have: dict[tuple[int, int], bytes] = {}
    if leaf_ix:
        rows = await conn.fetch(
            "SELECT leaf_index, leaf_hash FROM audit.leaves WHERE leaf_index = ANY($1::bigint[])",
            sorted(leaf_ix),
        )
        have.update({(0, r["leaf_index"]): bytes(r["leaf_hash"]) for r in rows})
    if node_ix:
        levels, indexes = zip(*sorted(node_ix), strict=True)
        # One primary-key probe per wanted node, whatever plan the connection cached (a join
        # planned while the table was small reads all of it; see audit migration 0021).
        rows = await conn.fetch(
            "SELECT w.level, w.idx, (SELECT n.hash FROM audit.tree_nodes n "
            "WHERE n.level = w.level AND n.idx = w.idx) AS hash "
            "FROM unnest($1::smallint[], $2::bigint[]) AS w(level, idx)",
            list(levels),
            list(indexes),
        )
        have.update({(r["level"], r["idx"]): bytes(r["hash"]) for r in rows if r["hash"]})
    out: dict[tuple[int, int], bytes] = {}
    for level, index in wanted:
        base = level - level % STRIDE
        span = 1 << (level - base)
        try:
            layer = [have[(base, j)] for j in range(index * span, (index + 1) * span)]
        except KeyError:
            raise MissingNode(
                f"subtree ({level}, {index}) cannot be computed: a stored hash is missing"
            ) from None
        while len(layer) > 1:
            layer = [node_hash(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
        out[(level, index)] = layer[0]
    return out


async def tree_size(conn: Conn) -> int:
    """Leaves integrated so far (leaf indexes are gap-free from 0)."""
    size: int = await conn.fetchval("SELECT coalesce(max(leaf_index) + 1, 0) FROM audit.leaves")
    return size


async def load_frontier(conn: Conn, size: int) -> Frontier:
    """The frontier of the tree of ``size`` leaves, from storage (a new sequencer's start)."""
    ids: Sequence[NodeId] = frontier_nodes(size)
    hashes = await subtree_hashes(conn, [(i.level, i.index) for i in ids])
    return Frontier.from_subtrees(size, hashes)


async def _check_size(conn: Conn, size: int) -> None:
    current = await tree_size(conn)
    if size < 0 or size > current:
        raise InvalidRange(f"tree size {size} is outside the tree (0..{current})")


async def root_at(conn: Conn, size: int) -> bytes:
    """The root hash of the first ``size`` leaves."""
    if size == 0:
        return EMPTY_ROOT
    await _check_size(conn, size)
    plan = root_plan(size)
    (root,) = assemble(plan, await subtree_hashes(conn, plan.nodes))
    return root


async def inclusion_proof(conn: Conn, delivery_id: int, size: int) -> InclusionProof:
    """RFC 9162 inclusion proof of a delivery's leaf in the tree of ``size`` leaves."""
    row = await conn.fetchrow(
        "SELECT leaf_index, leaf_hash FROM audit.leaves WHERE delivery_id = $1", delivery_id
    )
    if row is None:
        raise NotFound(f"delivery {delivery_id} is not in the tree yet")
    index: int = row["leaf_index"]
    await _check_size(conn, size)
    if index >= size:
        raise InvalidRange(
            f"delivery {delivery_id} is leaf {index}, not in a tree of {size} leaves"
        )
    plan = inclusion_plan(index, size)
    return InclusionProof(
        delivery_id=delivery_id,
        leaf_index=index,
        tree_size=size,
        leaf_hash=bytes(row["leaf_hash"]),
        hashes=assemble(plan, await subtree_hashes(conn, plan.nodes)),
    )


async def consistency_proof(conn: Conn, size1: int, size2: int) -> list[bytes]:
    """RFC 9162 consistency proof that the tree of ``size1`` leaves is a prefix of ``size2``."""
    if not 0 <= size1 <= size2:
        raise InvalidRange(f"consistency needs 0 <= first size <= second size ({size1}, {size2})")
    await _check_size(conn, size2)
    plan = consistency_plan(size1, size2)
    return assemble(plan, await subtree_hashes(conn, plan.nodes))
