"""RFC 6962 Merkle tree hashing and proofs, computed from stored perfect-subtree hashes.

A log of `n` leaves is kept as the hashes of its perfect subtrees: node `(level, index)` is
the Merkle tree hash of leaves `[index * 2**level, (index + 1) * 2**level)`. Appending leaf
`n` stores node `(0, n)` and every parent it completes, so each perfect subtree is written
once, when its last leaf arrives. Every range the RFC's recursive definitions ask for (a tree,
an inclusion path's sibling, a consistency path's subtree) starts at a multiple of the
smallest power of two not below its size, so its hash is the right fold of at most log2(n)
stored nodes: a proof reads O(log n) nodes, whatever the size of the log.

The functions here work on plain bytes and node keys; `provenance/tlog.py` reads the nodes they
name from the database in one query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

Node = tuple[int, int]
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Returns SHA-256(0x00 || data), the hash of one leaf."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Returns SHA-256(0x01 || left || right), the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(size: int) -> int:
    """Returns the largest power of two smaller than `size` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def range_nodes(start: int, size: int) -> list[Node]:
    """Returns the perfect subtrees, left to right, whose right fold is MTH(D[start:start+size])."""
    if size <= 0:
        raise ValueError("a range holds at least one leaf")
    if start % (1 << (size - 1).bit_length()):
        raise ValueError(f"range [{start}, {start + size}) is not one the RFC's recursion visits")
    nodes = []
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            nodes.append((level, start >> level))
            start += 1 << level
    return nodes


def appended_nodes(index: int) -> list[Node]:
    """Returns the nodes that leaf `index` completes, bottom up, starting with the leaf."""
    nodes = [(0, index)]
    level = 0
    while index & 1:
        index >>= 1
        level += 1
        nodes.append((level, index))
    return nodes


def children(node: Node) -> tuple[Node, Node]:
    """Returns the two nodes one level down that make `node`."""
    level, index = node
    return (level - 1, 2 * index), (level - 1, 2 * index + 1)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Returns the (start, size) ranges of PATH(index, D[0:size]), from the leaf up (RFC 6962)."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is outside a tree of {size}")
    ranges = []
    start, n = 0, size
    while n > 1:
        k = split(n)
        if index - start < k:
            ranges.append((start + k, n - k))
            n = k
        else:
            ranges.append((start, k))
            start, n = start + k, n - k
    return ranges[::-1]


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """Returns the (start, size) ranges of PROOF(old, D[0:new]) (RFC 6962 SUBPROOF).

    Empty when `old` is 0 or equals `new`: every tree extends the empty tree and itself.
    """
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    if old in (0, new):
        return []
    ranges = []
    start, m, n, whole = 0, old, new, True
    while m != n:
        k = split(n)
        if m <= k:
            ranges.append((start + k, n - k))
            n = k
        else:
            ranges.append((start, k))
            start, m, n, whole = start + k, m - k, n - k, False
    if not whole:
        ranges.append((start, m))
    return ranges[::-1]


def needed(ranges: Iterable[tuple[int, int]]) -> set[Node]:
    """Returns every stored node the given ranges fold."""
    return {node for start, size in ranges for node in range_nodes(start, size)}


def fold(nodes: list[Node], hashes: dict[Node, bytes]) -> bytes:
    """Returns the right fold of the given perfect subtrees' hashes."""
    result = hashes[nodes[-1]]
    for node in reversed(nodes[:-1]):
        result = node_hash(hashes[node], result)
    return result


def range_hash(start: int, size: int, hashes: dict[Node, bytes]) -> bytes:
    """Returns MTH(D[start:start+size]) from stored node hashes."""
    return fold(range_nodes(start, size), hashes)


def root(size: int, read: Callable[[set[Node]], dict[Node, bytes]]) -> bytes:
    """Returns the tree hash of the first `size` leaves; `read` fetches stored nodes."""
    if size == 0:
        return EMPTY_ROOT
    nodes = range_nodes(0, size)
    return fold(nodes, read(set(nodes)))


def inclusion_proof(
    index: int, size: int, read: Callable[[set[Node]], dict[Node, bytes]]
) -> list[bytes]:
    """Returns the RFC 9162 inclusion path of leaf `index` in the tree of `size` leaves."""
    ranges = inclusion_ranges(index, size)
    hashes = read(needed(ranges))
    return [range_hash(start, n, hashes) for start, n in ranges]


def consistency_proof(
    old: int, new: int, read: Callable[[set[Node]], dict[Node, bytes]]
) -> list[bytes]:
    """Returns the RFC 9162 consistency path from the tree of `old` leaves to `new`."""
    ranges = consistency_ranges(old, new)
    hashes = read(needed(ranges))
    return [range_hash(start, n, hashes) for start, n in ranges]


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> bool:
    """Says whether `proof` shows the tree of `new` leaves extends the one of `old` (RFC 9162
    section 2.1.4.2). From 0 (any tree extends the empty one) and between equal sizes the proof
    is empty, and equal sizes need equal roots."""
    if not 0 <= old <= new:
        return False
    if old == 0:
        return not proof
    if old == new:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old tree is itself the proof's first node
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(node, fr), node_hash(node, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, node)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


class MemoryTree:
    """The same stored-node structure in a dict: for tests, benchmarks and rebuilding a log."""

    def __init__(self) -> None:
        self.nodes: dict[Node, bytes] = {}
        self.size = 0

    def append(self, leaf: bytes) -> None:
        """Appends one leaf hash and stores every node it completes."""
        for node in appended_nodes(self.size):
            if node[0] == 0:
                self.nodes[node] = leaf
            else:
                left, right = children(node)
                self.nodes[node] = node_hash(self.nodes[left], self.nodes[right])
        self.size += 1

    def read(self, keys: set[Node]) -> dict[Node, bytes]:
        """Returns the stored hashes of `keys`."""
        return {key: self.nodes[key] for key in keys}

    def root(self, size: int | None = None) -> bytes:
        """Returns the tree hash of the first `size` leaves (all by default)."""
        return root(self.size if size is None else size, self.read)
