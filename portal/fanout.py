"""The execution engine: claims queued executions from the database and runs them in one pool.

Each worker process runs one `Dispatcher`. Its loop claims executions with a lease (an atomic
UPDATE: `FOR UPDATE SKIP LOCKED` on PostgreSQL, one write statement under SQLite's write lock),
runs each in a bounded `gevent.pool.Pool` whose size is `max_concurrency`, renews the leases
while they run and releases them when done. An execution asks its questions in order, one call
at a time, so the pool bounds the provider calls in flight; a region's own `max_concurrency`
caps how many of the pool's slots its executions may hold. A worker that dies leaves leases
that expire; any dispatcher then takes those executions again and re-runs only their unfinished
answers. See docs/architecture.md.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from datetime import datetime, timedelta

import gevent
import gevent.event
from gevent.lock import BoundedSemaphore
from gevent.pool import Pool
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from . import jobs, providers, reports
from .config import BeaconConfig
from .db import db
from .models import ACTIVE, JOB_ENDED, Answer, Execution, utcnow

log = logging.getLogger(__name__)

MAX_OUTPUT_CHARS = 100_000
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
POLL_S = 0.5
SWEEP_S = 2.0


def new_owner() -> str:
    """Returns a lease owner name unique to this process: host, pid and a random tag."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{os.urandom(4).hex()}"


def _claimable(now: datetime):
    return or_(
        Execution.status == "queued",
        and_(
            Execution.status == "running",
            or_(Execution.lease_expires_at.is_(None), Execution.lease_expires_at < now),
        ),
    )


def waiting_by_region(now: datetime | None = None) -> dict[str, int]:
    """Counts claimable executions (queued, or leased by a worker that stopped) per region."""
    now = now or utcnow()
    rows = db.session.execute(
        select(Execution.region, func.count()).where(_claimable(now)).group_by(Execution.region)
    )
    return {region: n for region, n in rows}


def claim(region: str, limit: int, owner: str, lease_s: float, now=None) -> list[int]:
    """Leases up to `limit` claimable executions of one region to `owner`; returns their ids."""
    now = now or utcnow()
    picked = (
        select(Execution.id)
        .where(Execution.region == region, _claimable(now))
        .order_by(Execution.id)
        .limit(limit)
    )
    lease = {
        "status": "running",
        "lease_owner": owner,
        "lease_expires_at": now + timedelta(seconds=lease_s),
    }
    if db.session.get_bind().dialect.name == "postgresql":
        # The rows stay locked until commit and SKIP LOCKED hands each to one claimer. (A
        # LIMIT subquery inside the UPDATE itself may be planned to lease more rows than asked.)
        ids = list(db.session.scalars(picked.with_for_update(skip_locked=True)))
        if ids:
            db.session.execute(update(Execution).where(Execution.id.in_(ids)).values(**lease))
        return sorted(ids)
    # SQLite: one statement picks and leases under the write lock, so nobody picks in between.
    stmt = (
        update(Execution)
        .where(Execution.id.in_(picked), _claimable(now))
        .values(**lease)
        .returning(Execution.id)
    )
    return sorted(db.session.scalars(stmt).all())


def renew(ids: list[int], owner: str, lease_s: float) -> int:
    """Extends the leases `owner` still holds among `ids`; returns how many it holds."""
    if not ids:
        return 0
    result = db.session.execute(
        update(Execution)
        .where(Execution.id.in_(ids), Execution.lease_owner == owner, Execution.status == "running")
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
    )
    return result.rowcount


def release(owner: str) -> int:
    """Hands the executions `owner` is running back to the queue, for a clean shutdown."""
    result = db.session.execute(
        update(Execution)
        .where(Execution.lease_owner == owner, Execution.status == "running")
        .values(status="queued", lease_owner=None, lease_expires_at=None)
    )
    return result.rowcount


