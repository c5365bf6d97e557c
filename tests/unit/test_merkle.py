"""The RFC 6962 / 9162 Merkle tree (audit.merkle): vectors, tables, properties, no I/O.

Checked three ways: the transparency-dev/merkle test vectors, the RFC's recursive definitions
transcribed in tests/unit/rfc6962_reference.py, and two implementations nobody here wrote:
tlog-scales (RFC 9162 2.1.3.2 / 2.1.4.2 verification, literally) and pymerkle (RFC 9162 tree
hash and inclusion paths; its consistency proofs are its own format, so only its roots and
inclusion proofs are compared).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree
from pymerkle import verify_inclusion as pymerkle_verify_inclusion
from pymerkle.proof import InclusionProof as PymerkleInclusionProof
from tlog_scales.tlog import ConsistencyProof as TlogConsistencyProof
from tlog_scales.tlog import ConsistencyProofInvalid, InclusionProofInvalid
from tlog_scales.tlog import InclusionProof as TlogInclusionProof

from audit.errors import InvalidRange, MissingNode, ProofError
from audit.merkle import (
    EMPTY_ROOT,
    MAX_SIZE,
    Frontier,
    Node,
    NodeId,
    ProofPlan,
    assemble,
    consistency_plan,
    frontier_nodes,
    inclusion_plan,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    root_plan,
    verify_consistency,
    verify_inclusion,
)
from tests.unit import rfc6962_reference as ref

# --- Test vectors -------------------------------------------------------------------------------
# Source: github.com/transparency-dev/merkle, proof/verify_test.go (the RFC 6962 reference tree
# inherited from Certificate Transparency's C++ tests): `leaves`, `roots` (root at size i + 1),
# `inclusionProofs` and `consistencyProofs`. Their inclusion vectors number leaves from 1; here
# they are converted to 0-based leaf indexes.


def _named(rows: list[tuple[object, ...]]) -> list[object]:
    """Table rows as pytest params named after their last column (the expected reason)."""
    return [pytest.param(*row, id=str(row[-1] or "accepted")) for row in rows]


def _h(hexes: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes.split()]


LEAVES = _h("00 10 2021 3031 40414243 5051525354555657 606162636465666768696a6b6c6d6e6f")
LEAVES.insert(0, b"")  # the first leaf is the empty string
ROOTS = _h(
    """
    6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d
    fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125
    aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77
    d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7
    4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4
    76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef
    ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c
    5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328
    """
)
INCLUSION_VECTORS = [  # (leaf index, tree size, proof)
    (0, 1, []),
    (
        0,
        8,
        _h(
            """
            96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7
            5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e
            6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4
            """
        ),
    ),
    (
        5,
        8,
        _h(
            """
            bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b
            ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0
            d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7
            """
        ),
    ),
    (2, 3, _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _h(
            """
            6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d
            5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e
            bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b
            """
        ),
    ),
]
CONSISTENCY_VECTORS = [  # (size1, size2, proof)
    (1, 1, []),
    (
        1,
        8,
        _h(
            """
            96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7
            5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e
            6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4
            """
        ),
    ),
    (
        6,
        8,
        _h(
            """
            0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a
            ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0
            d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7
            """
        ),
    ),
    (
        2,
        5,
        _h(
            """
            5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e
            bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b
            """
        ),
    ),
    (
        6,
        7,
        _h(
            """
            0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a
            b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f
            d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7
            """
        ),
    ),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


# --- Helpers -------------------------------------------------------------------------------------


def build(entries: Sequence[bytes]) -> tuple[Frontier, dict[tuple[int, int], bytes]]:
    """What the lead's storage will hold: leaf hashes at level 0 plus every completed node."""
    hashes = [leaf_hash(e) for e in entries]
    frontier, completed = Frontier().append(hashes)
    store: dict[tuple[int, int], bytes] = {(0, i): h for i, h in enumerate(hashes)}
    store.update({(n.level, n.index): n.hash for n in completed})
    return frontier, store


