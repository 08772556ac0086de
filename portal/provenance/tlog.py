"""The transparency log in the database: serialized appends, proofs, the signed checkpoint.

One log per database. An append runs under one lock that every worker and instance honours
(PostgreSQL: a transaction-scoped advisory lock; SQLite: the database write lock, taken by the
first statement), reads the head, stores the new leaf and every perfect subtree it completes,
and moves the head, all in the caller's transaction: one tree, never a fork. Proofs read only
the O(log n) stored subtree hashes they need (portal/provenance/merkle.py), in one query.

The checkpoint is a C2SP tlog-checkpoint in a C2SP signed note (SPEC section 9), signed on
demand with the portal key: Ed25519 is deterministic, so a given size always has the same note.
"""

from __future__ import annotations

import base64
import hashlib
import socket

import nacl.signing
from sqlalchemy import and_, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from portal.db import db
from portal.provenance import merkle
from portal.provenance.log_models import LogHead, LogNode
from portal.times import utcnow

# "beaconlg" as a 63-bit integer: the advisory lock every appender takes on PostgreSQL.
LOCK_KEY = int.from_bytes(b"beaconlg", "big") & (2**63 - 1)
HEAD_ID = 1


class ProofError(ValueError):
    """A proof was asked for an index or size outside the tree."""


def default_origin() -> str:
    """Returns the origin used when BEACON_LOG_ORIGIN is unset: beacon-portal/ + host name."""
    return "beacon-portal/" + socket.gethostname()


def check_origin(origin: str) -> str:
    """Returns `origin` if a signed note can name it (no whitespace, no '+'), else raises."""
    if not origin or any(c.isspace() or c == "+" for c in origin):
        raise ValueError("the log origin must be non-empty, without whitespace or '+'")
    return origin


def lock() -> None:
    """Takes the log's append lock until the transaction ends and makes sure the head exists."""
    values = {"id": HEAD_ID, "size": 0, "root_hash": merkle.EMPTY_ROOT, "updated_at": utcnow()}
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        statement = pg_insert(LogHead).values(**values).on_conflict_do_nothing()
    else:
        # A write as the transaction's first statement takes SQLite's write lock before any
        # read, so the head read next is the latest one.
        statement = sqlite_insert(LogHead).values(**values).on_conflict_do_nothing()
    db.session.execute(statement)


def head() -> tuple[int, bytes]:
    """Returns the log's (size, root hash) as committed; (0, hash of nothing) when empty."""
    row = db.session.execute(
        select(LogHead.size, LogHead.root_hash).where(LogHead.id == HEAD_ID)
    ).first()
    return (row.size, bytes(row.root_hash)) if row else (0, merkle.EMPTY_ROOT)


def append(leaf: bytes) -> int:
    """Appends one leaf hash under the lock (call `lock()` first); returns its index."""
    size, _ = head()
    new_nodes = merkle.appended_nodes(size)
    lefts = {merkle.children(node)[0] for node in new_nodes[1:]}
    hashes = read(lefts)
    hashes[new_nodes[0]] = leaf
    for node in new_nodes[1:]:
        left, right = merkle.children(node)
        hashes[node] = merkle.node_hash(hashes[left], hashes[right])
    db.session.add_all(LogNode(level=lv, idx=ix, hash=hashes[(lv, ix)]) for lv, ix in new_nodes)
    db.session.flush()
    new_root = merkle.root(size + 1, lambda keys: {**read(keys - hashes.keys()), **hashes})
    head_row = db.session.get(LogHead, HEAD_ID, populate_existing=True)
    head_row.size, head_row.root_hash, head_row.updated_at = size + 1, new_root, utcnow()
    return size


def read(keys: set[merkle.Node]) -> dict[merkle.Node, bytes]:
    """Returns the stored hashes of the given nodes in one query."""
    if not keys:
        return {}
    by_level: dict[int, list[int]] = {}
    for level, idx in sorted(keys):
        by_level.setdefault(level, []).append(idx)
    # One (level = ? AND idx IN (...)) per level: both databases answer it from the primary
    # key, where a row-value IN list made SQLite scan the whole table.
    rows = db.session.execute(
        select(LogNode.level, LogNode.idx, LogNode.hash).where(
            or_(*(and_(LogNode.level == lv, LogNode.idx.in_(ix)) for lv, ix in by_level.items()))
        )
    )
    found = {(level, idx): bytes(value) for level, idx, value in rows}
    missing = keys - found.keys()
    if missing:
        raise LookupError(f"the log is missing stored nodes {sorted(missing)[:3]}")
    return found


def inclusion(index: int, size: int) -> dict:
    """Returns the inclusion proof of leaf `index` in the tree of `size` leaves."""
    current, _ = head()
    if not 0 < size <= current or not 0 <= index < size:
        raise ProofError(f"need 0 <= index < size <= {current} (the log's size)")
    leaf_key = (0, index)
    stored: dict[merkle.Node, bytes] = {}

    def read_with_leaf(keys: set[merkle.Node]) -> dict[merkle.Node, bytes]:
        stored.update(read(keys | {leaf_key}))  # the leaf comes in the same query
        return stored

    path = merkle.inclusion_proof(index, size, read_with_leaf)
    leaf = stored.get(leaf_key) or read({leaf_key})[leaf_key]
    return {"index": index, "size": size, "leaf_hash": b64(leaf), "hashes": [b64(h) for h in path]}


def consistency(old: int, new: int) -> dict:
    """Returns the consistency proof between the trees of `old` and `new` leaves."""
    current, _ = head()
    if not 0 <= old <= new <= current:
        raise ProofError(f"need 0 <= old <= new <= {current} (the log's size)")
    path = merkle.consistency_proof(old, new, read)
    return {"old": old, "new": new, "hashes": [b64(h) for h in path]}


def key_hash(origin: str, public_key: bytes) -> bytes:
    """Returns the signed-note key hash: SHA-256(origin || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(origin.encode() + b"\n\x01" + public_key).digest()[:4]


def note(origin: str, size: int, root_hash: bytes, seed: bytes) -> str:
    """Returns the signed checkpoint note for one tree head."""
    body = f"{origin}\n{size}\n{b64(root_hash)}\n"
    key = nacl.signing.SigningKey(seed)
    signature = key.sign(body.encode()).signature
    stamp = b64(key_hash(origin, bytes(key.verify_key)) + signature)
    return f"{body}\n\u2014 {origin} {stamp}\n"


def checkpoint(origin: str, seed: bytes, tree: tuple[int, bytes] | None = None) -> dict:
    """Returns the checkpoint of `tree` (size, root), the current one by default, as the API
    serves it."""
    size, root_hash = tree or head()
    key = nacl.signing.SigningKey(seed)
    return {
        "origin": origin,
        "size": size,
        "root_hash": b64(root_hash),
        "public_key": b64(bytes(key.verify_key)),
        "note": note(origin, size, root_hash, seed),
    }


def b64(data: bytes) -> str:
    """Returns standard base64 text."""
    return base64.b64encode(data).decode("ascii")