class Dispatcher:
    """Claims executions for one worker process and runs them in its bounded pool."""

    def __init__(self, app, *, owner: str | None = None, poll_s: float = POLL_S):
        self.app = app
        self.config: BeaconConfig = app.extensions["beacon"].config
        limits = self.config.execution
        self.owner = owner or new_owner()
        self.poll_s = poll_s
        self.pool = Pool(limits.max_concurrency)
        self.slots = {
            r.id: BoundedSemaphore(min(r.max_concurrency or limits.max_concurrency, self.pool.size))
            for r in self.config.regions.values()
        }
        self.running: set[int] = set()
        self._stopping = gevent.event.Event()
        self._greenlets: list[gevent.Greenlet] = []
        self._last_sweep = 0.0

    def start(self) -> Dispatcher:
        """Starts the claim loop and the lease heartbeat as greenlets."""
        self._greenlets = [gevent.spawn(self.run), gevent.spawn(self._heartbeat)]
        log.info("dispatcher %s started, pool %d", self.owner, self.pool.size)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stops claiming, stops running executions and hands their leases back."""
        self._stopping.set()
        gevent.killall(self._greenlets, timeout=timeout)
        self.pool.kill(timeout=timeout)
        with self.app.app_context():
            try:
                released = release(self.owner)
                db.session.commit()
            except SQLAlchemyError:
                db.session.rollback()
                log.exception("could not release the leases of %s", self.owner)
                return
        log.info("dispatcher %s stopped, %d executions handed back", self.owner, released)

    def wait(self) -> None:
        """Blocks until the dispatcher stops."""
        self._stopping.wait()

    def run(self) -> None:
        """Claims and starts work until stopped; recovers expired leases on every pass."""
        while not self._stopping.is_set():
            with self.app.app_context():
                try:
                    self.tick()
                except SQLAlchemyError:
                    db.session.rollback()
                    log.exception("dispatcher pass failed; trying again")
                finally:
                    db.session.remove()
            self._stopping.wait(self.poll_s)

    def tick(self) -> int:
        """Runs one pass: ends overdue jobs, then claims what the free slots allow."""
        now_mono = time.monotonic()
        if now_mono - self._last_sweep >= SWEEP_S:
            self._last_sweep = now_mono
            jobs.end_overdue()
            jobs.settle_orphans()
            db.session.commit()
        started = 0
        waiting = waiting_by_region()
        db.session.commit()
        for region, count in waiting.items():
            slot = self.slots.get(region)
            free = min(self.pool.free_count(), slot.counter if slot else self.pool.free_count())
            if free <= 0 or count <= 0:
                continue
            ids = claim(region, min(free, count), self.owner, self.config.execution.lease_s)
            db.session.commit()
            for execution_id in ids:
                if execution_id in self.running:
                    # Our own lease lapsed (the process stalled) and we claimed it back: the
                    # task still running it goes on; a second one would ask its questions twice.
                    continue
                if slot is not None:
                    slot.acquire(blocking=False)
                self.running.add(execution_id)
                self.pool.spawn(self._task, execution_id, slot)
                started += 1
        return started

    def _task(self, execution_id: int, slot: BoundedSemaphore | None) -> None:
        try:
            with self.app.app_context():
                try:
                    run_execution(execution_id, self.owner, self.config)
                except SQLAlchemyError:
                    # The database failed us: the lease expires and the execution is taken again.
                    db.session.rollback()
                    log.exception("execution %d stopped on a database error", execution_id)
                finally:
                    db.session.remove()
        finally:
            self.running.discard(execution_id)
            if slot is not None:
                slot.release()

    def _heartbeat(self) -> None:
        interval = max(0.2, self.config.execution.lease_s / 3)
        while not self._stopping.wait(interval):
            with self.app.app_context():
                try:
                    renew(sorted(self.running), self.owner, self.config.execution.lease_s)
                    db.session.commit()
                except SQLAlchemyError:
                    db.session.rollback()
                    log.exception("lease renewal failed; trying again")
                finally:
                    db.session.remove()


def start_dispatcher(app) -> Dispatcher | None:
    """Starts a dispatcher for this process unless BEACON_DISPATCHER=0 turns it off."""
    if os.environ.get("BEACON_DISPATCHER", "1").strip() == "0":
        log.info("BEACON_DISPATCHER=0: this process runs no executions")
        return None
    return Dispatcher(app).start()


# --- one execution ---------------------------------------------------------------------------


class _Context:
    """What one execution needs: its ids, its region and model, and the limits."""

    def __init__(self, execution: Execution, owner: str, config: BeaconConfig):
        self.execution_id = execution.id
        self.job_id = execution.job_id
        self.owner = owner
        self.limits = config.execution
        self.region = config.regions.get(execution.region)
        self.model = config.models.get(execution.model_id)
        self.problem = None
        if self.region is None:
            self.problem = f"region {execution.region!r} is not in this portal's configuration"
        elif self.model is None:
            self.problem = f"model {execution.model_id!r} is not in this portal's configuration"

    def own(self) -> bool:
        """Renews the lease and says whether this worker still holds it (locks the row)."""
        return renew([self.execution_id], self.owner, self.limits.lease_s) == 1


def run_execution(execution_id: int, owner: str, config: BeaconConfig) -> None:
    """Asks every unfinished question of one leased execution, in order, then ends it."""
    execution = db.session.get(Execution, execution_id, populate_existing=True)
    if execution is None or execution.lease_owner != owner or execution.status != "running":
        db.session.rollback()
        return
    ctx = _Context(execution, owner, config)
    now = utcnow()
    if not ctx.own():
        db.session.rollback()
        return
    execution.started_at = execution.started_at or now
    jobs.mark_started(ctx.job_id, now)
    db.session.commit()
    unfinished = db.session.scalars(
        select(Answer.id)
        .where(Answer.execution_id == execution_id, Answer.status.in_(ACTIVE))
        .order_by(Answer.question_index, Answer.run)
    ).all()
    db.session.commit()
    for answer_id in unfinished:
        if not _ask(ctx, answer_id):
            log.warning("execution %d: lease lost, leaving it to its new owner", execution_id)
            return
    _finish(ctx)


def _ask(ctx: _Context, answer_id: int) -> bool:
    """Asks one question until it ends; False when the lease was lost on the way."""
    while True:
        if not ctx.own():
            db.session.rollback()
            return False
        job = jobs.load_job(ctx.job_id)
        answer = db.session.get(Answer, answer_id, populate_existing=True)
        now = utcnow()
        if answer is None or answer.status not in ACTIVE:
            db.session.commit()
            return True
        if job.cancel_requested_at is not None:
            _end(answer, "cancelled", "cancelled before it was asked", now)
        elif ctx.problem:
            _end(answer, "failed", ctx.problem, now)
        elif job.deadline_at is not None and now >= job.deadline_at:
            _end(answer, "failed", jobs.DEADLINE_PASSED, now)
        elif answer.status == "running" and answer.attempts >= ctx.limits.max_attempts:
            # Recovered after its worker stopped mid-call as many times as it may be tried.
            _end(
                answer,
                "failed",
                f"the worker asking this stopped during each of {answer.attempts} attempts",
                now,
            )
        else:
            answer.status = "running"
            answer.attempts += 1
            # Read before the commit, which expires them (reading after costs a SELECT).
            prompt, deadline = answer.prompt, job.deadline_at
            db.session.commit()
            again = _call_and_record(ctx, answer_id, prompt, deadline)
            if again is None:
                return False
            if again:
                continue
            return True
        db.session.commit()
        return True


def _call_and_record(
    ctx: _Context, answer_id: int, prompt: str, deadline: datetime | None
) -> bool | None:
    """Makes one provider call and stores its outcome; True to try again, None if lease lost."""
    timeout_s = ctx.limits.call_timeout_s
    if deadline is not None:
        timeout_s = min(timeout_s, max(0.1, (deadline - utcnow()).total_seconds()))
    started = utcnow()
    result, error = None, None
    try:
        result = providers.call(ctx.region, ctx.model, prompt, timeout_s=timeout_s)
    except providers.ProviderError as exc:
        error = exc
    finished = utcnow()

    if not ctx.own():
        db.session.rollback()
        return None
    answer = db.session.get(Answer, answer_id, populate_existing=True)
    if answer is None or answer.status != "running":
        db.session.commit()
        return False
    if result is not None:
        _complete(answer, result)
        db.session.commit()
        return False
    # Only a failure needs the job (was it cancelled meanwhile?).
    job = jobs.load_job(ctx.job_id)
    answer.provider = ctx.region.provider
    answer.provider_model = ctx.model.provider_model or ctx.model.id
    answer.started_at, answer.latency_ms = started, _ms(finished - started)
    past_deadline = deadline is not None and finished >= deadline
    delay = _backoff(answer.attempts, error.retry_after)
    if job.cancel_requested_at is not None:
        _end(answer, "cancelled", f"cancelled while the call was in flight ({error.message})")
    elif past_deadline:
        _end(answer, "failed", f"{jobs.DEADLINE_PASSED} ({error.message})")
    elif error.transient and answer.attempts < ctx.limits.max_attempts:
        if deadline is not None and finished + timedelta(seconds=delay) >= deadline:
            _end(answer, "failed", f"{jobs.DEADLINE_PASSED} ({error.message})")
            db.session.commit()
            return False
        answer.error = f"attempt {answer.attempts} failed, trying again: {error.message}"
        db.session.commit()
        gevent.sleep(delay)
        return True
    else:
        tries = f" (after {answer.attempts} attempts)" if answer.attempts > 1 else ""
        _end(answer, "failed", error.message + tries)
    db.session.commit()
    return False


def _backoff(attempts: int, retry_after: float | None) -> float:
    """Returns the wait before the next attempt: the provider's Retry-After, else exponential."""
    if retry_after is not None:
        return min(BACKOFF_CAP_S, max(0.0, retry_after))
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1))


