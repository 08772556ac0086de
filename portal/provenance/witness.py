"""A C2SP tlog-witness anyone can host (`flask beacon witness serve`, SPEC section 9).

`Witness.add_checkpoint(body)` is the protocol's one write, in the order c2sp.org/tlog-witness
(v1.1.0) checks it: a malformed body (400); an origin it was given no key for (404); no valid
signature by a key it trusts for that origin, or a failing one (403); an old size beyond the
checkpoint (400); an old size other than the size it last cosigned for that origin (409, that
size in a `text/x.tlog.size` body); a tree of size 0 whose root is not the empty tree's, a proof
from size 0, a different root at the same size or a consistency proof that does not verify
(422). Then it records the new size and root and answers one cosignature/v1 line. The check and
the record are one transaction, under a lock, so two racing requests cannot roll it back.

State is one row per origin (size, root, the cosigned note) in a database of its own, a
SQLAlchemy URL (SQLite by default), never the portal's: `WitnessStore` creates its one table.
The HTTP layer is a plain WSGI app in portal/cli/witness.py; nothing here knows Flask.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from portal.provenance import merkle
from portal.provenance.notes import (
    ED25519,
    Checkpoint,
    Note,
    NoteError,
    Vkey,
    cosign_line,
    decimal,
    unb64,
    witness_vkey,
)
from portal.times import utcnow

SIZE_TYPE = "text/x.tlog.size"
PLAIN = "text/plain; charset=utf-8"
MAX_BODY = 128 * 1024
MAX_PROOF_LINES = 63
log = logging.getLogger(__name__)

metadata = MetaData()
checkpoints = Table(
    "witness_checkpoints",
    metadata,
    Column("origin", String(1000), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", Text),
    Column("updated_at", DateTime),
)


class Refusal(Exception):
    """A request the witness answers with an error `status` (and `content_type`)."""

    def __init__(self, status: int, message: str, content_type: str = PLAIN):
        super().__init__(message)
        self.status, self.content_type = status, content_type


class WitnessStore:
    """The newest cosigned checkpoint per origin, in the witness's own database."""

    def __init__(self, url: str):
        options = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
        self.engine = create_engine(url, **options)
        metadata.create_all(self.engine)  # the witness's own store: one table, made on start

    def latest(self, origin: str) -> tuple[int, bytes, str | None] | None:
        """Returns (size, root, note) of the origin's newest cosigned checkpoint, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(checkpoints.c.size, checkpoints.c.root_hash, checkpoints.c.note).where(
                    checkpoints.c.origin == origin
                )
            ).first()
        return (row.size, bytes(row.root_hash), row.note) if row else None

    def dispose(self) -> None:
        """Closes the store's connections."""
        self.engine.dispose()


class Witness:
    """A witness: its name and key, the log keys it trusts per origin, and its store."""

    def __init__(self, name: str, seed: bytes, log_keys: Iterable[Vkey], store: WitnessStore):
        self.name, self.seed, self.store = name, seed, store
        self.logs: dict[str, list[Vkey]] = {}
        for key in log_keys:
            if key.kind != ED25519:
                raise NoteError(f"a log key is type 0x01 (Ed25519 notes), not 0x{key.kind:02x}")
            self.logs.setdefault(key.name, []).append(key)
        self.lock = threading.Lock()

    @property
    def vkey(self) -> Vkey:
        """Returns the witness's cosignature/v1 vkey, for the logs that ask it."""
        return witness_vkey(self.name, self.seed)

    def add_checkpoint(self, body: bytes) -> str:
        """Cosigns the checkpoint of an add-checkpoint body; returns the cosignature line."""
        old, proof, note = parse_request(body)
        checkpoint, parsed = self.verified(note)
        if old > checkpoint.size:
            raise Refusal(400, f"old size {old} is beyond the checkpoint's size {checkpoint.size}")
        with self.lock, self.store.engine.begin() as conn:
            size, root = self.hold(conn, checkpoint.origin)
            if old != size:
                raise Refusal(409, f"{size}\n", SIZE_TYPE)
            try:
                check_consistency(old, root, checkpoint, proof)
            except Refusal:
                log.warning("refused an inconsistent checkpoint from %r: %r", old, note)
                raise
            line = cosign_line(self.name, self.seed, parsed.text, int(time.time()))
            conn.execute(
                update(checkpoints)
                .where(checkpoints.c.origin == checkpoint.origin)
                .values(
                    size=checkpoint.size,
                    root_hash=checkpoint.root,
                    note=note + line,
                    updated_at=utcnow().replace(tzinfo=None),
                )
            )
        log.info("cosigned %s at size %d", checkpoint.origin, checkpoint.size)
        return line

    def hold(self, conn, origin: str) -> tuple[int, bytes]:
        """Returns the origin's (size, root) locked until the transaction ends (0 and the empty
        tree's root when it never cosigned): a write first takes SQLite's write lock, and the
        row is read FOR UPDATE on PostgreSQL."""
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(
            insert(checkpoints)
            .values(origin=origin, size=0, root_hash=merkle.EMPTY_ROOT)
            .on_conflict_do_nothing()
        )
        row = conn.execute(
            select(checkpoints.c.size, checkpoints.c.root_hash)
            .where(checkpoints.c.origin == origin)
            .with_for_update()
        ).one()
        return row.size, bytes(row.root_hash)

    def verified(self, note: str) -> tuple[Checkpoint, Note]:
        """Returns the note's checkpoint if a key trusted for its origin signed it; else refuses."""
        try:
            parsed = Note.parse(note)
            checkpoint = Checkpoint.parse(parsed.text)
        except NoteError as exc:
            raise Refusal(400, f"malformed checkpoint: {exc}") from None
        keys = self.logs.get(checkpoint.origin)
        if keys is None:
            raise Refusal(404, f"unknown log origin {checkpoint.origin!r}")
        try:
            signed = [k for k in keys if parsed.signed_by(k)]
        except NoteError as exc:
            raise Refusal(403, str(exc)) from None
        if not signed:
            raise Refusal(403, "no signature by a key this witness trusts for that origin")
        return checkpoint, parsed


def parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    """Returns (old size, proof hashes, checkpoint note) of an add-checkpoint body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(400, "the body is not UTF-8") from None
    head, blank, note = text.partition("\n\n")
    if not blank:
        raise Refusal(400, "no empty line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise Refusal(400, "the first line is not `old <size>`")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise Refusal(400, f"more than {MAX_PROOF_LINES} proof lines")
    try:
        old = decimal(lines[0][4:])
        proof = [unb64(line) for line in lines[1:]]
    except NoteError as exc:
        raise Refusal(400, str(exc)) from None
    if any(len(h) != 32 for h in proof):
        raise Refusal(400, "a proof line is not a 32-byte hash")
    return old, proof, note


def check_consistency(old: int, old_root: bytes, checkpoint: Checkpoint, proof) -> None:
    """Refuses (422) a checkpoint that does not extend the tree the witness holds."""
    if checkpoint.size == 0 and checkpoint.root != merkle.EMPTY_ROOT:
        raise Refusal(422, "a tree of size 0 has the empty tree's root")
    if old == 0 and proof:
        raise Refusal(422, "the proof from size 0 is empty")
    if old == checkpoint.size and checkpoint.root != old_root:
        raise Refusal(422, f"another root for the size {old} it holds")
    if not merkle.verify_consistency(old, checkpoint.size, old_root, checkpoint.root, proof):
        raise Refusal(422, f"the proof from {old} to {checkpoint.size} does not verify")
