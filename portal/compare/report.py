"""The comparison of a stored job, computed from its answers and cached once the job has ended."""

from __future__ import annotations

import logging

from sqlalchemy import select

from .. import settings
from ..db import db
from ..errors import Invalid
from ..models import Job, iso, with_answers
from .comparison import compare_job
from .rules import rules_version
from .similarity import embedding_model_id, semantic_available

log = logging.getLogger(__name__)


def job_comparison(job: Job, baseline: str | None = None) -> dict:
    """Returns the cross-region comparison of `job` against `baseline` (default: first region)."""
    if baseline is not None and baseline not in job.regions:
        raise Invalid(
            "invalid_parameter",
            f"baseline must be one of the job's regions: {', '.join(job.regions)}",
            {"baseline": baseline},
        )
    # Only an ended job's answers are final; the key changes when a retry ends it again.
    cacheable = job.ended and baseline in (None, job.regions[0])
    semantic = settings.current().semantic and semantic_available()
    key = cache_key(job, semantic)
    cached = job.comparison_cache
    if cacheable and cached and cached.get("key") == key:
        return cached["doc"]
    job_doc = job.to_dict(with_executions=True)
    job_doc["questions"] = [
        {**q, "framing_terms": key["framing"][str(q["index"])]} for q in job_doc["questions"]
    ]
    doc = compare_job(job_doc, baseline=baseline, semantic=semantic)
    changed = store_classes(job, doc) if job.ended else 0
    if cacheable:
        job.comparison_cache = {"key": key, "doc": doc}
    if cacheable or changed:
        db.session.commit()
    return doc


def framing_terms(questions: list[dict]) -> dict[str, list[str]]:
    """Returns {question index as text: the bank's current framing terms} for a job's questions.

    Terms are a reading aid, not part of the signed job: changing them in the bank re-counts
    old jobs too (the cache key holds them), so history compares like with like.
    """
    bank = settings.current().config.questions
    terms = {}
    for question in questions:
        known = bank.get(question.get("id") or "")
        terms[str(question["index"])] = list(known.framing_terms) if known else []
    return terms


def cache_key(job: Job, semantic: bool) -> dict:
    """What a cached comparison depends on besides the answers: when the job ended, the
    measure, the classification rules' version, the embedding model (when semantic) and the
    bank's framing terms of the job's questions."""
    return {
        "finished_at": iso(job.finished_at),
        "semantic": semantic,
        "rules": rules_version(),
        "embedding": embedding_model_id() if semantic else None,
        "framing": framing_terms(job.questions),
    }


def store_classes(job: Job, doc: dict) -> int:
    """Writes the comparison's class of every classified answer onto the stored answer, so the
    API's answers agree with the comparison; returns how many changed."""
    classes = {
        entry["answer_id"]: entry["classification"]
        for model in doc["models"]
        for question in model["questions"]
        for entry in question["answers"]
        if entry["classification"] is not None
    }
    changed = 0
    for execution in job.executions:
        for answer in execution.answers:
            new = classes.get(answer.id)
            if new is not None and answer.classification != new:
                answer.classification = new
                changed += 1
    return changed


def precompute(job_id: str) -> None:
    """Computes and caches an ended job's comparison, so no page view has to wait for it."""
    job = db.session.scalar(select(Job).where(Job.id == job_id).options(with_answers()))
    if job is None or not job.ended:
        return
    try:
        job_comparison(job)
    except Exception:
        # The job itself is done and stored; a comparison that fails here is computed again
        # (and its error shown) when the comparison is first asked for.
        db.session.rollback()
        log.exception("comparison of job %s failed after it ended", job_id)
