"""The watch's tables: one row per schedule slot, the changes found between runs, which ended
jobs were compared, and the webhook deliveries of each change (SPEC section 12)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import UTCDateTime, db
from portal.times import iso, utcnow


class ScheduleRun(db.Model):
    """One job a schedule submitted: per slot (unique, so one per slot across every process
    and instance), or asked for by hand (`slot_at` null)."""

    __tablename__ = "schedule_runs"
    __table_args__ = (UniqueConstraint("schedule", "slot_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule: Mapped[str] = mapped_column(String(100), index=True)
    # The UTC start of the slot; null for a run asked for by hand.
    slot_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # No foreign key: the slot row is written first, as the claim, in the transaction that then
    # stores the job (portal/watch/schedules.py).
    job_id: Mapped[str | None] = mapped_column(String(200), index=True)
    # Why the slot has no job: its JobSpec was refused (the slot is still taken, once).
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self) -> dict:
        """Serializes one run of a schedule."""
        return {
            "schedule": self.schedule,
            "slot_at": iso(self.slot_at, "seconds"),
            "job_id": self.job_id,
            "error": self.error,
            "created_at": iso(self.created_at),
        }


class Change(db.Model):
    """An answer that differs from the newest earlier answer to the same question, in the same
    language and version, by the same model in the same region (SPEC section 12)."""

    __tablename__ = "changes"
    # Recomputing a job's changes adds nothing: one row per answer and kind.
    __table_args__ = (UniqueConstraint("answer_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    question_id: Mapped[str] = mapped_column(String(200), index=True)
    question_index: Mapped[int] = mapped_column(Integer)
    language: Mapped[str] = mapped_column(String(35))
    question_version: Mapped[str | None] = mapped_column(String(12))
    model_id: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(100))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    answer_id: Mapped[int] = mapped_column(ForeignKey("answers.id", ondelete="CASCADE"))
    previous_job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    previous_answer_id: Mapped[int] = mapped_column(ForeignKey("answers.id", ondelete="CASCADE"))
    from_class: Mapped[str | None] = mapped_column(String(32))
    to_class: Mapped[str | None] = mapped_column(String(32))
    from_label: Mapped[str | None] = mapped_column(String(16))
    to_label: Mapped[str | None] = mapped_column(String(16))
    similarity: Mapped[float | None] = mapped_column(Float)
    measure: Mapped[str] = mapped_column(String(16), default="lexical")
    from_served: Mapped[dict | None] = mapped_column(JSON)
    to_served: Mapped[dict | None] = mapped_column(JSON)

    def to_dict(self) -> dict:
        """Serializes the change as the API, the feed and the webhooks give it."""
        return {
            "id": self.id,
            "detected_at": iso(self.detected_at),
            "kind": self.kind,
            "question_id": self.question_id,
            "question_index": self.question_index,
            "language": self.language,
            "question_version": self.question_version,
            "model_id": self.model_id,
            "region": self.region,
            "job_id": self.job_id,
            "answer_id": self.answer_id,
            "previous_job_id": self.previous_job_id,
            "previous_answer_id": self.previous_answer_id,
            "from_class": self.from_class,
            "to_class": self.to_class,
            "from_label": self.from_label,
            "to_label": self.to_label,
            "similarity": self.similarity,
            "measure": self.measure,
            "from_served": self.from_served,
            "to_served": self.to_served,
        }


class ChangeScan(db.Model):
    """An ended job whose answers were compared with the earlier ones (or are being compared:
    a lease, as for executions, so one process compares it and a stopped one hands it on)."""

    __tablename__ = "change_scans"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    # The job's finished_at when it was compared: a retried job ends again and is compared again.
    job_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scanned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # True once the judge has labelled the job's answers (or there is no judge): label
    # changes are looked for again until then.
    labels_done: Mapped[bool] = mapped_column(Boolean, default=False)


class DeliveryStatus(StrEnum):
    """Where a webhook delivery stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Delivery(db.Model):
    """One change to POST to the webhook, retried with backoff until delivered or given up."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change_id: Mapped[int] = mapped_column(
        ForeignKey("changes.id", ondelete="CASCADE"), unique=True
    )
    # The Standard Webhooks `webhook-id`: the same on every attempt, so receivers can dedupe.
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Every attempt: [{"at", "status_code", "error", "ms"}], oldest first.
    history: Mapped[list | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def to_dict(self) -> dict:
        """Serializes the delivery for the admin's page (never the URL: it is not stored)."""
        return {
            "id": self.id,
            "change_id": self.change_id,
            "message_id": self.message_id,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": iso(self.next_attempt_at),
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "history": list(self.history or []),
            "created_at": iso(self.created_at),
            "delivered_at": iso(self.delivered_at),
        }
