"""A job's life outside the provider calls: status from its answers, cancel, retry, deadlines.

Every function here works on the session in context and never commits; the caller (a view, a
dispatcher task, a CLI command) commits once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists, select, update

from portal import settings
from portal.config import BeaconConfig
from portal.db import db
from portal.errors import Conflict, NotFound
from portal.judge import queue as judge_queue
from portal.models import (
    ACTIVE,
    JOB_ENDED,
    Answer,
    Execution,
    Job,
    answer_counts,
    claimable,
    has_active_executions,
    with_answers,
)
from portal.times import utcnow

DEADLINE_PASSED = "job deadline passed"


def lock_job(job_id: str) -> None:
    """Takes the job's row lock (PostgreSQL) or the database write lock (SQLite) until commit."""
    # A no-op write is the one lock both databases honour: the reads that follow see every
    # answer committed before it, so two executions finishing at once cannot overwrite each
    # other's view of the job.
    db.session.execute(update(Job).where(Job.id == job_id).values(status=Job.status))


def find_job(job_id: str) -> Job:
    """Loads a job with its executions and answers by id or raises 404 job_not_found."""
    job = db.session.scalar(select(Job).where(Job.id == job_id).options(with_answers()))
    if job is None:
        raise NotFound("job_not_found", f"no job with id {job_id!r}")
    return job


def load_job(job_id: str) -> Job | None:
    """Returns the job as the database has it now, not as this session last saw it."""
    # Only the job's own row (relationships load lazily): the engine calls this per answer.
    return db.session.scalar(
        select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
    )


def job_state(job_id: str):
    """Returns the job's `cancel_requested_at` and `deadline_at` as the database has them now."""
    # Two columns, not the row: the engine asks before every call, and the row carries the
    # whole signed spec as JSON.
    return db.session.execute(
        select(Job.cancel_requested_at, Job.deadline_at).where(Job.id == job_id)
    ).one()


def refresh_status(job_id: str, now: datetime | None = None) -> str | None:
    """Derives the job's status from its answers and executions; ends it when nothing is left."""
    lock_job(job_id)
    job = load_job(job_id)
    if job is None:
        return None
    still_active = has_active_executions(job_id)
    counts = answer_counts([job.pk])[job.pk]
    if still_active or counts["queued"] or counts["running"]:
        return job.status
    if job.cancel_requested_at is not None:
        status = "cancelled"
    elif counts["total"] and counts["completed"] == counts["total"]:
        status = "completed"
    elif counts["completed"]:
        status = "partial"
    else:
        status = "failed"
    if job.status != status or job.finished_at is None:
        job.status = status
        job.finished_at = now or utcnow()
        # The job ends with its judge work queued, in the same transaction (portal/judge.py).
        judge_queue.enqueue(job_id, settings.current().config.judge)
    return status


def mark_started(job_id: str, now: datetime) -> None:
    """Moves a queued job to running the first time one of its executions starts."""
    db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="running", started_at=now)
    )


def cancel_job(job: Job, now: datetime | None = None) -> Job:
    """Cancels a job: queued work stops at once, in-flight calls end when they return."""
    now = now or utcnow()
    if job.status == "cancelled":
        return job
    if job.ended:
        raise Conflict(
            "job_ended", f"job {job.id!r} already ended ({job.status}); nothing to cancel"
        )
    lock_job(job.id)
    job.cancel_requested_at = now
    job.status = "cancelled"
    ids = select(Execution.id).where(Execution.job_id == job.id)
    db.session.execute(
        update(Answer)
        .where(Answer.execution_id.in_(ids), Answer.status == "queued")
        .values(
            status="cancelled",
            error="cancelled before it was asked",
            classification="technical_failure",
        )
    )
    db.session.execute(
        update(Execution)
        .where(Execution.job_id == job.id, Execution.status == "queued")
        .values(status="cancelled", finished_at=now, error="cancelled")
    )
    refresh_status(job.id, now)
    return job


def retry_job(job: Job, config: BeaconConfig, now: datetime | None = None) -> int:
    """Queues a job's failed answers (and their executions) again; returns how many."""
    now = now or utcnow()
    if not job.ended or has_active_executions(job.id):
        raise Conflict(
            "job_not_ended",
            f"job {job.id!r} is still {job.status}; retry once it has ended",
        )
    lock_job(job.id)
    failed = select(Answer.execution_id).where(
        Answer.execution_id.in_(select(Execution.id).where(Execution.job_id == job.id)),
        Answer.status == "failed",
    )
    execution_ids = sorted(set(db.session.scalars(failed)))
    if not execution_ids:
        raise Conflict("nothing_to_retry", f"job {job.id!r} has no failed answers")
    result = db.session.execute(
        update(Answer)
        .where(Answer.execution_id.in_(execution_ids), Answer.status == "failed")
        .values(
            status="queued",
            output=None,
            output_sha256=None,
            error=None,
            attempts=0,
            provider=None,
            provider_model=None,
            started_at=None,
            finished_at=None,
            latency_ms=None,
            prompt_tokens=None,
            completion_tokens=None,
            cost_usd=None,
            classification=None,
        )
    )
    db.session.execute(
        update(Execution)
        .where(Execution.id.in_(execution_ids))
        .values(
            status="queued",
            lease_owner=None,
            lease_expires_at=None,
            finished_at=None,
            error=None,
        )
    )
    allowed = (
        job.deadline_at - job.submitted_at
        if job.deadline_at and job.submitted_at
        else timedelta(seconds=config.execution.job_timeout_s)
    )
    job.status = "queued"
    job.finished_at = None
    job.cancel_requested_at = None
    job.deadline_at = now + allowed
    job.comparison_cache = None
    return result.rowcount


def end_overdue(now: datetime | None = None) -> list[str]:
    """Fails the unleased work of jobs past their deadline and ends those jobs; returns ids."""
    now = now or utcnow()
    overdue = db.session.scalars(
        select(Job.id).where(Job.status.in_(ACTIVE), Job.deadline_at < now)
    ).all()
    for job_id in overdue:
        lock_job(job_id)
        # A live lease means a worker is still on it; that worker sees the deadline itself.
        unleased = select(Execution.id).where(Execution.job_id == job_id, claimable(now))
        ids = list(db.session.scalars(unleased))
        if ids:
            db.session.execute(
                update(Answer)
                .where(Answer.execution_id.in_(ids), Answer.status.in_(ACTIVE))
                .values(
                    status="failed",
                    error=DEADLINE_PASSED,
                    finished_at=now,
                    classification="technical_failure",
                )
            )
            db.session.execute(
                update(Execution)
                .where(Execution.id.in_(ids))
                .values(
                    status="failed",
                    error=DEADLINE_PASSED,
                    finished_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
        refresh_status(job_id, now)
    return list(overdue)


def settle_orphans(now: datetime | None = None) -> list[str]:
    """Ends active jobs whose executions have all finished (a worker stopped between commits)."""
    rows = db.session.scalars(
        select(Job.id).where(
            Job.status.in_(ACTIVE),
            ~exists().where(Execution.job_id == Job.id, Execution.status.in_(ACTIVE)),
            exists().where(Execution.job_id == Job.id),
        )
    ).all()
    ended = []
    for job_id in rows:
        if refresh_status(job_id, now) in JOB_ENDED:
            ended.append(job_id)
    return ended
