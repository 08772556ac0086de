"""RFC 6962 and RFC 9162 written out for the tests, apart from the portal's code and from
scripts/verify_receipt.py: the recursive definitions over leaf lists (RFC 6962 section 2.1),
the verification algorithms (RFC 9162 sections 2.1.3.2 and 2.1.4.2), and a C2SP signed-note
checkpoint reader.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

import nacl.exceptions
import nacl.signing


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Reference:
    """RFC 6962 section 2.1 over a fixed list of leaf inputs, memoized by range."""

    def __init__(self, leaves: list[bytes]):
        self.leaves = leaves
        self.mth = lru_cache(maxsize=None)(self._mth)

    def _mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return sha(b"")
        if n == 1:
            return sha(b"\x00" + self.leaves[start])
        k = 1
        while k * 2 < n:
            k *= 2
        return sha(b"\x01" + self.mth(start, start + k) + self.mth(start + k, end))

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = 1
        while k * 2 < n:
            k *= 2
        if m < k:
            return self.path(m, start, start + k) + [self.mth(start + k, end)]
        return self.path(m - k, start + k, end) + [self.mth(start, start + k)]

    def subproof(self, m: int, start: int, end: int, b: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if b else [self.mth(start, end)]
        k = 1
        while k * 2 < n:
            k *= 2
        if m <= k:
            return self.subproof(m, start, start + k, b) + [self.mth(start + k, end)]
        return self.subproof(m - k, start + k, end, False) + [self.mth(start, start + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        return self.subproof(m, 0, n, True)


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha(b"\x01" + p + r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, path: list[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2 (with equal sizes proved by an empty path and equal roots)."""
    if first == second:
        return not path and first_hash == second_hash
    if not path or first == 0 or first > second:
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
            fr = sha(b"\x01" + c + fr)
            sr = sha(b"\x01" + c + sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


def open_note(note: str, public_key: bytes) -> tuple[str, int, bytes]:
    """Reads a C2SP checkpoint note signed by `public_key`: (origin, size, root); else raises."""
    body, blank, sigs = note.partition("\n\n")
    assert blank, "no blank line between body and signatures"
    origin, size, root = body.split("\n")
    key_id = hashlib.sha256(origin.encode() + b"\x0a\x01" + public_key).digest()[:4]
    lines = sigs.split("\n")
    assert lines[-1] == "" and len(lines) >= 2, "signature lines must end with a newline"
    for line in lines[:-1]:
        dash, name, blob = line.split(" ")
        raw = base64.b64decode(blob, validate=True)
        if dash == "\u2014" and name == origin and raw[:4] == key_id:
            try:
                nacl.signing.VerifyKey(public_key).verify((body + "\n").encode(), raw[4:])
            except nacl.exceptions.BadSignatureError:
                continue
            return origin, int(size), base64.b64decode(root, validate=True)
    raise AssertionError("no signature line verifies under the key")
