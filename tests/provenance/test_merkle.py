"""Roots and proofs from stored subtree hashes against RFC 6962's recursive definitions.

The reference (RFC 6962 as recursion over leaf lists) and the verifiers (RFC 9162) live in
tests/support/rfc9162.py, written apart from the portal's code and from scripts/verify_receipt.py.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from portal.provenance import merkle
from tests.support.rfc9162 import Reference, sha, verify_consistency, verify_inclusion


def build(n: int) -> tuple[Reference, merkle.MemoryTree]:
    leaves = [f"leaf {i}".encode() for i in range(n)]
    tree = merkle.MemoryTree()
    for leaf in leaves:
        tree.append(merkle.leaf_hash(leaf))
    return Reference(leaves), tree


def test_empty_tree_root_is_hash_of_empty_string():
    assert merkle.MemoryTree().root() == hashlib.sha256(b"").digest()
    assert merkle.EMPTY_ROOT.hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_every_size_up_to_300_matches_the_rfc():
    ref, tree = build(300)
    for size in range(1, 301):
        root = tree.root(size)
        assert root == ref.mth(0, size), size
        for index in range(size):
            path = merkle.inclusion_proof(index, size, tree.read)
            assert path == ref.path(index, 0, size), (index, size)
            leaf = merkle.leaf_hash(ref.leaves[index])
            assert verify_inclusion(index, size, leaf, path, root)
        for old in range(1, size + 1):
            proof = merkle.consistency_proof(old, size, tree.read)
            assert proof == (ref.proof(old, size) if old < size else []), (old, size)
            assert verify_consistency(old, size, tree.root(old), root, proof)


def test_random_sizes_up_to_100000_match_the_rfc():
    rng = random.Random(6962)
    ref, tree = build(100_000)
    sizes = [100_000, 65_536, 65_537, 99_999] + [rng.randint(301, 100_000) for _ in range(12)]
    for size in sizes:
        root = tree.root(size)
        assert root == ref.mth(0, size), size
        for index in [0, size - 1] + [rng.randrange(size) for _ in range(20)]:
            path = merkle.inclusion_proof(index, size, tree.read)
            assert path == ref.path(index, 0, size)
            assert verify_inclusion(index, size, merkle.leaf_hash(ref.leaves[index]), path, root)
        for old in [1, size - 1] + [rng.randint(1, size) for _ in range(20)]:
            proof = merkle.consistency_proof(old, size, tree.read)
            assert proof == (ref.proof(old, size) if old < size else [])
            assert verify_consistency(old, size, tree.root(old), root, proof)


def test_verifiers_refuse_wrong_proofs():
    ref, tree = build(37)
    root = tree.root(37)
    leaf = merkle.leaf_hash(ref.leaves[5])
    path = merkle.inclusion_proof(5, 37, tree.read)
    assert verify_inclusion(5, 37, leaf, path, root)
    assert not verify_inclusion(6, 37, leaf, path, root)
    assert not verify_inclusion(5, 37, merkle.leaf_hash(b"other"), path, root)
    assert not verify_inclusion(5, 37, leaf, path[:-1], root)
    assert not verify_inclusion(5, 37, leaf, [sha(b"x")] + path[1:], root)
    proof = merkle.consistency_proof(20, 37, tree.read)
    assert verify_consistency(20, 37, tree.root(20), root, proof)
    assert not verify_consistency(20, 37, tree.root(21), root, proof)
    assert not verify_consistency(21, 37, tree.root(21), root, proof)
    assert not verify_consistency(20, 37, tree.root(20), tree.root(36), proof)


def test_node_keys_are_only_the_ones_stored():
    _, tree = build(1000)
    for size in (1, 2, 3, 7, 8, 999, 1000):
        assert set(merkle.range_nodes(0, size)) <= set(tree.nodes)
    with pytest.raises(ValueError):
        merkle.range_nodes(3, 2)
    with pytest.raises(ValueError):
        merkle.inclusion_ranges(5, 5)
    with pytest.raises(ValueError):
        merkle.consistency_ranges(6, 5)
    assert merkle.consistency_ranges(0, 5) == []
