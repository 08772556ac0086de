"""The comparison of a stored job, computed from its answers and cached once the job has ended."""

from __future__ import annotations

import logging

from sqlalchemy import select

from .. import settings
from ..db import db
from ..errors import ApiError
from ..models import Job, iso, with_answers
from .comparison import compare_job
from .similarity import semantic_available

log = logging.getLogger(__name__)


def job_comparison(job: Job, baseline: str | None = None) -> dict:
    """Returns the cross-region comparison of `job` against `baseline` (default: first region)."""
    if baseline is not None and baseline not in job.regions:
        raise ApiError(
            400,
            "invalid_parameter",
            f"baseline must be one of the job's regions: {', '.join(job.regions)}",
            {"baseline": baseline},
        )
    # Only an ended job's answers are final; the key changes when a retry ends it again.
    cacheable = job.ended and baseline in (None, job.regions[0])
    semantic = settings.current().semantic and semantic_available()
    key = {"finished_at": iso(job.finished_at), "semantic": semantic}
    cached = job.comparison_cache
    if cacheable and cached and cached.get("key") == key:
        return cached["doc"]
    doc = compare_job(job.to_dict(with_executions=True), baseline=baseline, semantic=semantic)
    if cacheable:
        job.comparison_cache = {"key": key, "doc": doc}
        db.session.commit()
    return doc


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
