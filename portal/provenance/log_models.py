"""The provenance tables: signed receipts, the Merkle log's stored subtree hashes, its head,
and the receipts waiting for the log to take appends again."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import UTCDateTime, db
from portal.times import iso, utcnow


class Receipt(db.Model):
    """One signed receipt of an execution's end; its row is also its entry in the log.

    `seq` counts the ends of one execution (a retried execution ends again and gets a new
    receipt); (execution_id, seq) is unique, so two workers racing to issue the same receipt
    leave one row. `body` is the exact JCS text that was signed and hashed into the log.
    """

    __tablename__ = "receipts"
    __table_args__ = (UniqueConstraint("execution_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    execution_id: Mapped[int] = mapped_column(ForeignKey("executions.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    log_index: Mapped[int] = mapped_column(Integer, unique=True)
    body: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(100))
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    late: Mapped[bool] = mapped_column(Boolean, default=False)

    def to_dict(self) -> dict:
        """Serializes the row's bookkeeping (the receipt itself is `body`)."""
        return {
            "id": self.id,
            "execution_id": self.execution_id,
            "seq": self.seq,
            "log_index": self.log_index,
            "issued_at": iso(self.issued_at),
            "late": self.late,
        }


class LogNode(db.Model):
    """The hash of a perfect subtree: leaves [idx * 2**level, (idx + 1) * 2**level)."""

    __tablename__ = "log_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogHead(db.Model):
    """The log's one head row: its size and root, written with every append."""

    __tablename__ = "log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReceiptWait(db.Model):
    """An ended execution whose receipt the log could not take: the sweep appends it later.

    Written in the transaction that ends the execution when the append failed (or after a
    failed `issue`), and deleted in the transaction that appends the receipt. Its rows are what
    `/ready` and `beacon_receipts_waiting` report (portal/provenance/waiting.py).
    """

    __tablename__ = "receipt_waits"

    execution_id: Mapped[int] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
    )
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