def _complete(answer: Answer, result: providers.ProviderResult) -> None:
    text = clean_output(result.text)
    answer.output_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if len(text) > MAX_OUTPUT_CHARS:
        text = (
            text[:MAX_OUTPUT_CHARS]
            + f"\n[truncated by the portal: the answer had {len(text)} characters]"
        )
    answer.output = text
    answer.status = "completed"
    answer.error = None
    answer.provider = result.provider
    answer.provider_model = result.provider_model
    answer.started_at, answer.finished_at = result.started_at, result.finished_at
    answer.latency_ms = result.latency_ms
    answer.prompt_tokens = result.prompt_tokens
    answer.completion_tokens = result.completion_tokens
    answer.classification = classify(answer)


def clean_output(text: str) -> str:
    """Returns model output as storable text: no NUL characters, no lone surrogates."""
    # PostgreSQL text cannot hold NUL, and a JSON string may carry unpaired surrogates.
    text = text.replace("\x00", "\ufffd")
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _end(answer: Answer, status: str, error: str, now: datetime | None = None) -> None:
    answer.status = status
    answer.error = error
    answer.finished_at = now or utcnow()
    answer.classification = classify(answer)


def classify(answer: Answer) -> str:
    """Returns the answer's class by the comparison rules (SPEC section 8)."""
    try:
        from .compare import classify as by_rules
    except ImportError:
        # Only while the comparison module is absent from a checkout.
        return "substantive" if answer.status == "completed" else "technical_failure"
    return by_rules(answer.output, status=answer.status, error=answer.error, prompt=answer.prompt)


def _finish(ctx: _Context) -> None:
    if not ctx.own():
        db.session.rollback()
        return
    execution = db.session.get(Execution, ctx.execution_id, populate_existing=True)
    answers = db.session.scalars(
        select(Answer)
        .where(Answer.execution_id == ctx.execution_id)
        .order_by(Answer.question_index, Answer.run)
        .execution_options(populate_existing=True)
    ).all()
    statuses = [a.status for a in answers]
    failed = [a for a in answers if a.status == "failed"]
    if all(s == "completed" for s in statuses):
        execution.status, execution.error = "completed", None
    elif "cancelled" in statuses and not failed:
        execution.status, execution.error = "cancelled", "cancelled"
    else:
        execution.status = "failed"
        first = failed[0].error if failed else "unfinished answers remain"
        execution.error = f"{len(failed)} of {len(answers)} answers failed: {first}"
    execution.finished_at = utcnow()
    # lease_owner stays as the record of which worker finished it; the lease itself ends.
    execution.lease_expires_at = None
    db.session.commit()
    status = jobs.refresh_status(ctx.job_id)
    db.session.commit()
    if status in JOB_ENDED:
        reports.precompute(ctx.job_id)


def _ms(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1000)
