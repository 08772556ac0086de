"""Jobs, executions, answers, used nonces, admin sessions: the tables and their JSON shapes.

The judge's tables live with the judge (`portal.judge.models`); this module imports them last so
the relationship between an answer and its judgement resolves wherever answers are loaded.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    exists,
    func,
    inspect,
    or_,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, selectinload

from portal.db import UTCDateTime, db
from portal.questions import job_languages

# The vocabulary lives in portal.status; these names stay importable from here.
from portal.status import ACTIVE as ACTIVE
from portal.status import FINISHED as FINISHED
from portal.status import JOB_ENDED as JOB_ENDED
from portal.status import RunStatus
from portal.times import iso, utcnow

if TYPE_CHECKING:
    from portal.judge.models import Judgement


class Job(db.Model):
    __tablename__ = "jobs"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(200), unique=True)
    spec_hash: Mapped[str] = mapped_column(String(64), unique=True)
    spec_raw: Mapped[str] = mapped_column(Text)
    signature_scheme: Mapped[str] = mapped_column(String(32))
    public_key: Mapped[str] = mapped_column(String(64))
    signer_kid: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(16), default="api")
    status: Mapped[str] = mapped_column(String(16), index=True, default=RunStatus.QUEUED)
    models: Mapped[list] = mapped_column(JSON)
    regions: Mapped[list] = mapped_column(JSON)
    questions: Mapped[list] = mapped_column(JSON)
    runs: Mapped[int] = mapped_column(Integer, default=1)
    min_regions: Mapped[int | None] = mapped_column(Integer)
    min_success_rate: Mapped[float | None] = mapped_column(Float)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # USD (SPEC 13): the sum of its answers' known costs so far (null while none is priced),
    # the upper bound computed at submission (null when a price is unknown), and its budget.
    cost_usd: Mapped[float | None] = mapped_column(Float)
    estimated_cost_usd: Mapped[float | None] = mapped_column(Float)
    max_cost_usd: Mapped[float | None] = mapped_column(Float)
    # Deferred: megabytes for a big job, read only by the comparison (portal/compare/report.py).
    comparison_cache: Mapped[dict | None] = mapped_column(JSON, deferred=True)

    executions: Mapped[list[Execution]] = relationship(
        back_populates="job", order_by="Execution.position"
    )

    @property
    def ended(self) -> bool:
        return self.status in JOB_ENDED

    def to_dict(self, counts: dict | None = None, with_executions: bool = False) -> dict:
        """Serializes the job; `counts` from `answer_counts`, executions on request."""
        counts = counts if counts is not None else answer_counts([self.pk]).get(self.pk, {})
        doc = {
            "id": self.id,
            "status": self.status,
            "spec_hash": self.spec_hash,
            "signature_scheme": self.signature_scheme,
            "public_key": self.public_key,
            "signer_kid": self.signer_kid,
            "source": self.source,
            "models": list(self.models),
            "regions": list(self.regions),
            "questions": list(self.questions),
            "languages": job_languages(self.questions),
            "runs": self.runs,
            "constraints": {
                "min_regions": self.min_regions,
                "min_success_rate": self.min_success_rate,
                "max_cost_usd": self.max_cost_usd,
            },
            "cost_usd": self.cost_usd,
            "estimated_cost_usd": self.estimated_cost_usd,
            "counts": counts,
            "meets_constraints": meets_constraints(self, counts) if self.ended else None,
            "submitted_at": iso(self.submitted_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "deadline_at": iso(self.deadline_at),
            "cancel_requested": self.cancel_requested_at is not None,
        }
        if with_executions:
            doc["executions"] = [e.to_dict(with_answers=True) for e in self.executions]
        return doc


class Execution(db.Model):
    __tablename__ = "executions"
    __table_args__ = (UniqueConstraint("job_id", "model_id", "region"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    model_id: Mapped[str] = mapped_column(String(200), index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_icon: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(100), index=True)
    region_name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(16))
    provider_model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True, default=RunStatus.QUEUED)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Indexed: the receipt sweep looks for recently ended executions (provenance/receipts.py).
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    error: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="executions")
    answers: Mapped[list[Answer]] = relationship(
        # Within a question, the order they were stored in: language by language, runs in order.
        back_populates="execution",
        order_by="(Answer.question_index, Answer.id)",
    )

    def to_dict(self, with_answers: bool = False) -> dict:
        """Serializes the execution; every execution carries model_id, model_name and region."""
        doc = {
            "id": self.id,
            "job_id": self.job_id,
            "model_id": self.model_id,
            "model_name": self.model_name,
            "model_icon": self.model_icon,
            "region": self.region,
            "region_name": self.region_name,
            "provider": self.provider,
            "provider_model": self.provider_model,
            "status": self.status,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "error": self.error,
        }
        if with_answers:
            doc["answers"] = [a.to_dict() for a in self.answers]
        return doc


class Answer(db.Model):
    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("execution_id", "question_index", "language", "run"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    execution_id: Mapped[int] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), index=True
    )
    question_index: Mapped[int] = mapped_column(Integer)
    question_id: Mapped[str | None] = mapped_column(String(200))
    prompt: Mapped[str] = mapped_column(Text)
    # The language the prompt was asked in (BCP 47; "und" for a literal prompt) and the
    # version of that prompt's text (SPEC section 11): answers keep the wording they were given.
    language: Mapped[str] = mapped_column(String(35), default="en", server_default="en")
    question_version: Mapped[str | None] = mapped_column(String(12))
    run: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), index=True, default=RunStatus.QUEUED)
    output: Mapped[str | None] = mapped_column(Text)
    output_sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str | None] = mapped_column(String(16))
    provider_model: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    # From the tokens the provider reported and the price; null without either (portal/prices.py).
    cost_usd: Mapped[float | None] = mapped_column(Float)
    classification: Mapped[str | None] = mapped_column(String(32))
    # What the provider said about itself with this answer (portal/providers/served_by.py).
    served_by: Mapped[dict | None] = mapped_column(JSON)

    execution: Mapped[Execution] = relationship(back_populates="answers")
    judgement: Mapped[Judgement | None] = relationship()

    def to_dict(self) -> dict:
        """Serializes the answer with its timings and classification."""
        return {
            "id": self.id,
            "execution_id": self.execution_id,
            "question_index": self.question_index,
            "question_id": self.question_id,
            "prompt": self.prompt,
            "language": self.language,
            "question_version": self.question_version,
            "run": self.run,
            "status": self.status,
            "output": self.output,
            "output_sha256": self.output_sha256,
            "error": self.error,
            "attempts": self.attempts,
            "provider": self.provider,
            "provider_model": self.provider_model,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "latency_ms": self.latency_ms,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "classification": self.classification,
            "served_by": self.served_by or {},
            "judgement": self.judgement_dict(),
        }

    def judgement_dict(self) -> dict | None:
        """Returns the judge's label for this answer, or None (no judge, or not judged)."""
        # Only a completed answer is ever judged: for the others (a whole new job, say), an
        # unloaded relationship is known to be empty without a query per answer.
        if self.status != RunStatus.COMPLETED and "judgement" in inspect(self).unloaded:
            return None
        return self.judgement.to_dict(self.classification) if self.judgement else None


