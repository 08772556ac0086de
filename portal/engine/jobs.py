"""A job's life outside the provider calls: status from its answers, cancel, retry, deadlines.

Every function here works on the session in context and never commits; the caller (a view, a
dispatcher task, a CLI command) commits once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists, select, update

from portal import settings
from portal.config import BeaconConfig
from portal.db import column_max, db
from portal.engine import wake
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
from portal.provenance import receipts
from portal.status import JobStatus, RunStatus
from portal.times import utcnow

DEADLINE_PASSED = "job deadline passed"


def lock_job(job_id: str) -> None:
    """Takes the job's row lock (PostgreSQL) or the database write lock (SQLite) until commit."""
    # A no-op write is the one lock both databases honour: the reads that follow see every
    # answer committed before it, so two executions finishing at once cannot overwrite each
    # other's view of the job.
    db.session.execute(update(Job).where(Job.id == job_id).values(status=Job.status))


def find_job(job_id: str, *, load_answers: bool = True) -> Job:
    """Loads a job (with its executions and answers unless told not to) by id, or raises
    NotFound job_not_found."""
    query = select(Job).where(Job.id == job_id)
    job = db.session.scalar(query.options(with_answers()) if load_answers else query)
    if job is None:
        raise NotFound("job_not_found", f"no job with id {job_id!r}")
    return job


def find_execution(execution_id: int) -> Execution:
    """Loads an execution by id, or raises NotFound execution_not_found."""
    # An id beyond the column's range cannot exist, and the database driver would overflow on it.
    in_range = 0 <= execution_id <= column_max(Execution.id)
    found = db.session.get(Execution, execution_id) if in_range else None
    if found is None:
        raise NotFound("execution_not_found", f"no execution with id {execution_id}")
    return found


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
    # Asked first: every execution's end calls this, and only the last one needs the counts
    # (an aggregate over all the job's answers).
    if has_active_executions(job_id):
        return job.status
    counts = answer_counts([job.pk])[job.pk]
    if counts["queued"] or counts["running"]:
        return job.status
    if job.cancel_requested_at is not None:
        status = RunStatus.CANCELLED
    elif counts["total"] and counts["completed"] == counts["total"]:
        status = RunStatus.COMPLETED
    elif counts["completed"]:
        status = JobStatus.PARTIAL
    else:
        status = RunStatus.FAILED
    if job.status != status or job.finished_at is None:
        job.status = status
        job.finished_at = now or utcnow()
        # The job ends with its judge work queued, in the same transaction (portal/judge/labels.py).
        judge_queue.enqueue(job_id, settings.current().config.judge)
    return status


def mark_started(job_id: str, now: datetime) -> None:
    """Moves a queued job to running the first time one of its executions starts."""
    db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=RunStatus.RUNNING, started_at=now)
    )


def cancel_job(job: Job, now: datetime | None = None) -> Job:
    """Cancels a job: queued work stops at once, in-flight calls end when they return."""
    now = now or utcnow()
    if job.status == JobStatus.CANCELLED:
        return job
    if job.ended:
        raise Conflict(
            "job_ended", f"job {job.id!r} already ended ({job.status}); nothing to cancel"
        )
    lock_job(job.id)
    job.cancel_requested_at = now
    job.status = JobStatus.CANCELLED
    ids = select(Execution.id).where(Execution.job_id == job.id)
    db.session.execute(
        update(Answer)
        .where(Answer.execution_id.in_(ids), Answer.status == RunStatus.QUEUED)
        .values(
            status=RunStatus.CANCELLED,
            error="cancelled before it was asked",
            classification="technical_failure",
        )
    )
    db.session.execute(
        update(Execution)
        .where(Execution.job_id == job.id, Execution.status == RunStatus.QUEUED)
        .values(status=RunStatus.CANCELLED, finished_at=now, error="cancelled")
    )
    refresh_status(job.id, now)
    return job


def cancel(job_id: str) -> Job:
    """Cancels a job and commits; the executions the cancel ended get their receipts. The one
    cancel the API and the pages both call."""
    job = cancel_job(find_job(job_id))
    db.session.commit()
    receipts.issue_for_job(job.id)  # a cancel ends executions: their receipts (SPEC section 9)
    return job


def retry(job_id: str, config: BeaconConfig) -> tuple[Job, int]:
    """Queues a job's failed answers again and commits; returns the job and how many. The one
    retry the API and the pages both call."""
    job = find_job(job_id)
    requeued = retry_job(job, config)
    db.session.commit()
    wake.new_work()
    return job, requeued


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
        Answer.status == RunStatus.FAILED,
    )
    execution_ids = sorted(set(db.session.scalars(failed)))
    if not execution_ids:
        raise Conflict("nothing_to_retry", f"job {job.id!r} has no failed answers")
    result = db.session.execute(
        update(Answer)
        .where(Answer.execution_id.in_(execution_ids), Answer.status == RunStatus.FAILED)
        .values(
            status=RunStatus.QUEUED,
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
            status=RunStatus.QUEUED,
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
    job.status = JobStatus.QUEUED
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
                    status=RunStatus.FAILED,
                    error=DEADLINE_PASSED,
                    finished_at=now,
                    classification="technical_failure",
                )
            )
            db.session.execute(
                update(Execution)
                .where(Execution.id.in_(ids))
                .values(
                    status=RunStatus.FAILED,
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
