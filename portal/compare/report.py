"""The comparison of a stored job, computed from its answers off the event loop and cached.

An ended job's comparison is stored on the job once per baseline region, so asking for any
baseline again reads it back instead of comparing every answer again. The latest comparisons
are also kept in this process, keyed by how far the job has got: polling clients of a running
job share one computation, and views of an ended one skip decoding the stored copy (megabytes
for a big job, decoded on the event loop). The comparison itself runs on an OS thread
(`portal.offload`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from sqlalchemy import func, inspect, select

from portal import offload, settings
from portal.compare.comparison import compare_job
from portal.compare.rules import rules_version
from portal.compare.similarity import embedding_model_id, semantic_available
from portal.db import db
from portal.errors import Invalid
from portal.models import Answer, Execution, Job, with_answers
from portal.times import iso

log = logging.getLogger(__name__)

# Comparisons kept in this process's memory, newest last.
RECENT_KEPT = 8
_recent: OrderedDict = OrderedDict()
_computing: dict = {}
_recent_lock = threading.Lock()


def job_comparison(job: Job, baseline: str | None = None) -> dict:
    """Returns the cross-region comparison of `job` against `baseline` (default: first region)."""
    if baseline is not None and baseline not in job.regions:
        raise Invalid(
            "invalid_parameter",
            f"baseline must be one of the job's regions: {', '.join(job.regions)}",
            {"baseline": baseline},
        )
    default = job.regions[0] if job.regions else None
    baseline = baseline or default
    semantic = settings.current().semantic and semantic_available()
    # Only an ended job's answers are final; the key changes when a retry ends it again.
    key = cache_key(job, semantic)
    memo_key = _memo_key(job, baseline, key)
    with _recent_lock:
        remembered = _recent.get(memo_key)
    if remembered is not None:
        return remembered
    cached = job.comparison_cache if job.ended else None
    if cached and cached.get("key") == key:
        stored = _stored(cached, baseline, default)
        if stored is not None:
            _remember(memo_key, stored)
            return stored
    doc = _computed(job, baseline, semantic, key)
    if job.ended:
        # The answers' stored classes follow the comparison; _store commits both.
        store_classes(job, doc)
        _store(job, cached if cached and cached.get("key") == key else None, key, baseline, doc)
    return doc


def _stored(cached: dict, baseline: str | None, default: str | None) -> dict | None:
    if baseline == default and cached.get("doc") is not None:
        return cached["doc"]
    return (cached.get("baselines") or {}).get(baseline)


def _store(job: Job, cached: dict | None, key: dict, baseline, doc: dict) -> None:
    default = job.regions[0] if job.regions else None
    entry = dict(cached or {"key": key})
    if baseline == default:
        entry["doc"] = doc
    else:
        entry["baselines"] = {**(entry.get("baselines") or {}), baseline: doc}
    # A new dict, so the JSON column sees the change.
    job.comparison_cache = entry
    db.session.commit()


def _progress(job: Job) -> tuple:
    """What changes whenever an answer of the job changes state, or is judged (the comparison
    carries the judge's labels).

    Counted in SQL, per status: a view of a big job finds its comparison without loading its
    answers (issue 26; loading 10,000 answers to key the memo was most of a job page's time).
    An answer's step (queued, running, an attempt, an end) and a judgement's step each change
    a count, a sum or the latest time.
    """
    # The judge's table by name: the compare wing imports no other wing (tests/test_layers.py).
    table = db.metadata.tables["judgements"]
    judgements = table.c
    rows = db.session.execute(
        select(
            Answer.status,
            judgements.status,
            judgements.label,
            func.count(),
            func.sum(Answer.attempts),
            func.max(Answer.finished_at),
            func.max(judgements.finished_at),
        )
        .join(Execution, Answer.execution_id == Execution.id)
        .outerjoin(table, judgements.answer_id == Answer.id)
        .where(Execution.job_id == job.id)
        .group_by(Answer.status, judgements.status, judgements.label)
    ).all()
    # Sorted here: NULLs sort differently on SQLite and PostgreSQL.
    return tuple(sorted(tuple(map(str, row)) for row in rows))


def with_loaded_answers(job: Job) -> Job:
    """Loads the job's executions, answers and judgements into its session (three queries, never
    one per answer) unless they are loaded; a view that needed none of them did not load them."""
    if "executions" in inspect(job).unloaded or any(
        "answers" in inspect(e).unloaded for e in job.executions
    ):
        db.session.scalars(select(Job).where(Job.id == job.id).options(with_answers())).all()
    return job


def _memo_key(job: Job, baseline, key: dict) -> tuple:
    return (job.id, baseline, repr(sorted(key.items())), hash(_progress(job)))


def _remember(memo_key: tuple, doc: dict) -> None:
    with _recent_lock:
        _recent[memo_key] = doc
        _recent.move_to_end(memo_key)
        while len(_recent) > RECENT_KEPT:
            _recent.popitem(last=False)


def _computed(job: Job, baseline, semantic: bool, key: dict) -> dict:
    """Compares the job on an OS thread, once per state of the job in this process."""
    memo_key = _memo_key(job, baseline, key)
    with _recent_lock:
        if memo_key in _recent:
            _recent.move_to_end(memo_key)
            return _recent[memo_key]
        lock = _computing.setdefault(memo_key, threading.Lock())
    # Concurrent requests for the same comparison wait for the first one instead of repeating it.
    with lock:
        with _recent_lock:
            if memo_key in _recent:
                return _recent[memo_key]
        try:
            job_doc = with_loaded_answers(job).to_dict(with_executions=True)
            job_doc["questions"] = with_bank_facts(job_doc["questions"], key)
            doc = offload.run(compare_job, job_doc, baseline=baseline, semantic=semantic)
        finally:
            with _recent_lock:
                _computing.pop(memo_key, None)
        _remember(memo_key, doc)
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


def categories(questions: list[dict]) -> dict[str, str]:
    """Returns {question index as text: the bank's current category} for a job's questions
    ("general" for a literal prompt or an id the bank no longer has): `control` questions are
    the comparison's yardstick, read like the framing terms from the bank of today."""
    bank = settings.current().config.questions
    found = {}
    for question in questions:
        known = bank.get(question.get("id") or "")
        found[str(question["index"])] = known.category if known else "general"
    return found


def with_bank_facts(questions: list[dict], key: dict | None = None) -> list[dict]:
    """A job's questions with the bank's framing terms and category (from `key` when given)."""
    terms = key["framing"] if key else framing_terms(questions)
    kinds = key["categories"] if key else categories(questions)
    return [
        {
            **q,
            "framing_terms": terms[str(q["index"])],
            "category": kinds[str(q["index"])],
        }
        for q in questions
    ]


def cache_key(job: Job, semantic: bool) -> dict:
    """What a cached comparison depends on besides the answers: when the job ended, the
    measure, the classification rules' version, the embedding model (when semantic) and the
    bank's framing terms and categories of the job's questions."""
    return {
        "finished_at": iso(job.finished_at),
        "semantic": semantic,
        "rules": rules_version(),
        "embedding": embedding_model_id() if semantic else None,
        "framing": framing_terms(job.questions),
        "categories": categories(job.questions),
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
    for execution in with_loaded_answers(job).executions:
        for answer in execution.answers:
            new = classes.get(answer.id)
            if new is not None and answer.classification != new:
                answer.classification = new
                changed += 1
    return changed


def precompute(job_id: str) -> None:
    """Computes and caches an ended job's comparison, so no page view has to wait for it.

    All of it runs on the offload's background thread, in an app context (so a database
    session) of its own: loading a big job's answers through the ORM costs as much CPU as
    comparing them, and on the event loop, or queued before the pages and JSON handed to the
    offload, it held back every request of the worker, first of all the poll that reads the
    job `completed` (0.38 s for 900 answers on SQLite, docs/benchmarks.md).
    """
    offload.in_background(settings.in_own_context(_precompute), job_id)


def _precompute(job_id: str) -> None:
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
