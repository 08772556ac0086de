"""The judge's tables (SPEC section 8): a label per completed answer, a summary per job."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import UTCDateTime, db
from portal.judge.config import agrees
from portal.status import RunStatus
from portal.times import iso, utcnow


class Judgement(db.Model):
    """The judge model's label for one completed answer (SPEC section 8); not an answer."""

    __tablename__ = "judgements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    answer_id: Mapped[int] = mapped_column(
        ForeignKey("answers.id", ondelete="CASCADE"), unique=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default=RunStatus.QUEUED)
    label: Mapped[str | None] = mapped_column(String(16))
    reply: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    model_id: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(100))
    prompt_version: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    latency_ms: Mapped[int | None] = mapped_column(Integer)

    def to_dict(self, classification: str | None = None) -> dict:
        """Serializes the judgement; `agrees` compares its label with the rule class."""
        return {
            "label": self.label,
            "model_id": self.model_id,
            "region": self.region,
            "prompt_version": self.prompt_version,
            "status": self.status,
            "agrees": agrees(self.label, classification),
            "reply": self.reply,
            "error": self.error,
            "finished_at": iso(self.finished_at),
        }


class JobSummary(db.Model):
    """A short machine-written summary of one job by the judge model, citing answer ids."""

    __tablename__ = "job_summaries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default=RunStatus.QUEUED)
    text: Mapped[str | None] = mapped_column(Text)
    reply: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    model_id: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(100))
    prompt_version: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def to_dict(self) -> dict:
        """Serializes a written summary as `GET /api/v1/jobs/<id>/summary` serves it."""
        return {
            "text": self.text,
            "model_id": self.model_id,
            "region": self.region,
            "prompt_version": self.prompt_version,
            "created_at": iso(self.finished_at or self.created_at),
        }
