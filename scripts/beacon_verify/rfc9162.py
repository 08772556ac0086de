"""RFC 6962 tree hashes and the RFC 9162 proof checks (sections 2.1.3.2 and 2.1.4.2)."""

from __future__ import annotations

from .common import sha256

EMPTY_ROOT = sha256(b"")


def leaf_hash(data: bytes) -> bytes:
    """Returns SHA-256(0x00 || data), the hash of one leaf."""
    return sha256(b"\x00" + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    """Returns SHA-256(0x01 || left || right), the hash of an interior node."""
    return sha256(b"\x01" + left + right)


def tree_root(leaves: list[bytes]) -> bytes:
    """Returns the RFC 6962 Merkle tree hash of the given leaf hashes, in one pass."""
    # The stack holds the perfect subtrees of the leaves so far, largest first; folding them
    # from the right gives MTH, whose split is the largest power of two below the size.
    stack: list[tuple[int, bytes]] = []
    for leaf in leaves:
        height, value = 0, leaf
        while stack and stack[-1][0] == height:
            value = node_hash(stack.pop()[1], value)
            height += 1
        stack.append((height, value))
    if not stack:
        return EMPTY_ROOT
    root = stack[-1][1]
    for _, value in reversed(stack[:-1]):
        root = node_hash(value, root)
    return root


def root_from_inclusion(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """Returns the root that the inclusion path leads to, or None when it cannot."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def consistent(first: int, second: int, first_hash: bytes, second_hash: bytes, path) -> bool:
    """Says whether `path` proves the tree (second, second_hash) extends (first, first_hash)."""
    if first == second:
        return not path and first_hash == second_hash
    if first == 0:
        return not path
    if first > second or not path:
        return False
    path = list(path)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0
