"""The execution engine's pool: claims queued executions from the database and runs them.

Each worker process runs one `Dispatcher`. Its loop claims executions with a lease (an atomic
UPDATE: `FOR UPDATE SKIP LOCKED` on PostgreSQL, one write statement under SQLite's write lock),
runs each in a bounded `gevent.pool.Pool` whose size is `max_concurrency`, renews the leases
while they run and releases them when done. Running one execution is `execution.run_execution`:
it asks its questions in order, one call at a time, so the pool bounds the provider calls in
flight. A region's own `max_concurrency` holds across every process sharing the database:
`claim` leases no more of its executions than the cap leaves room for, counting the live leases
of all processes under a per-region lock; its `rate_limit` is counted in shared storage
(portal/engine/region_rate.py). A worker that dies leaves leases that expire; any dispatcher
then takes those executions again and re-runs only their unfinished answers. See
docs/architecture.md.
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
from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from portal import logs
from portal.config import BeaconConfig
from portal.db import db
from portal.engine import jobs, metrics, wake
from portal.engine.execution import run_execution
from portal.engine.leases import renew
from portal.engine.region_rate import RegionRates
from portal.engine.writer import Writer
from portal.judge import dispatch as judge_dispatch
from portal.models import Execution, claimable
from portal.provenance import cosigning, receipts
from portal.status import RunStatus
from portal.times import utcnow

log = logging.getLogger(__name__)

POLL_S = 0.5
SWEEP_S = 2.0


def new_owner() -> str:
    """Returns a lease owner name unique to this process: host, pid and a random tag."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{os.urandom(4).hex()}"


def _live(now: datetime):
    """A lease some worker holds now: the execution counts against its region's cap."""
    return and_(
        Execution.status == RunStatus.RUNNING,
        Execution.lease_expires_at.is_not(None),
        Execution.lease_expires_at >= now,
    )