class UsedNonce(db.Model):
    """A `metadata.nonce` already used by a key; unique per key (SPEC section 4)."""

    __tablename__ = "used_nonces"

    public_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(200), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AdminSession(db.Model):
    """A signed-in admin session of the web pages; logging out deletes it (docs/security.md)."""

    __tablename__ = "admin_sessions"

    # SHA-256 of the random id the session cookie holds: the table alone signs nobody in.
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


def with_answers():
    """Loader option for a whole job: its executions and their answers in two more queries."""
    # Relationships load lazily by default, so the engine's and the listings' queries read
    # only the rows they use; a view that serializes a whole job asks for this instead.
    return (
        selectinload(Job.executions).selectinload(Execution.answers).selectinload(Answer.judgement)
    )


def answer_counts(job_pks: list[int]) -> dict[int, dict]:
    """Counts answers by status for each job in one query: {job_pk: {"total", "queued", ...}}."""
    if not job_pks:
        return {}
    rows = db.session.execute(
        select(Job.pk, Answer.status, func.count(Answer.id))
        .join(Execution, Execution.job_id == Job.id)
        .join(Answer, Answer.execution_id == Execution.id)
        .where(Job.pk.in_(job_pks))
        .group_by(Job.pk, Answer.status)
    ).all()
    counts = {pk: {"total": 0, **{s.value: 0 for s in RunStatus}} for pk in job_pks}
    for pk, status, n in rows:
        counts[pk][status] = n
        counts[pk]["total"] += n
    return counts


def claimable(now: datetime):
    """SQL predicate: an execution a dispatcher may lease, queued or left by a stopped worker."""
    return or_(
        Execution.status == RunStatus.QUEUED,
        and_(
            Execution.status == RunStatus.RUNNING,
            or_(Execution.lease_expires_at.is_(None), Execution.lease_expires_at < now),
        ),
    )


def has_active_executions(job_id: str) -> bool:
    """True while any execution of the job is queued or running."""
    return bool(
        db.session.scalar(
            select(exists().where(Execution.job_id == job_id, Execution.status.in_(ACTIVE)))
        )
    )


def meets_constraints(job: Job, counts: dict) -> bool:
    """Says whether a finished job met its `min_regions` and `min_success_rate`."""
    total = counts.get("total", 0)
    rate = counts.get(RunStatus.COMPLETED, 0) / total if total else 0.0
    if job.min_success_rate is not None and rate < job.min_success_rate:
        return False
    if job.min_regions:
        regions_ok = {e.region for e in job.executions if e.status == RunStatus.COMPLETED}
        if len(regions_ok) < job.min_regions:
            return False
    return total > 0


# Registers the judge's tables, which `Answer.judgement` names (see the module docstring).
from portal.judge import models as _judge_models  # noqa: E402,F401
