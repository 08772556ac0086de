"""Queues the judge's work when a job ends: one judgement per completed answer, one summary.

`engine.jobs.refresh_status` calls `enqueue` in the transaction that ends a job, so a job ends
with its judge work queued or not at all; the dispatchers run it (`portal/judge/labels.py`,
`portal/judge/summary.py`). Nothing here calls a provider.
"""

from __future__ import annotations

from sqlalchemy import delete, exists, select, update

from portal.db import db
from portal.judge.config import JudgeSettings
from portal.judge.models import JobSummary, Judgement
from portal.models import Answer, Execution, Job
from portal.status import RunStatus

PROMPT_VERSION = "judge-v1"
SUMMARY_PROMPT_VERSION = "summary-v1"


def enqueue(job_id: str, setting: JudgeSettings | None) -> int:
    """Queues a judgement for each completed, unjudged answer of an ended job; returns how many.

    Without `[judge]` it does nothing: no row, no call, and every answer's `judgement` is null.
    """
    if setting is None:
        return 0
    answer_ids = db.session.scalars(
        select(Answer.id)
        .join(Execution, Execution.id == Answer.execution_id)
        .where(
            Execution.job_id == job_id,
            Answer.status == RunStatus.COMPLETED,
            ~exists().where(Judgement.answer_id == Answer.id),
        )
        .order_by(Answer.id)
    ).all()
    for answer_id in answer_ids:
        db.session.add(
            Judgement(
                answer_id=answer_id,
                job_id=job_id,
                status=RunStatus.QUEUED,
                attempts=0,
                model_id=setting.model,
                region=setting.region,
                prompt_version=PROMPT_VERSION,
            )
        )
    if answer_ids:
        if setting.summary:
            queue_summary(job_id, setting)
        clear_comparison(job_id)
    return len(answer_ids)


def queue_summary(job_id: str, setting: JudgeSettings) -> None:
    """Queues the job's summary, again from the start when one was already written."""
    values = {
        "status": RunStatus.QUEUED,
        "text": None,
        "reply": None,
        "error": None,
        "attempts": 0,
        "lease_owner": None,
        "lease_expires_at": None,
        "finished_at": None,
        "model_id": setting.model,
        "region": setting.region,
        "prompt_version": SUMMARY_PROMPT_VERSION,
    }
    updated = db.session.execute(
        update(JobSummary).where(JobSummary.job_id == job_id).values(**values)
    )
    if updated.rowcount == 0:
        db.session.add(JobSummary(job_id=job_id, **values))


def requeue_job(job_id: str, setting: JudgeSettings) -> int:
    """Drops a job's judgements and summary and queues them again (`flask beacon judge`)."""
    db.session.execute(delete(Judgement).where(Judgement.job_id == job_id))
    db.session.execute(delete(JobSummary).where(JobSummary.job_id == job_id))
    return enqueue(job_id, setting)


def clear_comparison(job_id: str) -> None:
    """Forgets the job's cached comparison, which carries the judgements."""
    db.session.execute(update(Job).where(Job.id == job_id).values(comparison_cache=None))
