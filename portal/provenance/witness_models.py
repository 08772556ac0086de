"""The witness tables in the portal's database: the cosignatures it holds, and per witness the
size it last cosigned and who is asking it now (portal/provenance/cosigning.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import UTCDateTime, db
from portal.times import iso, utcnow


class Cosignature(db.Model):
    """One witness's cosignature/v1 of the checkpoint of one tree (size and root).

    `line` is the signature line exactly as the witness answered it (with its newline), served
    after the portal's own line in the checkpoint note; `timestamp` is the one it signed.
    """

    __tablename__ = "cosignatures"
    __table_args__ = (UniqueConstraint("witness", "tree_size", "root_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    witness: Mapped[str] = mapped_column(String(200))
    tree_size: Mapped[int] = mapped_column(Integer, index=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    timestamp: Mapped[int] = mapped_column(BigInteger)
    line: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self) -> dict:
        """Serializes the row (the root as the checkpoint writes it is not needed by callers)."""
        return {
            "witness": self.witness,
            "tree_size": self.tree_size,
            "timestamp": self.timestamp,
            "line": self.line,
            "created_at": iso(self.created_at),
        }


class WitnessState(db.Model):
    """What the portal knows of one configured witness, and the lease of the process asking it.

    `cosigned_size`/`cosigned_root` are the last tree it cosigned for this log (the `old` of the
    next request); `witness_size` is the size it last said it holds (a 409 names it). A process
    asks a witness only while it holds the lease (`lease_owner` until `lease_expires_at`), so
    two workers do not race for the same witness; `retry_at` spaces out attempts after failures.
    """

    __tablename__ = "witness_state"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    cosigned_size: Mapped[int] = mapped_column(Integer, default=0)
    cosigned_root: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    witness_size: Mapped[int | None] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