def region_lock_key(region: str) -> int:
    """Returns the PostgreSQL advisory-lock key of one region's claims (a signed 64-bit int)."""
    digest = hashlib.sha256(f"beacon-region-claim:{region}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def live_in_region(region: str, now: datetime | None = None) -> int:
    """Counts one region's executions under a live lease: its calls in flight, at most."""
    now = now or utcnow()
    return db.session.scalar(
        select(func.count()).select_from(Execution).where(Execution.region == region, _live(now))
    )


def waiting_by_region(now: datetime | None = None) -> dict[str, int]:
    """Counts claimable executions (queued, or leased by a worker that stopped) per region."""
    now = now or utcnow()
    rows = db.session.execute(
        select(Execution.region, func.count()).where(claimable(now)).group_by(Execution.region)
    )
    return {region: n for region, n in rows}


def claim(
    region: str, limit: int, owner: str, lease_s: float, now=None, cap: int | None = None
) -> list[int]:
    """Leases up to `limit` claimable executions of one region to `owner`; returns their ids.

    With a `cap` (the region's max_concurrency) it also leaves the region's executions under a
    live lease, in every process sharing the database, at or below the cap. The decision is
    serialized per region: a transaction-scoped advisory lock on PostgreSQL, the write lock of
    one statement on SQLite. The caller commits, which ends the lock.
    """
    now = now or utcnow()
    lease = {
        "status": RunStatus.RUNNING,
        "lease_owner": owner,
        "lease_expires_at": now + timedelta(seconds=lease_s),
    }
    picked = select(Execution.id).where(Execution.region == region, claimable(now))
    picked = picked.order_by(Execution.id)
    if db.session.get_bind().dialect.name == "postgresql":
        if cap is not None:
            # Held until the commit: the next claimer of this region counts after our UPDATE.
            db.session.execute(select(func.pg_advisory_xact_lock(region_lock_key(region))))
            limit = min(limit, cap - live_in_region(region, now))
            if limit <= 0:
                return []
        # The rows stay locked until commit and SKIP LOCKED hands each to one claimer. (A
        # LIMIT subquery inside the UPDATE itself may be planned to lease more rows than asked.)
        ids = list(db.session.scalars(picked.limit(limit).with_for_update(skip_locked=True)))
        if ids:
            db.session.execute(update(Execution).where(Execution.id.in_(ids)).values(**lease))
        return sorted(ids)
    # SQLite: one statement counts, picks and leases under the write lock, so nobody picks in
    # between; the cap's room is computed inside it.
    if cap is not None:
        live = (
            select(func.count())
            .select_from(Execution)
            .where(Execution.region == region, _live(now))
            .scalar_subquery()
        )
        picked = picked.limit(func.max(0, func.min(limit, cap - live)))
    else:
        picked = picked.limit(limit)
    stmt = (
        update(Execution)
        .where(Execution.id.in_(picked), claimable(now))
        .values(**lease)
        .returning(Execution.id)
    )
    return sorted(db.session.scalars(stmt).all())


def release(owner: str, ids: list[int] | None = None) -> int:
    """Hands the executions `owner` is running (or those of them in `ids`) back to the queue."""
    stmt = update(Execution).where(
        Execution.lease_owner == owner, Execution.status == RunStatus.RUNNING
    )
    if ids is not None:
        stmt = stmt.where(Execution.id.in_(ids))
    rows = db.session.execute(
        stmt.values(status=RunStatus.QUEUED, lease_owner=None, lease_expires_at=None).returning(
            Execution.id, Execution.job_id, Execution.model_id, Execution.region
        )
    ).all()
    for execution_id, job_id, model, region in rows:
        labels = {"execution": execution_id, "job": job_id, "model": model, "region": region}
        logs.execution_state(labels, RunStatus.QUEUED)
    return len(rows)


def lapsed(region: str, now: datetime | None = None) -> set[int]:
    """Returns the region's executions whose worker stopped renewing their lease."""
    now = now or utcnow()
    return set(
        db.session.scalars(
            select(Execution.id).where(
                Execution.region == region,
                Execution.status == RunStatus.RUNNING,
                Execution.lease_expires_at < now,
            )
        )
    )


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
        # A region's own cap holds across every process: claim() enforces it in the database,
        # and so does its rate_limit, through the shared rate-limit storage.
        self.caps = {r.id: r.max_concurrency for r in self.config.regions.values()}
        storage = app.extensions["beacon"].rate_limit_storage
        self.rates = RegionRates(self.config.regions.values(), storage)
        self.running: set[int] = set()
        # One writer commits the answers of this process's executions that end together.
        self.writer = Writer(app, self.owner, limits.lease_s)
        # Draining: no more claims and no new calls; the heartbeat goes on until `_stopping`.
        self._draining = gevent.event.Event()
        self._stopping = gevent.event.Event()
        self._wake = gevent.event.Event()  # set by wake.new_work() while run() runs
        self._greenlets: list[gevent.Greenlet] = []
        self._last_sweep = 0.0

    def start(self) -> Dispatcher:
        """Starts the claim loop and the lease heartbeat as greenlets."""
        self.writer.start()
        self._greenlets = [gevent.spawn(self.run), gevent.spawn(self._heartbeat)]
        # Witnesses are asked off the append path, by a greenlet of this process (SPEC 9).
        cosigner = cosigning.start(self.app, self.owner)
        if cosigner is not None:
            self._greenlets.append(cosigner)
        log.info("dispatcher %s started, pool %d", self.owner, self.pool.size)
        return self

    def drain(self) -> None:
        """Stops claiming and starting calls; the calls in flight go on and store their answers."""
        if not self._draining.is_set():
            log.info("dispatcher %s draining: %d executions running", self.owner, len(self.running))
        self._draining.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Drains, waits up to `timeout` s for the calls in flight, then hands back the rest."""
        self.drain()
        if not self.pool.join(timeout=max(0.0, timeout)):
            log.warning(
                "dispatcher %s: %d executions still running after %.0f s; stopping them",
                self.owner,
                len(self.running),
                timeout,
            )
        self._stopping.set()
        gevent.killall(self._greenlets, timeout=2.0)
        self.pool.kill(timeout=2.0)
        # Last: the executions stopped above may have been waiting for their writes.
        self.writer.stop()
        with self.app.app_context():
            try:
                released = release(self.owner)
                db.session.commit()
            except SQLAlchemyError:
                db.session.rollback()
                log.exception("could not release the leases of %s", self.owner)
                return
            finally:
                db.session.remove()
        metrics.HANDED_BACK.inc(released)
        metrics.set_pool(0, 0)
        log.info("dispatcher %s stopped, %d executions handed back", self.owner, released)

    def wait(self) -> None:
        """Blocks until the dispatcher stops."""
        self._stopping.wait()

    def run(self) -> None:
        """Claims and starts work until stopped; recovers expired leases on every pass."""
        wake.listen(self._wake)
        try:
            self._claim_until_drained()
        finally:
            wake.forget(self._wake)

    def _claim_until_drained(self) -> None:
        while not self._draining.is_set():
            with self.app.app_context():
                try:
                    self.tick()
                except SQLAlchemyError:
                    db.session.rollback()
                    log.exception("dispatcher pass failed; trying again")
                finally:
                    db.session.remove()
            metrics.set_pool(self.pool.size - self.pool.free_count(), self.pool.free_count())
            # Polls for other processes' work; wakes at once for this process's own.
            gevent.wait([self._draining, self._wake], timeout=self.poll_s, count=1)
            self._wake.clear()

    def tick(self) -> int:
        """Runs one pass: ends overdue jobs, then claims what the free slots allow."""
        now_mono = time.monotonic()
        if now_mono - self._last_sweep >= SWEEP_S:
            self._last_sweep = now_mono
            jobs.end_overdue()
            jobs.settle_orphans()
            db.session.commit()
            if receipts.issue_recent():
                cosigning.log_grew()
        started = 0
        waiting = waiting_by_region()
        db.session.commit()
        for region, count in waiting.items():
            slot = self.slots.get(region)
            free = min(self.pool.free_count(), slot.counter if slot else self.pool.free_count())
            if free <= 0 or count <= 0 or self._draining.is_set():
                continue
            expired = lapsed(region)
            lease_s = self.config.execution.lease_s
            ids = claim(region, min(free, count), self.owner, lease_s, cap=self.caps.get(region))
            db.session.commit()
            metrics.LEASE_RECOVERIES.inc(len(expired.intersection(ids) - self.running))
            for execution_id in ids:
                if execution_id in self.running:
                    # Our own lease lapsed (the process stalled) and we claimed it back: the
                    # task still running it goes on; a second one would ask its questions twice.
                    continue
                if slot is not None:
                    slot.acquire(blocking=False)
                self.running.add(execution_id)
                task = self.pool.spawn(self._task, execution_id, slot)
                # Linked after the pool's own discard, so the slot is free when the claim runs.
                task.rawlink(self._slot_freed)
                started += 1
        # What slots are left may run the judge's calls (only with [judge] configured).
        return started + judge_dispatch.start_judging(self)

    def _task(self, execution_id: int, slot: BoundedSemaphore | None) -> None:
        try:
            with self.app.app_context():
                try:
                    ended = run_execution(
                        execution_id,
                        self.owner,
                        self.config,
                        self.rates,
                        self._draining.is_set,
                        self.writer.write,
                    )
                    if not ended and self._draining.is_set():
                        self._hand_back(execution_id)
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

    def _slot_freed(self, _task) -> None:
        self._wake.set()  # claim the next execution now, not at the next poll

    def _hand_back(self, execution_id: int) -> None:
        """Releases a lease at once while draining, so another process can take it now."""
        if release(self.owner, [execution_id]):
            metrics.HANDED_BACK.inc()
            log.info("execution %d handed back to the queue", execution_id)
        db.session.commit()

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
