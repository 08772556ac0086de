"""Group commits: one writer per worker process commits the answers that end together.

An execution whose call succeeded hands its `AfterCall` (store this answer, start the next) to
the process's `Writer` and waits. The writer's greenlet takes every write queued while it was
busy with the last transaction, plus those queued by the greenlets that woke in the same turn
of the event loop, and writes them all in one transaction of its own session
(`answer_writes.write`): one lease renewal for every execution of the batch, the stores, one
statement starting every next answer, one commit. Only after that commit does any of them
return, so a next call still starts after its attempt is committed.

The durability rule (docs/reliability.md, "Group commits"): a write is acknowledged once it is
committed, never before. A worker killed with writes queued or in an uncommitted batch loses
those answers' outcomes, at most one answer per running execution, each left `running` with
its attempt counted; the next owner asks it again, and the attempts counted before every call
keep any answer from being asked more than `max_attempts` times in all.

When a batch fails (a database error, a value the driver cannot send), each of its writes is
tried again alone, in a transaction of its own, so one write that cannot be stored cannot fail
the others; the error of a write that fails alone goes back to its execution, which stops as on
any database error.
"""

from __future__ import annotations

import logging

import gevent
import gevent.event
from sqlalchemy.exc import SQLAlchemyError

from portal.db import db
from portal.engine import answer_writes, metrics
from portal.times import utcnow

log = logging.getLogger(__name__)


class Writer:
    """Commits the `AfterCall` writes of one worker process's executions in batches."""

    def __init__(self, app, owner: str, lease_s: float):
        self.app = app
        self.owner = owner
        self.lease_s = lease_s
        self._queue: list[tuple[answer_writes.AfterCall, gevent.event.AsyncResult]] = []
        self._ready = gevent.event.Event()
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> Writer:
        """Starts the writer's greenlet."""
        self.greenlet = gevent.spawn(self._run)
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stops the writer's greenlet; writes still queued fail with GreenletExit."""
        if self.greenlet is not None:
            self.greenlet.kill(timeout=timeout)
        self._fail(self._take(), gevent.GreenletExit())

    def write(self, write: answer_writes.AfterCall) -> None:
        """Queues one execution's writes and returns once they are committed (or raises the
        database error that kept them from it)."""
        done = gevent.event.AsyncResult()
        self._queue.append((write, done))
        self._ready.set()
        done.get()

    def _take(self) -> list:
        batch, self._queue = self._queue, []
        return batch

    def _run(self) -> None:
        while True:
            self._ready.wait()
            # One turn of the loop: greenlets whose calls ended at the same time queue theirs.
            gevent.sleep(0)
            self._ready.clear()
            batch = self._take()
            if batch:
                self._commit(batch)

    def _commit(self, batch: list) -> None:
        try:
            with self.app.app_context():
                try:
                    self._transaction(batch)
                finally:
                    db.session.remove()
        except gevent.GreenletExit as exc:
            self._fail(batch, exc)
            raise
        except Exception as exc:  # noqa: BLE001 - the writer must outlive any one batch
            if len(batch) > 1:
                log.warning(
                    "a batch of %d answer writes failed (%s); one at a time", len(batch), exc
                )
                for item in batch:
                    self._commit([item])
                return
            if not isinstance(exc, SQLAlchemyError):
                log.exception("an answer write failed")
            self._fail(batch, exc)
            return
        for _, done in batch:
            done.set(None)

    def _transaction(self, batch: list) -> None:
        try:
            answer_writes.write(
                db.session, self.owner, self.lease_s, [w for w, _ in batch], utcnow()
            )
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
        metrics.WRITE_BATCHES.observe(len(batch))

    @staticmethod
    def _fail(batch: list, exc: BaseException) -> None:
        for _, done in batch:
            if not done.ready():
                done.set_exception(exc)
