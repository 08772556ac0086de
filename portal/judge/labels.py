"""The judge model: labels every completed answer of an ended job (SPEC section 8).

When a job ends (`engine.jobs.refresh_status`), `judge_queue.enqueue` adds one queued judgement
per completed answer not judged yet, in the same transaction, and a queued summary when
`[judge] summary = true`. The dispatcher of every worker process (`portal/engine/pool.py`,
through `portal/judge/dispatch.py`) then claims them with a lease, like
executions, and runs each in its own pool, holding a slot of the judge region: judge calls share
the pool, the region caps, the call timeout and the retries of answers. A judgement is not an
answer: it never changes the job, its counts or its status, and a judge that fails leaves every
answer as it was, with the failure on the judgement.

The prompt is a versioned file in the package (`judge_prompt_v1.txt`); the reply is read
strictly (`parse_reply`), and anything else is labelled `error` with the raw reply kept.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import gevent
from sqlalchemy import and_, exists, or_, select, update

from portal import providers, redact, settings
from portal.config import BeaconConfig, ExecutionSettings
from portal.db import db
from portal.engine.answer_writes import clean_output
from portal.engine.execution import BACKOFF_BASE_S, BACKOFF_CAP_S
from portal.judge.config import ERROR, LABELS
from portal.judge.models import Judgement
from portal.judge.queue import PROMPT_VERSION as PROMPT_VERSION
from portal.judge.queue import clear_comparison
from portal.models import ACTIVE, Answer
from portal.status import RunStatus
from portal.times import utcnow

PROMPT_FILE = Path(__file__).with_name("judge_prompt_v1.txt")
JUDGE_MAX_TOKENS = 8
MAX_REPLY_CHARS = 4000
# What an answer may be when it is put in the prompt: long answers are cut (the judge needs the
# start of an answer to tell a refusal), and the prompt's own fences are taken out of it.
MAX_ANSWER_CHARS = 3000
# Every maximal run of three or more angle brackets, mixed or not. Taking out `<<<` and `>>>`
# alone let `ANSWER><<<>>` become `ANSWER>>>` (issue 20): a maximal run is bounded by other
# characters, so removing it never joins two runs into a fence, in one linear pass.
_FENCES = re.compile(r"[<>]{3,}")
_REPLY = re.compile(r"[\s\"'*`]*(complete|evasive|denial)[\s\"'*`]*\.?[\s\"'*`]*", re.IGNORECASE)


def prompt_template(path: Path = PROMPT_FILE) -> str:
    """Returns the judge prompt of this version, as shipped in the package."""
    return path.read_text("utf-8")


def build_prompt(question: str, answer: str, template: str | None = None) -> str:
    """Returns the judge prompt for one question and one answer."""
    template = template or prompt_template()
    return template.format(question=fenced(question), answer=fenced(answer))


def fenced(text: str | None, limit: int = MAX_ANSWER_CHARS) -> str:
    """Returns untrusted text fit to stand between the prompt's fences: cut, fences removed."""
    text = _FENCES.sub("", text or "")
    return text if len(text) <= limit else text[:limit] + " [cut]"


def parse_reply(reply: str | None) -> str | None:
    """Returns the label a reply consists of, or None when it is anything else.

    Strict: the whole reply must be one of the three labels, in any case, optionally quoted,
    emphasised or followed by a full stop. "Complete." reads; "I think it is complete" does not.
    """
    match = _REPLY.fullmatch(reply or "")
    return match.group(1).lower() if match else None


def lease_s(limits: ExecutionSettings) -> float:
    """Returns how long a claimed judge call is leased: longer than all its attempts can last."""
    return limits.max_attempts * (limits.call_timeout_s + BACKOFF_CAP_S) + limits.lease_s


# --- claiming -------------------------------------------------------------------------------


def claim(table, limit: int, owner: str, lease: float, ready=None) -> list[int]:
    """Leases up to `limit` claimable rows of `table` (Judgement or JobSummary) to `owner`."""
    if limit <= 0:
        return []
    now = utcnow()
    claimable = or_(
        table.status == RunStatus.QUEUED,
        and_(table.status == RunStatus.RUNNING, table.lease_expires_at < now),
    )
    where = [claimable] if ready is None else [claimable, ready]
    picked = select(table.id).where(*where).order_by(table.id).limit(limit)
    values = {
        "status": RunStatus.RUNNING,
        "lease_owner": owner,
        "lease_expires_at": now + timedelta(seconds=lease),
    }
    if db.session.get_bind().dialect.name == "postgresql":
        ids = list(db.session.scalars(picked.with_for_update(skip_locked=True)))
        if ids:
            db.session.execute(update(table).where(table.id.in_(ids)).values(**values))
        return sorted(ids)
    stmt = update(table).where(table.id.in_(picked), claimable).values(**values)
    return sorted(db.session.scalars(stmt.returning(table.id)).all())


