"""The RFC 6962 / RFC 9162 (section 2.1) Merkle tree of the transparency log: pure, no I/O.

Hashes are SHA-256 with RFC 6962's domain separation, so that a leaf can never pass for an
interior node (second-preimage attacks)::

    leaf_hash(d)     = SHA-256(0x00 || d)
    node_hash(l, r)  = SHA-256(0x01 || l || r)
    root of 0 leaves = SHA-256(b"")                  (EMPTY_ROOT)

How to use (the sequencer, the proof API, the offline verifier)::

    # Sequencer: keep a Frontier, append a batch of leaf hashes, store what the append completed.
    frontier, completed = Frontier().append([leaf_hash(encode(d)) for d in batch])
    # completed: every complete subtree of level >= 1 finished by this batch, as
    # Node(level, index, hash); leaf hashes themselves are level 0 and live with the leaves.
    frontier.root(), frontier.size          # what the next checkpoint signs

    # Standby sequencer taking over at tree size n: fetch the frontier's subtrees, rebuild.
    ids = frontier_nodes(n)                 # [(level, index), ...]; level 0 = leaf hashes
    frontier = Frontier.from_subtrees(n, {(lvl, idx): h for lvl, idx, h in rows})

    # Proofs: plan, fetch every needed hash in ONE query, assemble.
    plan = inclusion_plan(index, size)      # or consistency_plan(size1, size2), root_plan(size)
    rows = fetch(plan.nodes)                # complete subtrees only: (level, index) -> hash
    proof = assemble(plan, rows)            # exactly RFC 9162 2.1.3.1 PATH / 2.1.4.1 PROOF
    root = assemble(root_plan(size), rows)[0]   # the root at any past size, same way

    # Anyone: verify (raises audit.errors.ProofError with the reason; returns None when good).
    verify_inclusion(leaf_hash, index, size, proof, root)
    verify_consistency(size1, size2, proof, root1, root2)

Node addressing: ``(level, index)`` is the complete subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; ``(0, i)`` is leaf ``i``'s hash. Complete subtrees
never change once written, which is why they are what storage keeps. A proof element is either one
complete subtree or, on the tree's right edge, the RFC hash of several (folded right to left) —
the "ephemeral" node of an incomplete tree, recomputed at assembly and never stored.

Sizes and indexes are bounded to 64 bits like every other tlog implementation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import msgspec

from audit.errors import InvalidRange, MissingNode, ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_SIZE",
    "Frontier",
    "Node",
    "NodeId",
    "ProofPlan",
    "assemble",
    "consistency_plan",
    "frontier_nodes",
    "inclusion_plan",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion",
    "root_plan",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_SIZE = 2**64 - 1
"""Largest tree size (and leaf index + 1) accepted anywhere: uint64, as in C2SP and Go's tlog."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class NodeId(NamedTuple):
    """A complete subtree: ``level`` 0 is a leaf; covers leaves ``[start, end)``.

    A plain tuple underneath, so ``{(level, index): hash}`` mappings built from database rows
    are looked up with it directly.
    """

    level: int
    index: int  # type: ignore[assignment]  # shadows tuple.index(), unused on node ids

    @property
    def start(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


class Node(NamedTuple):
    """A complete subtree with its hash, as :meth:`Frontier.append` reports it for storage."""

    level: int
    index: int  # type: ignore[assignment]  # shadows tuple.index(), unused on nodes
    hash: bytes


def _require_hash(value: object, what: str) -> bytes:
    """A hash handed in by trusted code (the sequencer, storage): a wrong one is a bug."""
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes")
    return value


def _check_size(size: int, what: str = "tree size") -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        raise InvalidRange(f"{what} {size!r} is not an integer in [0, 2**64)")


def _cover(start: int, end: int) -> tuple[NodeId, ...]:
    """The maximal complete subtrees covering ``[start, end)``, left to right (largest first).

    ``start`` is always aligned here (0, or the start of an RFC right child), so the binary
    decomposition of ``end - start`` read from its high bit gives aligned subtrees; their RFC
    hash is the right-to-left fold of theirs, because RFC 6962 splits every range at the
    largest power of two below its size, which is exactly this decomposition's first part.
    """
    nodes: list[NodeId] = []
    width = end - start
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            nodes.append(NodeId(level, start >> level))
            start += 1 << level
    return tuple(nodes)


def _split(n: int) -> int:
    """RFC 6962's k: the largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def frontier_nodes(size: int) -> tuple[NodeId, ...]:
    """The complete subtrees whose hashes make up the frontier of a tree of ``size`` leaves."""
    _check_size(size)
    return _cover(0, size)


def _fold(hashes: Sequence[bytes]) -> bytes:
    """RFC hash of adjacent maximal subtrees, given left to right: fold from the right."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


class Frontier(msgspec.Struct, frozen=True, kw_only=True):
    """The compact range [0, size): one hash per set bit of ``size``, largest subtree first.

    Everything an append-only tree needs to keep appending and to compute its root, in
    O(log size) hashes; ``append`` never changes ``self`` (it returns the next frontier), so a
    sequencer commits the new frontier and the completed nodes in one transaction, or neither.
    """

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        _check_size(self.size)
        if len(self.hashes) != self.size.bit_count():
            raise ValueError(
                f"a frontier of size {self.size} has {self.size.bit_count()} hashes, "
                f"not {len(self.hashes)}"
            )
        for i, h in enumerate(self.hashes):
            _require_hash(h, f"frontier hash {i}")

    @classmethod
    def from_subtrees(cls, size: int, hashes: Mapping[tuple[int, int], bytes]) -> Frontier:
        """Rebuild from stored complete-subtree hashes (keys as :func:`frontier_nodes`)."""
        ids = frontier_nodes(size)
        missing = [n for n in ids if n not in hashes]
        if missing:
            raise MissingNode(f"frontier of size {size} lacks subtree(s) {_ids(missing)}")
        return cls(size=size, hashes=tuple(hashes[n] for n in ids))

    def append(self, leaf_hashes: Iterable[bytes]) -> tuple[Frontier, tuple[Node, ...]]:
        """Append leaves; return the new frontier and every subtree (level >= 1) completed.

        Each completed node is reported once, at the append that completes it, in completion
        order; together with the leaf hashes they are all the hashes any proof will ever need.
        """
        stack = list(self.hashes)
        size = self.size
        completed: list[Node] = []
        for i, leaf in enumerate(leaf_hashes):
            h = _require_hash(leaf, f"leaf hash {i} of the batch")
            level = 0
            # Each trailing 1 bit of size is a subtree of that level waiting for a right sibling.
            while size >> level & 1:
                h = node_hash(stack.pop(), h)
                level += 1
                completed.append(Node(level, ((size + 1) >> level) - 1, h))
            stack.append(h)
            size += 1
        return Frontier(size=size, hashes=tuple(stack)), tuple(completed)

    def root(self) -> bytes:
        return _fold(self.hashes)

    def nodes(self) -> tuple[Node, ...]:
        return tuple(
            Node(n.level, n.index, h)
            for n, h in zip(_cover(0, self.size), self.hashes, strict=True)
        )


class ProofPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Which stored subtrees a proof (or root) needs, and how to combine them.

    ``elements[i]`` is the i-th hash of the proof: one complete subtree, or several adjacent
    ones (left to right) whose RFC hash is their right-to-left fold; an empty element is the
    empty tree's root (only ``root_plan(0)`` has one).
    """

    elements: tuple[tuple[NodeId, ...], ...]

    @property
    def nodes(self) -> tuple[NodeId, ...]:
        """Every distinct subtree to fetch, sorted: the one query's key list."""
        return tuple(sorted({n for element in self.elements for n in element}))


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """Plan of RFC 9162 2.1.3.1 PATH(index, D[size]), leaf's sibling first, root's child last."""
    _check_size(size)
    _check_size(index, "leaf index")
    if index >= size:
        raise InvalidRange(f"leaf index {index} is not in a tree of size {size}")
    elements: list[tuple[NodeId, ...]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            elements.append(_cover(lo + k, hi))
            hi = lo + k
        else:
            elements.append(_cover(lo, lo + k))
            lo += k
    elements.reverse()  # the recursion walks down from the root; PATH lists bottom-up
    return ProofPlan(elements=tuple(elements))


def consistency_plan(size1: int, size2: int) -> ProofPlan:
    """Plan of RFC 9162 2.1.4.1 PROOF(size1, D[size2]).

    Empty when there is nothing to prove: ``size1 == size2`` (same tree) or ``size1 == 0`` (the
    empty tree is a prefix of every tree); the RFC defines proofs only for 0 < size1 < size2.
    """
    _check_size(size1)
    _check_size(size2)
    if size1 > size2:
        raise InvalidRange(f"no consistency proof from size {size1} down to {size2}")
    if size1 in (0, size2):
        return ProofPlan(elements=())
    elements: list[tuple[NodeId, ...]] = []
    m, lo, hi, whole = size1, 0, size2, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            elements.append(_cover(lo + k, hi))
            hi = lo + k
        else:
            elements.append(_cover(lo, lo + k))
            m -= k
            lo += k
            whole = False  # SUBPROOF's b: the old root itself is known to the verifier
    if not whole:
        elements.append(_cover(lo, hi))
    elements.reverse()
    return ProofPlan(elements=tuple(elements))


def root_plan(size: int) -> ProofPlan:
    """One element: the tree's root (the fold of its frontier); EMPTY_ROOT for size 0."""
    return ProofPlan(elements=(frontier_nodes(size),))


def _ids(ids: Iterable[NodeId]) -> str:
    return ", ".join(f"({n.level}, {n.index})" for n in ids)


def assemble(plan: ProofPlan, hashes: Mapping[tuple[int, int], bytes]) -> list[bytes]:
    """The proof's hashes from the fetched subtree hashes (extra keys in ``hashes`` are fine)."""
    missing = [n for n in plan.nodes if n not in hashes]
    if missing:
        raise MissingNode(f"no stored hash for subtree(s) {_ids(missing)}")
    return [
        _fold([_require_hash(hashes[n], f"stored hash of {_ids([n])}") for n in element])
        for element in plan.elements
    ]


def _proof_hash(value: object, what: str) -> bytes:
    """A hash from outside (a proof, a checkpoint): a wrong one is a refusal, not a bug."""
    if not isinstance(value, bytes):
        raise ProofError(f"{what} is not bytes")
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")
    return value


def _proof_size(size: object, what: str) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        raise ProofError(f"{what} {size!r} is not an integer in [0, 2**64)")
    return size


def _shift_while_even(fn: int, sn: int) -> tuple[int, int]:
    while fn and not fn & 1:
        fn >>= 1
        sn >>= 1
    return fn, sn


def root_from_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from leaf ``index`` (RFC 9162 2.1.3.2, steps 1-4).

    Refuses (ProofError) before hashing anything that cannot be a proof for (index, size).
    """
    _proof_size(index, "leaf index")
    _proof_size(size, "tree size")
    if index >= size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    r = _proof_hash(leaf_hash, "leaf hash")
    for i, p in enumerate(proof):
        _proof_hash(p, f"proof[{i}]")
    expected = len(inclusion_plan(index, size).elements)
    if len(proof) != expected:
        raise ProofError(
            f"inclusion proof has {len(proof)} hashes; leaf {index} of a tree of size {size} "
            f"needs {expected}"
        )
    fn, sn = index, size - 1
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                fn, sn = _shift_while_even(fn, sn)
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 2.1.3.2: leaf ``index`` of the tree (``size``, ``root``) has ``leaf_hash``."""
    expected_root = _proof_hash(root, "root hash")
    got = root_from_inclusion(leaf_hash, index, size, proof)
    if got != expected_root:
        raise ProofError(
            f"inclusion proof for leaf {index} leads to root {got.hex()}, "
            f"not the tree's root {expected_root.hex()} at size {size}"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """RFC 9162 2.1.4.2: the tree (size2, root2) extends the tree (size1, root1), append-only.

    Beyond the RFC's 0 < size1 < size2: equal sizes need an empty proof and equal roots (two
    roots for one size is a fork); size1 == 0 needs an empty proof and root1 == EMPTY_ROOT;
    size1 > size2 is refused as a rolled-back (or forked) log.
    """
    _proof_size(size1, "first tree size")
    _proof_size(size2, "second tree size")
    r1 = _proof_hash(root1, "first root hash")
    r2 = _proof_hash(root2, "second root hash")
    for i, p in enumerate(proof):
        _proof_hash(p, f"proof[{i}]")
    if size1 > size2:
        raise ProofError(
            f"tree size went down from {size1} to {size2}: an append-only log never shrinks "
            "(rolled back, or a fork)"
        )
    if size1 == size2:
        if proof:
            raise ProofError(f"trees of equal size {size1} need an empty proof, got {len(proof)}")
        if r1 != r2:
            raise ProofError(
                f"two different roots for tree size {size1}: {r1.hex()} and {r2.hex()} (a fork)"
            )
        return
    if size1 == 0:
        if proof:
            raise ProofError(f"the empty tree needs an empty proof, got {len(proof)} hashes")
        if r1 != EMPTY_ROOT:
            raise ProofError(f"a tree of size 0 has root {EMPTY_ROOT.hex()}, not {r1.hex()}")
        return
    expected = len(consistency_plan(size1, size2).elements)
    if len(proof) != expected:
        raise ProofError(
            f"consistency proof has {len(proof)} hashes; sizes {size1} -> {size2} need {expected}"
        )
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # the old tree is one complete subtree: the verifier has it
        path.insert(0, r1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                fn, sn = _shift_while_even(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if fr != r1:
        raise ProofError(
            f"consistency proof leads to {fr.hex()} for size {size1}, not its root {r1.hex()}"
        )
    if sr != r2:
        raise ProofError(
            f"consistency proof leads to {sr.hex()} for size {size2}, not its root {r2.hex()}"
        )