FULL, STORE = build(LEAVES)


def inclusion(index: int, size: int, store: dict[tuple[int, int], bytes] = STORE) -> list[bytes]:
    return assemble(inclusion_plan(index, size), store)


def consistency(size1: int, size2: int, store: dict[tuple[int, int], bytes] = STORE) -> list[bytes]:
    return assemble(consistency_plan(size1, size2), store)


def root_at(size: int, store: dict[tuple[int, int], bytes] = STORE) -> bytes:
    return assemble(root_plan(size), store)[0]


def flip(proof: list[bytes], i: int, bit: int = 3) -> list[bytes]:
    changed = list(proof)
    changed[i] = bytes([changed[i][0] ^ (1 << bit)]) + changed[i][1:]
    return changed


# --- Hashing and vectors ------------------------------------------------------------------------


def test_hashes_are_rfc6962() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        node_hash(b"l" * 32, b"r" * 32) == hashlib.sha256(b"\x01" + b"l" * 32 + b"r" * 32).digest()
    )
    assert Frontier().root() == EMPTY_ROOT == root_at(0) == ref.mth([])


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_at_every_size_match_the_vectors(size: int) -> None:
    frontier, _ = build(LEAVES[:size])
    assert frontier.root() == ROOTS[size - 1]
    assert root_at(size) == ROOTS[size - 1]  # from the full tree's storage, at an older size
    assert ref.mth(LEAVES[:size]) == ROOTS[size - 1]
    assert InmemoryTree.init_from_entries(LEAVES[:size]).get_root() == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_vectors(index: int, size: int, proof: list[bytes]) -> None:
    assert inclusion(index, size) == proof
    assert ref.path(index, LEAVES[:size]) == proof
    verify_inclusion(leaf_hash(LEAVES[index]), index, size, proof, ROOTS[size - 1])
    TlogInclusionProof(index, size, proof).check(leaf_hash(LEAVES[index]), ROOTS[size - 1])


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_VECTORS)
def test_consistency_vectors(size1: int, size2: int, proof: list[bytes]) -> None:
    assert consistency(size1, size2) == proof
    assert ref.proof(size1, LEAVES[:size2]) == proof
    verify_consistency(size1, size2, proof, ROOTS[size1 - 1], ROOTS[size2 - 1])
    TlogConsistencyProof(size1, size2, proof).check(ROOTS[size1 - 1], ROOTS[size2 - 1])


