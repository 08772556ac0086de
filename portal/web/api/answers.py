"""A big job's answers a page at a time (docs/api.md: "Answers of big jobs").

A job document carries every answer inline while the job is small. Past `INLINE_ANSWERS`
answers or `INLINE_CHARS` characters of output, its executions come without `answers` and the
job says where to page through them: `GET /api/v1/jobs/<id>/answers?limit=&cursor=`.
"""

from __future__ import annotations

from flask import request, url_for
from sqlalchemy import func, select

from portal.db import db
from portal.engine.jobs import find_job
from portal.models import Answer, Execution, Job, with_answers
from portal.web import paging, rendering
from portal.web.api.blueprint import bp

INLINE_ANSWERS = 100
INLINE_CHARS = 1_000_000


def job_document(job: Job) -> dict:
    """Serializes a job with its executions; answers inline only while the job is small."""
    # Sized in SQL first (issue 26): a big job's answers are never loaded only to be left out.
    total, chars = db.session.execute(
        select(
            func.count(Answer.id),
            func.coalesce(
                func.sum(
                    func.coalesce(func.length(Answer.output), 0)
                    + func.coalesce(func.length(Answer.error), 0)
                ),
                0,
            ),
        )
        .join(Execution, Answer.execution_id == Execution.id)
        .where(Execution.job_id == job.id)
    ).one()
    if total <= INLINE_ANSWERS and chars <= INLINE_CHARS:
        # Loaded in three queries whatever `job` came with (lazily: one per answer's judgement).
        db.session.scalars(select(Job).where(Job.id == job.id).options(with_answers())).all()
        return job.to_dict(with_executions=True)
    doc = job.to_dict()
    doc["executions"] = [e.to_dict() for e in job.executions]
    doc["answers_page"] = {
        "total": total,
        "url": url_for("api.list_job_answers", job_id=job.id),
    }
    return doc


@bp.get("/jobs/<job_id>/answers")
def list_job_answers(job_id: str):
    """Lists one job's answers in execution order, a page at a time, with a cursor."""
    find_job(job_id, load_answers=False)
    limit, cursor = paging.page_args(request.args, column=Answer.id)
    query = (
        select(Answer, Execution.model_id, Execution.region)
        .join(Execution, Answer.execution_id == Execution.id)
        .where(Execution.job_id == job_id)
        .order_by(Answer.id)
    )
    if cursor is not None:
        query = query.where(Answer.id > cursor)
    rows = db.session.execute(query.limit(limit + 1)).all()
    page, more = rows[:limit], len(rows) > limit
    items = [{**a.to_dict(), "model_id": model, "region": region} for a, model, region in page]
    doc = {"items": items, "next": str(page[-1][0].id) if more else None}
    return rendering.json_response(lambda: doc)
