"""Runs one leased execution: its model's questions in one region, in order, then ends it.

`run_execution` is what a pool slot of the dispatcher (portal/engine/pool.py) runs. In order:

1. Reload the execution; stop unless this worker still holds its lease. Mark it and its job
   started.
2. For each unfinished answer (`queued`, or `running` when a stopped worker left it), in
   question order: end it at once when the job was cancelled, the region or model is not
   configured, the deadline has passed or it has used up its attempts; otherwise mark it
   `running`, count the attempt, commit, and make one provider call bounded by the deadline.
3. Store the outcome: the cleaned text, its SHA-256, timings, tokens and class on success; on a
   transient failure wait (the provider's Retry-After, else exponential backoff) and ask again
   until `max_attempts`; otherwise end the answer `failed` or `cancelled`.
4. When every answer has ended, end the execution (`completed`, `cancelled` or `failed`),
   derive the job's status, and precompute the comparison once the job has ended.

Every write first renews the execution's lease with a conditional UPDATE that also locks the
row; when that matches nothing another worker owns the execution and this one stops without
writing. The common case of steps 2 and 3 (a queued answer asked once and answered) is one
transaction per answer: the answer is stored and the next one started (its attempt counted)
together, before the next call (`answer_writes.write`, which the dispatcher's writer runs for
many executions at once, portal/engine/writer.py); everything else goes through the ORM.
See docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import gevent
from sqlalchemy import select

from portal import compare, logs, prices, providers, redact, settings
from portal.config import BeaconConfig
from portal.db import db
from portal.engine import answer_writes, execution_end, jobs, metrics
from portal.engine.leases import renew
from portal.engine.region_rate import RegionRates
from portal.models import ACTIVE, Answer, Execution
from portal.provenance import receipts
from portal.status import RunStatus
from portal.times import utcnow

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
_SLOT = object()
RATE_WAIT = "waiting for a slot in the region's rate_limit"
# A call waiting for its region's rate-limit slot looks at its job (cancel, deadline) this often.
RATE_WAIT_STEP_S = 2.0


class _Context:
    """What one execution needs: its ids, its region and model, and the limits."""

    def __init__(
        self,
        execution: Execution,
        owner: str,
        config: BeaconConfig,
        rates: RegionRates | None = None,
        stopping: Callable[[], bool] | None = None,
    ):
        self.rates = rates
        self.writes: Callable[[answer_writes.AfterCall], None] = self.write_here
        self.execution_id = execution.id
        self.job_id = execution.job_id
        self.owner = owner
        self.labels = {
            "execution": execution.id,
            "job": execution.job_id,
            "model": execution.model_id,
            "region": execution.region,
        }
        # True once the worker drains (SIGTERM): no new call starts, the execution is handed back.
        self.stopping = stopping or (lambda: False)
        self.limits = config.execution
        # Every secret the portal knows: a provider may echo the key it was sent (issue 20).
        self.secrets = settings.current().secrets
        self.region = config.regions.get(execution.region)
        self.model = config.models.get(execution.model_id)
        self.problem = None
        self.price = None
        if self.region is None:
            self.problem = f"region {execution.region!r} is not in this portal's configuration"
        elif self.model is None:
            self.problem = f"model {execution.model_id!r} is not in this portal's configuration"
        else:
            self.price = prices.price_of(self.region, self.model)

    def write_here(self, write: answer_writes.AfterCall) -> None:
        """Commits one execution's `AfterCall` in this task's own session."""
        answer_writes.write(db.session, self.owner, self.limits.lease_s, [write], utcnow())
        db.session.commit()

    def own(self) -> bool:
        """Renews the lease and says whether this worker still holds it (locks the row)."""
        return renew([self.execution_id], self.owner, self.limits.lease_s) == 1


def run_execution(
    execution_id: int,
    owner: str,
    config: BeaconConfig,
    rates: RegionRates | None = None,
    stopping: Callable[[], bool] | None = None,
    writes: Callable[[answer_writes.AfterCall], None] | None = None,
) -> bool:
    """Asks every unfinished question of one leased execution, in order, then ends it.

    `rates` holds the regions' rate limits (the process's dispatcher shares one); None sets none.
    `writes` commits an `AfterCall` (the dispatcher's group-commit writer); None commits it in
    this task's own session. Returns False when it stopped before the end: the lease was lost,
    or `stopping()` turned true between two calls (the worker is draining) and the execution is
    left to be handed back.
    """
    execution = db.session.get(Execution, execution_id, populate_existing=True)
    if execution is None or execution.lease_owner != owner or execution.status != RunStatus.RUNNING:
        db.session.rollback()
        return False
    ctx = _Context(execution, owner, config, rates, stopping)
    if writes is not None:
        ctx.writes = writes
    now = utcnow()
    if not ctx.own():
        db.session.rollback()
        return False
    execution.started_at = execution.started_at or now
    jobs.mark_started(ctx.job_id, now)
    db.session.commit()
    logs.execution_state(ctx.labels, RunStatus.RUNNING)
    unfinished = db.session.scalars(
        select(Answer.id)
        .where(Answer.execution_id == execution_id, Answer.status.in_(ACTIVE))
        .order_by(Answer.question_index, Answer.id)
    ).all()
    db.session.commit()
    begun = None  # the answer the last write started: (prompt, deadline), its attempt counted
    for position, answer_id in enumerate(unfinished):
        following = unfinished[position + 1] if position + 1 < len(unfinished) else None
        if begun is None and ctx.stopping():
            log.info("execution %d: the worker is stopping; handing it back", execution_id)
            return False
        done, begun = _ask(ctx, answer_id, begun, following)
        if done is None:
            log.info("execution %d: the worker is stopping; handing it back", execution_id)
            return False
        if not done:
            log.warning("execution %d: lease lost, leaving it to its new owner", execution_id)
            return False
    execution_end.finish(ctx)
    return True


def _ask(ctx: _Context, answer_id: int, begun, following: int | None):
    """Asks one question until it ends. Returns (done, begun): done is False when the lease
    was lost on the way, None when the worker began stopping before a retry; begun is the
    (prompt, deadline) of `following` when the write that stored this answer started it."""
    while True:
        if begun is None:
            begun = _begin(ctx, answer_id)
            if begun is False:
                return False, None
            if begun[0] is None:
                return True, None
        prompt, deadline = begun
        again, begun = _call_and_record(ctx, answer_id, prompt, deadline, following)
        if again is None:
            return False, None
        if again:
            if ctx.stopping():
                return None, None
            metrics.RETRIES.labels(ctx.labels["model"], ctx.labels["region"]).inc()
            begun = None
            continue
        return True, begun


def _begin(ctx: _Context, answer_id: int):
    """Starts an answer no earlier write started: returns (prompt, deadline), with a None
    prompt when it ended without a call, or False when the lease was lost."""
    if not ctx.own():
        db.session.rollback()
        return False
    job = jobs.job_state(ctx.job_id)
    now = utcnow()
    prompt = _start_queued(ctx, job, answer_id, now)
    if prompt is None:
        prompt = _start_or_end(ctx, job, answer_id, now)
    # Either way the attempt is committed before the call: a worker dying mid-call leaves
    # the answer running with its attempt counted, which caps how often it is ever asked.
    db.session.commit()
    return prompt, job.deadline_at


def _start_or_end(ctx: _Context, job, answer_id: int, now: datetime) -> str | None:
    """Decides an answer that is not simply queued, through the ORM: ends it without a call
    (already ended, job cancelled, region or model unknown, deadline passed, attempts used up)
    and returns None, or marks it running, counts the attempt and returns its prompt."""
    answer = db.session.get(Answer, answer_id, populate_existing=True)
    if answer is None or answer.status not in ACTIVE:
        return None
    if job.cancel_requested_at is not None:
        _end(answer, RunStatus.CANCELLED, "cancelled before it was asked", now)
    elif ctx.problem:
        _end(answer, RunStatus.FAILED, ctx.problem, now)
    elif job.deadline_at is not None and now >= job.deadline_at:
        _end(answer, RunStatus.FAILED, jobs.DEADLINE_PASSED, now)
    elif answer.status == RunStatus.RUNNING and answer.attempts >= ctx.limits.max_attempts:
        # Recovered after its worker stopped mid-call as many times as it may be tried.
        _end(
            answer,
            RunStatus.FAILED,
            f"the worker asking this stopped during each of {answer.attempts} attempts",
            now,
        )
    else:
        answer.status = RunStatus.RUNNING
        answer.attempts += 1
        return answer.prompt
    return None


def _start_queued(ctx: _Context, job, answer_id: int, now: datetime) -> str | None:
    """The common case of `_ask` in one statement: a queued answer of a job that may go on is
    marked running with its attempt counted. Returns its prompt, or None to decide by the ORM."""
    if job.cancel_requested_at is not None or ctx.problem:
        return None
    if job.deadline_at is not None and now >= job.deadline_at:
        return None
    return answer_writes.start_queued(db.session, answer_id)


def _call_and_record(
    ctx: _Context, answer_id: int, prompt: str, deadline: datetime | None, following: int | None
):
    """Makes one provider call and stores its outcome. Returns (again, begun): again is True
    to try again, None if the lease was lost; begun is `following`'s (prompt, deadline) when
    the write that stored a success also started it."""
    if ctx.rates is not None:
        waited = _wait_for_slot(ctx, answer_id, deadline)
        if waited is not _SLOT:
            return waited, None
    timeout_s = ctx.limits.call_timeout_s
    if deadline is not None:
        timeout_s = min(timeout_s, max(0.1, (deadline - utcnow()).total_seconds()))
    started = utcnow()
    result, error = None, None
    try:
        result = providers.call(ctx.region, ctx.model, prompt, timeout_s=timeout_s)
    except providers.ProviderError as exc:
        # The message quotes the provider's address and what the provider said: never with the
        # credentials the address holds, nor any key or token the provider echoes back.
        exc.message = ctx.secrets.scrub(redact.scrub(exc.message, ctx.region.base_url))
        error = exc
    finished = utcnow()
    metrics.observe_call(ctx.labels, (finished - started).total_seconds(), error is None)

    if result is not None:
        return _store(ctx, answer_id, prompt, result, following)
    return _record_failure(ctx, answer_id, error, started, finished, deadline), None


def _store(ctx: _Context, answer_id: int, prompt: str, result, following: int | None):
    """Stores a successful call and, in the same transaction, starts `following` when the job
    may go on; returns what `_call_and_record` returns."""
    write = answer_writes.AfterCall(
        ctx.execution_id,
        ctx.job_id,
        answer_id,
        # Stored only while the answer is still running (else it ended meanwhile: keep that).
        answer_writes.completed_values(result, prompt, ctx.price, ctx.secrets),
        # A draining worker starts nothing new: the execution is handed back after this write.
        next_id=None if ctx.stopping() else following,
    )
    ctx.writes(write)
    if not write.owned:
        return None, None
    if write.reached:
        receipts.issue_for_job(ctx.job_id)  # the executions the budget ended
    if write.next_prompt is None:
        return False, None
    return False, (write.next_prompt, write.deadline_at)


def _record_failure(ctx: _Context, answer_id: int, error, started, finished, deadline):
    """Stores a failed call through the ORM; True to try again, None if the lease was lost."""
    if not ctx.own():
        db.session.rollback()
        return None
    answer = db.session.get(Answer, answer_id, populate_existing=True)
    if answer is None or answer.status != RunStatus.RUNNING:
        db.session.commit()
        return False
    # Only a failure needs the job (was it cancelled meanwhile?).
    job = jobs.job_state(ctx.job_id)
    answer.provider = ctx.region.provider
    answer.provider_model = ctx.model.provider_model or ctx.model.id
    answer.started_at, answer.latency_ms = started, _ms(finished - started)
    past_deadline = deadline is not None and finished >= deadline
    delay = _backoff(answer.attempts, error.retry_after)
    if job.cancel_requested_at is not None:
        _end(
            answer, RunStatus.CANCELLED, f"cancelled while the call was in flight ({error.message})"
        )
    elif past_deadline:
        _end(answer, RunStatus.FAILED, f"{jobs.DEADLINE_PASSED} ({error.message})")
    elif error.transient and answer.attempts < ctx.limits.max_attempts:
        if deadline is not None and finished + timedelta(seconds=delay) >= deadline:
            _end(answer, RunStatus.FAILED, f"{jobs.DEADLINE_PASSED} ({error.message})")
            db.session.commit()
            return False
        answer.error = f"attempt {answer.attempts} failed, trying again: {error.message}"
        db.session.commit()
        gevent.sleep(delay)
        return True
    else:
        tries = f" (after {answer.attempts} attempts)" if answer.attempts > 1 else ""
        _end(answer, RunStatus.FAILED, error.message + tries)
    db.session.commit()
    return False


def _wait_for_slot(ctx: _Context, answer_id: int, deadline: datetime | None):
    """Takes a slot in the region's rate limit, waiting for one (never past the deadline).

    Returns _SLOT once a slot is taken, right before the call, so the provider sees the calls
    as the limit spaced them. Otherwise it ends the answer without a call (the job was
    cancelled, or no slot frees before the deadline), takes back the attempt counted for it and
    returns what `_call_and_record` returns. It runs outside any transaction: on SQLite,
    waiting on the storage while holding the write lock would stall every other writer.
    """
    while True:
        wait = ctx.rates.take(ctx.region.id)
        if wait <= 0:
            return _SLOT
        now = utcnow()
        cancelled = jobs.job_state(ctx.job_id).cancel_requested_at is not None
        db.session.commit()
        if cancelled:
            status, message = RunStatus.CANCELLED, "cancelled before it was asked"
        elif deadline is not None and now + timedelta(seconds=wait) >= deadline:
            status, message = RunStatus.FAILED, f"{jobs.DEADLINE_PASSED} ({RATE_WAIT})"
        else:
            gevent.sleep(min(wait, RATE_WAIT_STEP_S))
            continue
        if not ctx.own():
            db.session.rollback()
            return None
        answer = db.session.get(Answer, answer_id, populate_existing=True)
        if answer is not None and answer.status == RunStatus.RUNNING:
            answer.attempts -= 1  # counted before the call, which was never made
            _end(answer, status, message)
        db.session.commit()
        return False


def _backoff(attempts: int, retry_after: float | None) -> float:
    """Returns the wait before the next attempt: the provider's Retry-After, else exponential."""
    if retry_after is not None:
        return min(BACKOFF_CAP_S, max(0.0, retry_after))
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1))


def _end(answer: Answer, status: str, error: str, now: datetime | None = None) -> None:
    answer.status = status
    answer.error = error
    answer.finished_at = now or utcnow()
    answer.classification = classify(answer)


def classify(answer: Answer) -> str:
    """Returns the answer's class by the comparison rules (SPEC section 8)."""
    return compare.classify(
        answer.output, status=answer.status, error=answer.error, prompt=answer.prompt
    )


def _ms(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1000)
