"""A question's history (SPEC sections 6, 7 and 11): its answers across jobs, newest job first,
each marked where its class changed or its text drifted from the previous answer of the same
model in the same region and language, or where the prompt it was given changed (a new version
of the wording is a new prompt, never a changed answer).
"""

from __future__ import annotations

from sqlalchemy import and_, or_, select

from portal import compare
from portal.db import db
from portal.errors import NotFound
from portal.models import Answer, Execution, Job
from portal.questions import prompt_version
from portal.status import CLASSIFIED
from portal.times import iso

# Answers that have a result: the ones a history shows.
ENDED = CLASSIFIED
ANSWERED = ("substantive", "refusal", "evasive")
# The text changed when its similarity to the previous answer is below this: the same line
# the comparison draws between regions (1 - DIFFERS_THRESHOLD).
CHANGED_BELOW = round(1 - compare.DIFFERS_THRESHOLD, 4)


def find_question(question_id: str, bank: dict):
    """Returns the bank's question (None for one only stored answers know), or raises
    NotFound: a question is known when it is in the bank or some stored answer carries its id."""
    if question_id in bank:
        return bank[question_id]
    found = db.session.scalar(select(Answer.id).where(Answer.question_id == question_id).limit(1))
    if found is None:
        raise NotFound("question_not_found", f"no question with id {question_id!r}")
    return None


def _base(question_id: str, model_id: str | None, region: str | None, language: str | None):
    query = (
        select(Answer, Execution, Job)
        .join(Execution, Answer.execution_id == Execution.id)
        .join(Job, Execution.job_id == Job.id)
        .where(Answer.question_id == question_id, Answer.status.in_(ENDED))
    )
    if model_id:
        query = query.where(Execution.model_id == model_id)
    if region:
        query = query.where(Execution.region == region)
    if language:
        query = query.where(Answer.language == language)
    return query


def _classify(answer: Answer) -> tuple[str, str]:
    return compare.classify_detail(
        answer.output, status=answer.status, error=answer.error, prompt=answer.prompt or ""
    )


def _previous(question_id: str, cache: dict, answer: Answer, execution: Execution, job: Job):
    """Returns the answer of the nearest older job for the same model, region and language (and
    run)."""
    key = (execution.model_id, execution.region, answer.language, job.pk)
    if key not in cache:
        older = db.session.execute(
            _base(question_id, execution.model_id, execution.region, answer.language)
            .where(Job.pk < job.pk)
            .order_by(Job.pk.desc(), Answer.run)
            .limit(50)
        ).all()
        nearest = [row for row in older if row[2].pk == older[0][2].pk] if older else []
        cache[key] = nearest
    rows = cache[key]
    same_run = [row for row in rows if row[0].run == answer.run]
    return (same_run or rows or [None])[0]


def history(
    question_id: str,
    *,
    model_id: str | None,
    region: str | None,
    language: str | None = None,
    limit: int,
    cursor: tuple[int, int] | None,
) -> tuple[list[dict], str | None]:
    """Returns one page of the question's answers, newest job first, and the next cursor
    (`<job pk>-<answer id>` of the page's last answer)."""
    query = _base(question_id, model_id, region, language)
    if cursor is not None:
        job_pk, answer_id = cursor
        query = query.where(or_(Job.pk < job_pk, and_(Job.pk == job_pk, Answer.id > answer_id)))
    rows = db.session.execute(query.order_by(Job.pk.desc(), Answer.id).limit(limit + 1)).all()
    page, more = rows[:limit], len(rows) > limit
    cache: dict = {}
    items = [_item(question_id, cache, *row) for row in page]
    next_cursor = f"{page[-1][2].pk}-{page[-1][0].id}" if more else None
    return items, next_cursor


def _item(question_id: str, cache: dict, answer: Answer, execution: Execution, job: Job) -> dict:
    classification, rule = _classify(answer)
    item = {
        "job_id": job.id,
        "job_submitted_at": iso(job.submitted_at),
        "answer_id": answer.id,
        "execution_id": execution.id,
        "model_id": execution.model_id,
        "model_name": execution.model_name,
        "region": execution.region,
        "region_name": execution.region_name,
        "question_index": answer.question_index,
        "language": answer.language,
        "prompt": answer.prompt,
        "question_version": version(answer),
        "prompt_changed": False,
        "run": answer.run,
        "status": answer.status,
        "finished_at": iso(answer.finished_at),
        "output_sha256": answer.output_sha256,
        "output": answer.output,
        "error": answer.error,
        "classification": classification,
        "classification_rule": rule,
        "previous_answer_id": None,
        "previous_job_id": None,
        "previous_classification": None,
        "similarity_to_previous": None,
        "class_changed": False,
        "text_changed": False,
    }
    previous = _previous(question_id, cache, answer, execution, job)
    if previous is None:
        return item
    before, _, before_job = previous
    before_class, _ = _classify(before)
    item["previous_answer_id"] = before.id
    item["previous_job_id"] = before_job.id
    item["previous_classification"] = before_class
    # A new wording is a new prompt: what the model said to it is not a changed answer.
    item["prompt_changed"] = version(before) != item["question_version"]
    item["class_changed"] = before_class != classification and not item["prompt_changed"]
    if classification in ANSWERED and before_class in ANSWERED:
        similarity = round(compare.lexical_similarity(before.output or "", answer.output or ""), 4)
        item["similarity_to_previous"] = similarity
        item["text_changed"] = similarity < CHANGED_BELOW and not item["prompt_changed"]
    return item


def version(answer: Answer) -> str:
    """The version of the prompt an answer was given (computed for answers stored before
    versions were: it is the hash of the prompt they keep)."""
    return answer.question_version or prompt_version(answer.prompt or "")