def _inclusion_probes(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, int, int, bytes, list[bytes], bytes]]:
    """transparency-dev's corruptInclusionProof: every way to get a good proof slightly wrong."""
    probes = [
        ("leaf index - 1", index - 1, size, leaf, proof, root),
        ("leaf index + 1", index + 1, size, leaf, proof, root),
        ("leaf index ^ 2", index ^ 2, size, leaf, proof, root),
        ("tree size * 2", index, size * 2, leaf, proof, root),
        ("tree size / 2", index, size // 2, leaf, proof, root),
        ("wrong leaf", index, size, b"WrongLeaf", proof, root),
        ("swapped leaf", index, size, leaf_hash(b"another delivery"), proof, root),
        ("empty root", index, size, leaf, proof, EMPTY_ROOT),
        ("random root", index, size, leaf, proof, SOME_HASH),
        ("trailing garbage", index, size, leaf, [*proof, b""], root),
        ("trailing root", index, size, leaf, [*proof, root], root),
        ("preceding garbage", index, size, leaf, [b"", *proof], root),
        ("preceding root", index, size, leaf, [root, *proof], root),
    ]
    probes += [
        (f"modified proof[{i}]", index, size, leaf, flip(proof, i), root) for i in range(len(proof))
    ]
    if proof:
        probes.append(("removed component", index, size, leaf, proof[:-1], root))
    if len(proof) > 1:
        probes.append(
            ("inserted component", index, size, leaf, [proof[0], SOME_HASH, *proof[1:]], root)
        )
    return probes


INCLUSION_PROBES = [
    pytest.param(*probe[1:], id=f"leaf{index}-size{size}: {probe[0]}")
    for index, size, proof in INCLUSION_VECTORS
    for probe in _inclusion_probes(index, size, proof, ROOTS[size - 1], leaf_hash(LEAVES[index]))
]


@pytest.mark.parametrize(("index", "size", "leaf", "proof", "root"), INCLUSION_PROBES)
def test_corrupted_inclusion_proofs_are_refused(
    index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
) -> None:
    with pytest.raises(ProofError) as refused:
        verify_inclusion(leaf, index, size, proof, root)
    assert str(refused.value)  # every refusal says why


def _consistency_probes(
    size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes
) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    """transparency-dev's corruptConsistencyProof."""
    probes = [
        ("size1 - 1", size1 - 1, size2, proof, root1, root2),
        ("size1 + 1", size1 + 1, size2, proof, root1, root2),
        ("size1 ^ 2", size1 ^ 2, size2, proof, root1, root2),
        ("size2 * 2", size1, size2 * 2, proof, root1, root2),
        ("size2 / 2", size1, size2 // 2, proof, root1, root2),
        ("wrong root1", size1, size2, proof, b"WrongRoot", root2),
        ("wrong root2", size1, size2, proof, root1, b"WrongRoot"),
        ("swapped roots", size1, size2, proof, root2, root1),
        ("empty proof", size1, size2, [], root1, root2),
        ("trailing garbage", size1, size2, [*proof, b""], root1, root2),
        ("trailing root1", size1, size2, [*proof, root1], root1, root2),
        ("trailing root2", size1, size2, [*proof, root2], root1, root2),
        ("preceding garbage", size1, size2, [b"", *proof], root1, root2),
        ("preceding root1", size1, size2, [root1, *proof], root1, root2),
        ("preceding root2", size1, size2, [root2, *proof], root1, root2),
        ("preceding proof[0]", size1, size2, [proof[0], *proof], root1, root2),
        ("truncated proof", size1, size2, proof[:-1], root1, root2),
        ("rolled back: sizes swapped", size2, size1, proof, root2, root1),
    ]
    probes += [
        (f"modified proof[{i}]", size1, size2, flip(proof, i, 4), root1, root2)
        for i in range(len(proof))
    ]
    return probes


CONSISTENCY_PROBES = [
    pytest.param(*probe[1:], id=f"{size1}-{size2}: {probe[0]}")
    for size1, size2, proof in CONSISTENCY_VECTORS
    if proof
    for probe in _consistency_probes(size1, size2, proof, ROOTS[size1 - 1], ROOTS[size2 - 1])
]


@pytest.mark.parametrize(("size1", "size2", "proof", "root1", "root2"), CONSISTENCY_PROBES)
def test_corrupted_consistency_proofs_are_refused(
    size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes
) -> None:
    with pytest.raises(ProofError) as refused:
        verify_consistency(size1, size2, proof, root1, root2)
    assert str(refused.value)


# --- Edge cases, per RFC 9162 and the cases it leaves open ----------------------------------------

R1, R2 = ROOTS[0], ROOTS[1]


@pytest.mark.parametrize(
    ("size1", "size2", "proof", "root1", "root2", "reason"),
    _named(
        [
            # Nothing to prove: accepted with an empty proof only.
            (0, 0, [], EMPTY_ROOT, EMPTY_ROOT, None),
            (0, 5, [], EMPTY_ROOT, ROOTS[4], None),
            (3, 3, [], ROOTS[2], ROOTS[2], None),
            # ...and refused otherwise.
            (0, 5, [], R1, ROOTS[4], "tree of size 0 has root"),
            (0, 5, [R1], EMPTY_ROOT, ROOTS[4], "empty tree needs an empty proof"),
            (3, 3, [R1], ROOTS[2], ROOTS[2], "equal size 3 need an empty proof"),
            (3, 3, [], ROOTS[2], ROOTS[3], "two different roots for tree size 3"),
            (1, 2, [], R1, R2, "has 0 hashes; sizes 1 -> 2 need 1"),
            # A log that shrank, whatever the proof says.
            (2, 1, [], R2, R1, "went down from 2 to 1"),
            (1, 0, [], R1, EMPTY_ROOT, "went down from 1 to 0"),
            (8, 6, consistency(6, 8), ROOTS[7], ROOTS[5], "went down from 8 to 6"),
            # Malformed input.
            (1, 2, [b"\x00" * 31], R1, R2, "proof[0] is 31 bytes"),
            (1, 2, [R1], R1[:16], R2, "first root hash is 16 bytes"),
            (1, 2, [R1], R1, b"", "second root hash is 0 bytes"),
            (-1, 2, [], R1, R2, "first tree size -1"),
            (1, MAX_SIZE + 1, [], R1, R2, "second tree size"),
        ]
    ),
)
def test_consistency_edge_cases(
    size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes, reason: str | None
) -> None:
    if reason is None:
        verify_consistency(size1, size2, proof, root1, root2)
        TlogConsistencyProof(size1, size2, proof).check(root1, root2)  # tlog-scales agrees
    else:
        with pytest.raises(ProofError, match=re.escape(reason)):
            verify_consistency(size1, size2, proof, root1, root2)


@pytest.mark.parametrize(
    ("index", "size", "leaf", "proof", "root", "reason"),
    _named(
        [
            (0, 0, leaf_hash(b""), [], EMPTY_ROOT, "leaf index 0 is not in a tree of size 0"),
            (1, 1, leaf_hash(b""), [], R1, "leaf index 1 is not in a tree of size 1"),
            (2, 1, leaf_hash(b""), [], R1, "not in a tree of size 1"),
            (-1, 1, leaf_hash(b""), [], R1, "leaf index -1"),
            (0, 1, leaf_hash(b""), [], b"", "root hash is 0 bytes"),
            (0, 1, b"", [], R1, "leaf hash is 0 bytes"),
            (0, 1, "not bytes", [], R1, "leaf hash is not bytes"),
            (0, 1, leaf_hash(b"x"), [], R1, "leads to root"),
            (0, 2, leaf_hash(b""), [], R2, "has 0 hashes; leaf 0 of a tree of size 2 needs 1"),
            (0, 1, leaf_hash(b""), [R1], R1, "has 1 hashes; leaf 0 of a tree of size 1 needs 0"),
        ]
    ),
)
def test_inclusion_edge_cases(
    index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes, reason: str
) -> None:
    with pytest.raises(ProofError, match=re.escape(reason)):
        verify_inclusion(leaf, index, size, proof, root)


def test_single_leaf_tree_root_is_the_leaf_hash() -> None:
    verify_inclusion(leaf_hash(b""), 0, 1, [], R1)
    assert root_from_inclusion(leaf_hash(b""), 0, 1, []) == R1 == leaf_hash(b"")


def test_proof_for_a_truncated_log_is_refused() -> None:
    # A log that dropped its last leaf serves proofs from the shorter tree; against the
    # checkpoint the auditor holds (size 8) they do not verify.
    proof7 = inclusion(2, 7)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(LEAVES[2]), 2, 8, proof7, ROOTS[7])
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(LEAVES[2]), 2, 7, proof7, ROOTS[7])
    # ...and the truncated log cannot prove it extends the checkpoint.
    with pytest.raises(ProofError, match="went down"):
        verify_consistency(8, 7, consistency(7, 8), ROOTS[7], ROOTS[6])


