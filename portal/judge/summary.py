"""The machine-written summary of a job (`[judge] summary = true`, SPEC sections 6 and 8).

Once every judgement of an ended job has ended, a dispatcher claims the job's queued summary and
asks the judge model for a few sentences from the answers themselves (their ids, models,
regions, questions, texts and judge labels), citing answer ids as `[answer:123]`. The reply is
untrusted: it is kept only when it cites at least one answer id and every id it cites is an
answer of this job; otherwise it is stored as `rejected`, with the reason and the raw reply.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import and_, exists, select

from portal.db import db
from portal.errors import NotFound
from portal.judge.config import agrees
from portal.judge.labels import (
    attempt_recorder,
    call_judge,
    claim,
    clear_comparison,
    fenced,
    load_leased,
    store,
)
from portal.judge.models import JobSummary, Judgement
from portal.models import ACTIVE, Answer, Execution
from portal.status import RunStatus

PROMPT_FILE = Path(__file__).with_name("summary_prompt_v1.txt")
SUMMARY_MAX_TOKENS = 400
ANSWER_CHARS = 300
MAX_PROMPT_ANSWERS = 60
# A reply whose citations do not hold is kept for the reader, never shown as the summary.
REJECTED = "rejected"
CITATION = re.compile(r"\[answer:(\d{1,18})\]")


def answers_block(job_id: str) -> tuple[str, set[int]]:
    """Returns the answers as the summary prompt lists them, and every answer id of the job."""
    rows = db.session.execute(
        select(Answer, Execution.model_id, Execution.region)
        .join(Execution, Execution.id == Answer.execution_id)
        .where(Execution.job_id == job_id)
        .order_by(Answer.question_index, Execution.position, Answer.run)
    ).all()
    lines = []
    for answer, model_id, region in rows:
        if answer.status != RunStatus.COMPLETED or len(lines) >= MAX_PROMPT_ANSWERS:
            continue
        label = answer.judgement.label if answer.judgement else None
        lines.append(
            f"[answer:{answer.id}] model {model_id}, region {region}, question "
            f"{answer.question_id or answer.question_index + 1}, label {label or 'none'}: "
            + " ".join(fenced(answer.output, ANSWER_CHARS).split())
        )
    return "\n".join(lines), {answer.id for answer, _, _ in rows}


def check_citations(text: str, known: set[int]) -> str | None:
    """Returns why a summary must be rejected, or None when every citation is a known answer."""
    if not text.strip():
        return "the summary is empty"
    cited = [int(n) for n in CITATION.findall(text)]
    if not cited:
        return "the summary cites no answer id (write them like [answer:123])"
    unknown = sorted(set(cited) - known)
    if unknown:
        ids = ", ".join(str(n) for n in unknown)
        return f"the summary cites answer ids this job does not have: {ids}"
    return None


def claim_summaries(limit: int, owner: str, lease: float, job_id: str | None = None) -> list[int]:
    """Leases queued summaries (of one job, or any) whose job has no judgement left to make."""
    ready = ~exists().where(Judgement.job_id == JobSummary.job_id, Judgement.status.in_(ACTIVE))
    if job_id is not None:
        ready = and_(ready, JobSummary.job_id == job_id)
    return claim(JobSummary, limit, owner, lease, ready=ready)


def run_summary(summary_id: int, owner: str, config) -> None:
    """Asks the judge model for the job's summary and keeps it only if its citations hold."""
    row = load_leased(JobSummary, summary_id, owner)
    if row is None:
        return
    job_id = row.job_id
    block, known = answers_block(job_id)
    prompt = PROMPT_FILE.read_text("utf-8").format(answers=block)
    db.session.commit()

    reply, error = call_judge(
        config,
        prompt,
        max_tokens=SUMMARY_MAX_TOKENS,
        record_attempt=attempt_recorder(JobSummary, summary_id, owner),
    )
    if error is not None:
        values = {"status": RunStatus.FAILED, "error": error}
    else:
        problem = check_citations(reply, known)
        values = {"reply": reply, "error": problem, "status": REJECTED}
        if problem is None:
            values.update(status=RunStatus.COMPLETED, text=reply.strip())
    if store(JobSummary, summary_id, owner, **values):
        clear_comparison(job_id)
    db.session.commit()


def summary_doc(job_id: str) -> dict:
    """Returns the job's written summary as the API serves it, or raises 404 saying why not."""
    row = db.session.scalar(select(JobSummary).where(JobSummary.job_id == job_id))
    if row is not None and row.status == RunStatus.COMPLETED:
        return row.to_dict()
    if row is None:
        why = "no judge with summary = true has summarized it"
    elif row.status in ACTIVE:
        why = "its summary is still being written"
    else:
        why = f"its summary was {row.status}: {row.error}"
    raise NotFound("summary_not_found", f"job {job_id!r} has no summary: {why}")


def segments(text: str) -> list[dict]:
    """Splits a summary into plain text and citations, for the page to link each cited answer."""
    parts, at = [], 0
    for match in CITATION.finditer(text):
        if match.start() > at:
            parts.append({"text": text[at : match.start()], "answer_id": None})
        parts.append({"text": match.group(0), "answer_id": int(match.group(1))})
        at = match.end()
    if at < len(text):
        parts.append({"text": text[at:], "answer_id": None})
    return parts


def page_section(job_id: str, answers: list[dict]) -> dict | None:
    """Returns what the job page shows of the judge: label counts, disagreements, the summary."""
    judged = [a for a in answers if a.get("judgement")]
    row = db.session.scalar(select(JobSummary).where(JobSummary.job_id == job_id))
    if not judged and row is None:
        return None
    labels: dict[str, int] = {}
    disagreements = 0
    for answer in judged:
        judgement = answer["judgement"]
        if judgement["label"]:
            labels[judgement["label"]] = labels.get(judgement["label"], 0) + 1
        disagreements += agrees(judgement["label"], answer.get("classification")) is False
    pending = sum(a["judgement"]["status"] in ACTIVE for a in judged)
    first = judged[0]["judgement"] if judged else {}
    summary = None
    if row is not None:
        summary = {
            "status": row.status,
            "error": row.error,
            "reply": row.reply,
            "model_id": row.model_id,
            "region": row.region,
            "prompt_version": row.prompt_version,
            "segments": segments(row.text) if row.text else [],
            "written_at": row.finished_at,
        }
    return {
        "judged": len(judged),
        "pending": pending,
        "labels": labels,
        "disagreements": disagreements,
        "model_id": first.get("model_id") or (row.model_id if row else None),
        "region": first.get("region") or (row.region if row else None),
        "prompt_version": first.get("prompt_version"),
        "summary": summary,
    }
