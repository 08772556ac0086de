"""The execution engine's pool: claims queued executions from the database and runs them.

Each worker process runs one `Dispatcher`. Its loop claims executions with a lease (an atomic
UPDATE: `FOR UPDATE SKIP LOCKED` on PostgreSQL, one write statement under SQLite's write lock),
runs each in a bounded `gevent.pool.Pool` whose size is `max_concurrency`, renews the leases
while they run and releases them when done. Running one execution is `execution.run_execution`:
it asks its questions in order, one call at a time, so the pool bounds the provider calls in
flight; a region's own `max_concurrency` caps how many of the pool's slots its executions may
hold. A worker that dies leaves leases that expire; any dispatcher then takes those executions
again and re-runs only their unfinished answers. See docs/architecture.md.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import datetime, timedelta

import gevent
import gevent.event
from gevent.lock import BoundedSemaphore
from gevent.pool import Pool
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..config import BeaconConfig
from ..db import db
from ..models import Execution, claimable, utcnow
from . import jobs

# renew lives with the execution, whose every write renews its lease; the pool's heartbeat
# uses it too. classify and clean_output stay importable from here.
from .execution import classify as classify
from .execution import clean_output as clean_output
from .execution import renew, run_execution

log = logging.getLogger(__name__)

POLL_S = 0.5
SWEEP_S = 2.0


def new_owner() -> str:
    """Returns a lease owner name unique to this process: host, pid and a random tag."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{os.urandom(4).hex()}"


def waiting_by_region(now: datetime | None = None) -> dict[str, int]:
    """Counts claimable executions (queued, or leased by a worker that stopped) per region."""
    now = now or utcnow()
    rows = db.session.execute(
        select(Execution.region, func.count()).where(claimable(now)).group_by(Execution.region)
    )
    return {region: n for region, n in rows}


def claim(region: str, limit: int, owner: str, lease_s: float, now=None) -> list[int]:
    """Leases up to `limit` claimable executions of one region to `owner`; returns their ids."""
    now = now or utcnow()
    picked = (
        select(Execution.id)
        .where(Execution.region == region, claimable(now))
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
        .where(Execution.id.in_(picked), claimable(now))
        .values(**lease)
        .returning(Execution.id)
    )
    return sorted(db.session.scalars(stmt).all())


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