# --- Plans ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: inclusion_plan(0, 0), "not in a tree of size 0"),
        (lambda: inclusion_plan(5, 5), "not in a tree of size 5"),
        (lambda: inclusion_plan(-1, 5), "leaf index -1"),
        (lambda: consistency_plan(6, 5), "from size 6 down to 5"),
        (lambda: consistency_plan(-1, 5), "tree size -1"),
        (lambda: root_plan(MAX_SIZE + 1), "tree size"),
        (lambda: frontier_nodes(-1), "tree size -1"),
    ],
)
def test_plans_refuse_ranges_that_have_no_proof(call: Callable[[], object], reason: str) -> None:
    with pytest.raises(InvalidRange, match=re.escape(reason)):
        call()


def test_plan_names_complete_subtrees_and_right_edge_folds() -> None:
    # Leaf 1 of 5: its sibling leaf 0, the subtree (1, 1) over leaves 2-3, then leaf 4 alone.
    assert inclusion_plan(1, 5) == ProofPlan(
        elements=((NodeId(0, 0),), (NodeId(1, 1),), (NodeId(0, 4),))
    )
    # Leaf 0 of 7: the right half [4, 7) is not complete: the fold of (1, 2) and (0, 6).
    plan = inclusion_plan(0, 7)
    assert plan.elements[-1] == (NodeId(1, 2), NodeId(0, 6))
    assert plan.nodes == ((0, 1), (0, 6), (1, 1), (1, 2))  # plain tuples compare equal
    assert root_plan(0) == ProofPlan(elements=((),))
    assert root_plan(13).nodes == ((0, 12), (2, 2), (3, 0))
    assert consistency_plan(0, 9) == consistency_plan(9, 9) == ProofPlan(elements=())
    assert NodeId(3, 2).start == 16 and NodeId(3, 2).end == 24


