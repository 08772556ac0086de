"""A big job's answers a page at a time (docs/api.md: "Answers of big jobs").

A job document carries every answer inline while the job is small. Past `INLINE_ANSWERS`
answers or `INLINE_CHARS` characters of output, its executions come without `answers` and the
job says where to page through them: `GET /api/v1/jobs/<id>/answers?limit=&cursor=`.
"""

from __future__ import annotations

import re

from flask import jsonify, request, url_for
from sqlalchemy import select

from portal.db import db
from portal.errors import ApiError
from portal.models import Answer, Execution, Job
from portal.web.api.blueprint import bp

INLINE_ANSWERS = 100
INLINE_CHARS = 1_000_000
MAX_LIMIT = 200
_DIGITS = re.compile(r"[0-9]{1,18}")


def job_document(job: Job) -> dict:
    """Serializes a job with its executions; answers inline only while the job is small."""
    doc = job.to_dict(with_executions=True)
    answers = [a for e in doc["executions"] for a in e["answers"]]
    chars = sum(len(a["output"] or "") + len(a["error"] or "") for a in answers)
    if len(answers) <= INLINE_ANSWERS and chars <= INLINE_CHARS:
        return doc
    for execution in doc["executions"]:
        del execution["answers"]
    doc["answers_page"] = {
        "total": len(answers),
        "url": url_for("api.list_job_answers", job_id=job.id),
    }
    return doc


@bp.get("/jobs/<job_id>/answers")
def list_job_answers(job_id: str):
    """Lists one job's answers in execution order, a page at a time, with a cursor."""
    if db.session.scalar(select(Job.pk).where(Job.id == job_id)) is None:
        raise ApiError(404, "job_not_found", f"no job with id {job_id!r}")
    limit, cursor = _page_args()
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
    return jsonify(items=items, next=str(page[-1][0].id) if more else None)


def _page_args() -> tuple[int, int | None]:
    raw_limit = request.args.get("limit", "50")
    raw_cursor = request.args.get("cursor")
    if not _DIGITS.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise ApiError(
            400, "invalid_parameter", f"limit must be 1 to {MAX_LIMIT}", {"limit": raw_limit}
        )
    if raw_cursor is not None and not _DIGITS.fullmatch(raw_cursor):
        raise ApiError(
            400, "invalid_parameter", "cursor must be a value from `next`", {"cursor": raw_cursor}
        )
    return int(raw_limit), int(raw_cursor) if raw_cursor is not None else None