# --- one call with the engine's retries -----------------------------------------------------


def call_judge(config: BeaconConfig, prompt: str, *, max_tokens: int, record_attempt):
    """Calls the judge with the answers' timeout and retries; returns (text, None) or
    (None, error message). `record_attempt()` stores each attempt before it is made. Both are
    stored: every secret the portal knows is hidden in them first (issue 20)."""
    secrets = settings.current().secrets
    setting = config.judge
    region = config.regions.get(setting.region)
    model = config.models.get(setting.model)
    if region is None or model is None:
        return None, f"judge region {setting.region!r} or model {setting.model!r} is not configured"
    limits = config.execution
    while True:
        attempt = record_attempt()
        try:
            result = providers.call(
                region, model, prompt, timeout_s=limits.call_timeout_s, max_tokens=max_tokens
            )
        except providers.ProviderError as exc:
            if exc.transient and attempt < limits.max_attempts:
                delay = (
                    exc.retry_after
                    if exc.retry_after is not None
                    else (BACKOFF_BASE_S * 2 ** max(0, attempt - 1))
                )
                gevent.sleep(min(BACKOFF_CAP_S, max(0.0, delay)))
                continue
            tries = f" (after {attempt} attempts)" if attempt > 1 else ""
            message = secrets.scrub(redact.scrub(exc.message, region.base_url))
            return None, message + tries
        return secrets.scrub(clean_output(result.text)[:MAX_REPLY_CHARS]), None


def attempt_recorder(table, row_id: int, owner: str):
    """Returns a function that counts one attempt on the leased row and commits it."""

    def record() -> int:
        db.session.execute(
            update(table)
            .where(table.id == row_id, table.lease_owner == owner)
            .values(attempts=table.attempts + 1)
        )
        db.session.commit()
        return db.session.scalar(select(table.attempts).where(table.id == row_id)) or 0

    return record


def load_leased(table, row_id: int, owner: str):
    """Returns the row when `owner` still holds its lease, else None (and ends the read)."""
    row = db.session.get(table, row_id, populate_existing=True)
    if row is None or row.lease_owner != owner or row.status != RunStatus.RUNNING:
        db.session.rollback()
        return None
    return row


def store(table, row_id: int, owner: str, **values) -> bool:
    """Ends a leased row with `values` unless another worker took it; True when stored."""
    values.update(finished_at=utcnow(), lease_expires_at=None)
    result = db.session.execute(
        update(table)
        .where(table.id == row_id, table.lease_owner == owner, table.status == RunStatus.RUNNING)
        .values(**values)
    )
    return result.rowcount == 1


def run_judgement(judgement_id: int, owner: str, config: BeaconConfig) -> None:
    """Asks the judge about one answer and stores its label, its raw reply or its failure."""
    row = load_leased(Judgement, judgement_id, owner)
    if row is None:
        return
    job_id, limits = row.job_id, config.execution
    if row.attempts >= limits.max_attempts:
        # Found running after its worker stopped mid-call as often as a call may be tried.
        stopped = f"the worker judging this stopped during each of {row.attempts} attempts"
        store(Judgement, judgement_id, owner, status=RunStatus.FAILED, label=ERROR, error=stopped)
        db.session.commit()
        return
    answer = db.session.get(Answer, row.answer_id)
    prompt = build_prompt(answer.prompt, answer.output)
    db.session.commit()
    started = utcnow()
    reply, error = call_judge(
        config,
        prompt,
        max_tokens=JUDGE_MAX_TOKENS,
        record_attempt=attempt_recorder(Judgement, judgement_id, owner),
    )
    latency = round((utcnow() - started).total_seconds() * 1000)
    if error is not None:
        values = {"status": RunStatus.FAILED, "label": ERROR, "error": error}
    else:
        label = parse_reply(reply)
        unreadable = f"the judge's reply is not one of {', '.join(LABELS)}"
        values = {"status": RunStatus.COMPLETED, "label": label or ERROR, "reply": reply}
        values["error"] = None if label else unreadable
    if store(Judgement, judgement_id, owner, latency_ms=latency, **values):
        clear_comparison(job_id)
    db.session.commit()


def active_judging(job_id: str) -> bool:
    """Says whether any judgement of the job is still queued or running."""
    return bool(
        db.session.scalar(
            select(exists().where(Judgement.job_id == job_id, Judgement.status.in_(ACTIVE)))
        )
    )