def test_assemble_names_what_storage_lacks() -> None:
    store = dict(STORE)
    del store[(1, 1)]
    with pytest.raises(MissingNode, match=r"\(1, 1\)"):
        inclusion(1, 5, store)
    inclusion(0, 2, store)  # a proof that does not need it still assembles
    with pytest.raises(ValueError, match="32 bytes"):
        assemble(inclusion_plan(0, 2), {**STORE, (0, 1): b"short"})


# --- Frontier ---------------------------------------------------------------------------------------


def test_frontier_reports_completed_nodes_once_with_their_position() -> None:
    f1, done1 = Frontier().append([leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")])
    assert [(n.level, n.index) for n in done1] == [(1, 0)]
    f2, done2 = f1.append([leaf_hash(b"d")])
    assert [(n.level, n.index) for n in done2] == [(1, 1), (2, 0)]
    assert done2[1].hash == ref.mth([b"a", b"b", b"c", b"d"]) == f2.root()
    assert f2.nodes() == (Node(2, 0, f2.root()),)
    assert f1.size == 3 and f1.nodes()[1] == Node(0, 2, leaf_hash(b"c"))


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: Frontier(size=3, hashes=(SOME_HASH,)), ValueError),
        (lambda: Frontier(size=1, hashes=(b"short",)), ValueError),
        (lambda: Frontier(size=-1), InvalidRange),
        (lambda: Frontier().append([b"short"]), ValueError),
        (lambda: Frontier.from_subtrees(3, {(1, 0): SOME_HASH}), MissingNode),
    ],
)
def test_frontier_refuses_what_cannot_be_a_frontier(
    make: Callable[[], object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        make()


ENTRIES = st.lists(st.binary(max_size=12), min_size=1, max_size=70)


@settings(max_examples=150, deadline=None)
@given(entries=st.lists(st.binary(max_size=8), max_size=70), data=st.data())
def test_frontier_batches_give_the_same_root_and_completed_nodes(
    entries: list[bytes], data: st.DataObject
) -> None:
    hashes = [leaf_hash(e) for e in entries]
    at_once, completed_at_once = Frontier().append(hashes)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(hashes)), max_size=8)))
    frontier, completed = Frontier(), []
    for lo, hi in zip([0, *cuts], [*cuts, len(hashes)], strict=True):
        frontier, done = frontier.append(hashes[lo:hi])
        completed += done
    assert frontier == at_once
    assert frontier.root() == ref.mth(entries)
    assert completed == list(completed_at_once)  # same nodes, same order, each once
    # Exactly the complete subtrees of level >= 1 inside [0, n), each with the RFC hash.
    expected = {
        (level, index)
        for level in range(1, len(entries).bit_length())
        for index in range(len(entries) >> level)
    }
    assert {(n.level, n.index) for n in completed} == expected
    for n in completed:
        assert n.hash == ref.mth(entries[n.index << n.level : (n.index + 1) << n.level])
    # A standby rebuilds the same frontier from stored subtrees.
    _, store = build(entries)
    assert Frontier.from_subtrees(len(entries), store) == frontier
    assert [(n.level, n.index) for n in frontier.nodes()] == list(frontier_nodes(len(entries)))


