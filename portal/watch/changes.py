"""Changes between runs (SPEC section 12): each completed answer of an ended job against the
newest earlier completed answer to the same question, in the same language and prompt version,
by the same model in the same region, from any other job.

One answer gets at most one change about what it says, the first that holds of:
- `class`: the rule-based class differs;
- `label`: the judge's label differs (both answers labelled);
- `text`: the two texts are less alike than `[watch] similarity_threshold`, and less alike than
  the earlier job's own repeats of that answer were to each other (when it had runs > 1);
and beside it at most one `served_by` change: the model name the provider answered as, or its
`system_fingerprint`, differs (a silent update behind a stable name). Every row is unique per
(answer, kind) and inserted with ON CONFLICT DO NOTHING, so comparing a job again adds nothing.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from datetime import datetime
from itertools import combinations

from sqlalchemy import and_, desc, select
from sqlalchemy.dialects import postgresql, sqlite

from portal import offload, settings
from portal.compare.similarity import Similarity, semantic_available
from portal.db import db
from portal.judge.config import LABELS
from portal.judge.models import Judgement
from portal.models import Answer, Execution
from portal.status import RunStatus
from portal.times import utcnow
from portal.watch.config import WatchSettings
from portal.watch.models import Change, Delivery

KINDS = ("class", "label", "text", "served_by")
CONTENT_KINDS = KINDS[:3]
# What a provider says about itself that names the model behind the answer.
SERVED_FIELDS = ("model", "system_fingerprint")


def detect(job_id: str, watch: WatchSettings | None = None, now: datetime | None = None) -> list:
    """Stores the changes of one ended job's answers; returns the rows it added (not committed)."""
    watch = watch or settings.current().config.watch
    now = now or utcnow()
    rows = db.session.execute(
        select(Answer, Execution.model_id, Execution.region)
        .join(Execution, Execution.id == Answer.execution_id)
        .where(
            Execution.job_id == job_id,
            Answer.status == RunStatus.COMPLETED,
            Answer.question_id.is_not(None),
        )
        .order_by(Answer.id)
    ).all()
    groups: dict[tuple, list[Answer]] = defaultdict(list)
    for answer, model_id, region in rows:
        key = (answer.question_id, answer.language, answer.question_version, model_id, region)
        groups[key].append(answer)
    pairs = []  # (key, answer, previous answer, previous job id, previous job's repeats)
    for key, answers in groups.items():
        found = _previous_job(key, job_id, min(a.finished_at for a in answers))
        if found is None:
            continue
        previous_job, earlier = found
        newest = max(earlier, key=lambda a: (a.finished_at, a.id))
        by_run = {a.run: a for a in earlier}
        for answer in answers:
            pairs.append((key, answer, by_run.get(answer.run, newest), previous_job, earlier))
    if not pairs:
        return []
    semantic = settings.current().semantic and semantic_available()
    measure = "semantic" if semantic else "lexical"
    similarity, spread = offload.run(_measure, measure, pairs)
    labels = _labels([a.id for _, a, *_ in pairs] + [p.id for _, _, p, *_ in pairs])
    done = _recorded([a.id for _, a, *_ in pairs])
    added = []
    for index, (key, answer, before, previous_job, _) in enumerate(pairs):
        base = {
            "detected_at": now,
            "question_id": key[0],
            "question_index": answer.question_index,
            "language": key[1],
            "question_version": key[2],
            "model_id": key[3],
            "region": key[4],
            "job_id": job_id,
            "answer_id": answer.id,
            "previous_job_id": previous_job,
            "previous_answer_id": before.id,
            "from_class": before.classification,
            "to_class": answer.classification,
            "from_label": labels.get(before.id),
            "to_label": labels.get(answer.id),
            "similarity": similarity[index],
            "measure": measure,
            "from_served": _served(before),
            "to_served": _served(answer),
        }
        kinds = []
        if not done[answer.id] & set(CONTENT_KINDS):
            kinds += _content_kind(base, spread[index], watch.similarity_threshold)[:1]
        if base["from_served"] and base["to_served"] and base["from_served"] != base["to_served"]:
            kinds.append("served_by")
        for kind in kinds:
            change = _insert({**base, "kind": kind})
            if change is not None:
                added.append(change)
    if watch.webhook_url:
        for change in added:
            db.session.add(
                Delivery(change_id=change.id, message_id=new_message_id(), created_at=now)
            )
    return added