# --- Properties against the reference and the independent implementations ---------------------------


def _pymerkle_inclusion_check(tree: InmemoryTree, index: int, size: int, ours: list[bytes]) -> None:
    theirs = tree.prove_inclusion(index + 1, size)  # pymerkle numbers leaves from 1
    assert theirs.path[1:] == ours  # its path is [leaf hash, *RFC PATH]
    replaced = PymerkleInclusionProof(
        "sha256", True, size, index + 1, theirs.rule, [theirs.path[0], *ours]
    )
    pymerkle_verify_inclusion(theirs.path[0], tree.get_root(size), replaced)


@settings(max_examples=120, deadline=None)
@given(entries=ENTRIES, data=st.data())
def test_inclusion_proofs_agree_with_rfc_and_other_implementations(
    entries: list[bytes], data: st.DataObject
) -> None:
    size = data.draw(st.integers(1, len(entries)))
    index = data.draw(st.integers(0, size - 1))
    _, store = build(entries)
    proof = inclusion(index, size, store)
    root = root_at(size, store)
    leaf = leaf_hash(entries[index])
    assert root == ref.mth(entries[:size])
    assert proof == ref.path(index, entries[:size])
    verify_inclusion(leaf, index, size, proof, root)
    TlogInclusionProof(index, size, proof).check(leaf, root)
    tree = InmemoryTree.init_from_entries(entries)
    assert tree.get_root(size) == root
    _pymerkle_inclusion_check(tree, index, size, proof)
    # One flipped bit anywhere is refused by us and by tlog-scales.
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        forged = flip(proof, i, data.draw(st.integers(0, 7)))
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, forged, root)
        with pytest.raises(InclusionProofInvalid):
            TlogInclusionProof(index, size, forged).check(leaf, root)


@settings(max_examples=120, deadline=None)
@given(entries=ENTRIES, data=st.data())
def test_consistency_proofs_agree_with_rfc_and_tlog_scales(
    entries: list[bytes], data: st.DataObject
) -> None:
    size2 = data.draw(st.integers(1, len(entries)))
    size1 = data.draw(st.integers(1, size2))
    _, store = build(entries)
    proof = consistency(size1, size2, store)
    root1, root2 = root_at(size1, store), root_at(size2, store)
    assert proof == ref.proof(size1, entries[:size2])
    verify_consistency(size1, size2, proof, root1, root2)
    TlogConsistencyProof(size1, size2, proof).check(root1, root2)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        forged = flip(proof, i, data.draw(st.integers(0, 7)))
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, forged, root1, root2)
        with pytest.raises(ConsistencyProofInvalid):
            TlogConsistencyProof(size1, size2, forged).check(root1, root2)
    # A log that rewrote history (one leaf before size1 changed) cannot prove that its new
    # tree head extends the checkpoint an auditor already holds (size1, root1).
    j = data.draw(st.integers(0, size1 - 1))
    rewritten = [*entries[:j], entries[j] + b"!", *entries[j + 1 :]]
    _, forged_store = build(rewritten)
    forged_proof = consistency(size1, size2, forged_store)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, forged_proof, root1, root_at(size2, forged_store))