def new_message_id() -> str:
    """Returns a fresh Standard Webhooks message id (`msg_` and 24 random hex digits)."""
    return f"msg_{secrets.token_hex(12)}"


def _previous_job(key: tuple, job_id: str, before: datetime):
    """Returns (job id, its completed answers for `key`) of the newest earlier answer, or None."""
    question_id, language, version, model_id, region = key
    same = and_(
        Answer.question_id == question_id,
        Answer.language == language,
        Answer.question_version.is_(None)
        if version is None
        else Answer.question_version == version,
        Answer.status == RunStatus.COMPLETED,
        Execution.model_id == model_id,
        Execution.region == region,
    )
    base = select(Answer).join(Execution, Execution.id == Answer.execution_id).where(same)
    newest = db.session.execute(
        select(Execution.job_id)
        .select_from(Answer)
        .join(Execution, Execution.id == Answer.execution_id)
        .where(same, Execution.job_id != job_id, Answer.finished_at < before)
        .order_by(desc(Answer.finished_at), desc(Answer.id))
        .limit(1)
    ).first()
    if newest is None:
        return None
    earlier = db.session.scalars(base.where(Execution.job_id == newest[0]).order_by(Answer.run))
    return newest[0], list(earlier)


def _measure(measure: str, pairs: list) -> tuple[list, list]:
    """Returns each pair's similarity and the lowest similarity between the earlier job's
    repeats (None unless it had two or more); runs off the event loop."""
    texts = [t for _, a, b, _, earlier in pairs for t in (a.output, b.output)]
    texts += [e.output for *_, earlier in pairs for e in earlier]
    sim = Similarity(measure, [t for t in texts if t])
    similarity, spread = [], []
    for _, answer, before, _, earlier in pairs:
        both = answer.output and before.output
        similarity.append(round(sim(before.output, answer.output), 4) if both else None)
        outputs = [e.output for e in earlier if e.output]
        lowest = min((sim(x, y) for x, y in combinations(outputs, 2)), default=None)
        spread.append(None if lowest is None else round(lowest, 4))
    return similarity, spread


def _content_kind(change: dict, spread: float | None, threshold: float) -> list[str]:
    kinds = []
    if change["from_class"] and change["to_class"] and change["from_class"] != change["to_class"]:
        kinds.append("class")
    labels = (change["from_label"], change["to_label"])
    if all(label in LABELS for label in labels) and labels[0] != labels[1]:
        kinds.append("label")
    similarity = change["similarity"]
    if (
        similarity is not None
        and similarity < threshold
        and (spread is None or similarity < spread)
    ):
        kinds.append("text")
    return kinds


def _labels(answer_ids: list[int]) -> dict[int, str]:
    rows = db.session.execute(
        select(Judgement.answer_id, Judgement.label).where(Judgement.answer_id.in_(answer_ids))
    )
    return {answer_id: label for answer_id, label in rows if label in LABELS}


def _recorded(answer_ids: list[int]) -> dict[int, set[str]]:
    found: dict[int, set[str]] = defaultdict(set)
    rows = db.session.execute(
        select(Change.answer_id, Change.kind).where(Change.answer_id.in_(answer_ids))
    )
    for answer_id, kind in rows:
        found[answer_id].add(kind)
    return found


def _served(answer: Answer) -> dict | None:
    said = answer.served_by or {}
    kept = {k: said[k] for k in SERVED_FIELDS if said.get(k)}
    return kept or None


def _insert(values: dict) -> Change | None:
    """Inserts one change unless it is already stored; returns the new row or None."""
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(Change)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["answer_id", "kind"])
        .returning(Change.id)
    )
    change_id = db.session.scalar(statement)
    return None if change_id is None else db.session.get(Change, change_id)
