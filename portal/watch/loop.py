"""The watcher: in each worker process, the greenlets that submit schedules, compare ended jobs
with earlier runs and deliver webhooks (SPEC section 12).

Every `TICK_S` each greenlet asks the database what is due; nothing is kept in a timer of its
own, so any number of processes and instances, and restarts, agree: a slot's unique row decides
who submits it (portal/watch/schedules.py), a lease who compares a job (`scans`) or sends a
delivery (`webhooks`). `BEACON_SCHEDULER=0` turns submission off in a process; comparing and
delivering go on wherever a watcher runs. The web workers start one in gunicorn.conf.py, the
`worker` process in `flask beacon worker`.
"""

from __future__ import annotations

import logging
import os

import gevent
import gevent.event
from gevent.pool import Pool
from sqlalchemy.exc import SQLAlchemyError

from portal.config import BeaconConfig
from portal.db import db
from portal.engine.pool import new_owner
from portal.times import utcnow
from portal.watch import scans, schedules, webhooks

log = logging.getLogger(__name__)

TICK_S = 1.0
# Webhook attempts in flight per process: a hanging receiver takes one, the others go on.
DELIVERY_SLOTS = 4


def scheduler_enabled(environ=os.environ) -> bool:
    """False when BEACON_SCHEDULER=0 turns schedule submission off in this process."""
    return environ.get("BEACON_SCHEDULER", "1").strip() != "0"


class Watcher:
    """Submits due schedule slots, compares ended jobs, delivers webhooks, in one process."""

    def __init__(self, app, *, schedules_on: bool = True, tick_s: float = TICK_S):
        self.app = app
        self.config: BeaconConfig = app.extensions["beacon"].config
        self.version = app.config.get("BEACON_VERSION", "")
        self.owner = new_owner()
        self.schedules_on = schedules_on
        self.tick_s = tick_s
        self.pool = Pool(DELIVERY_SLOTS)
        self._stopping = gevent.event.Event()
        self._greenlets: list[gevent.Greenlet] = []

    def start(self) -> Watcher:
        """Starts the three loops as greenlets."""
        loops = [self.scan_once, self.deliver_once]
        if self.schedules_on and self.config.schedules:
            loops.insert(0, self.schedule_once)
        self._greenlets = [gevent.spawn(self._every_tick, step) for step in loops]
        log.info(
            "watcher %s started: %d schedule(s)%s",
            self.owner,
            len(self.config.schedules),
            "" if self.schedules_on else ", submission off (BEACON_SCHEDULER=0)",
        )
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the loops; deliveries in flight get `timeout` s, their leases lapse otherwise."""
        self._stopping.set()
        gevent.killall(self._greenlets, timeout=2.0)
        self.pool.join(timeout=max(0.0, timeout))
        self.pool.kill(timeout=1.0)

    def _every_tick(self, step) -> None:
        while not self._stopping.is_set():
            with self.app.app_context():
                try:
                    step()
                except SQLAlchemyError:
                    db.session.rollback()
                    log.exception("watcher pass failed; trying again")
                finally:
                    db.session.remove()
            self._stopping.wait(self.tick_s)

    def schedule_once(self) -> list[str]:
        """Submits the current slot of every schedule that no process has taken yet."""
        now = utcnow()
        submitted = []
        for schedule in self.config.schedules.values():
            job_id = schedules.submit_slot(schedule, now)
            if job_id:
                submitted.append(job_id)
        return submitted

    def scan_once(self) -> int:
        """Compares the jobs that ended since the last pass with earlier runs."""
        return scans.scan_due(self.owner)

    def deliver_once(self) -> int:
        """Starts an attempt for each due webhook delivery there is a free slot for."""
        watch = self.config.watch
        ids = webhooks.claim(self.owner, watch, self.pool.free_count())
        db.session.commit()
        for delivery_id in ids:
            self.pool.spawn(self._deliver, delivery_id)
        return len(ids)

    def _deliver(self, delivery_id: int) -> None:
        with self.app.app_context():
            try:
                webhooks.deliver(delivery_id, self.owner, self.config.watch, self.version)
            except SQLAlchemyError:
                db.session.rollback()
                log.exception("webhook delivery %d failed to record; its lease lapses", delivery_id)
            finally:
                db.session.remove()


def start_watcher(app) -> Watcher:
    """Starts this process's watcher; BEACON_SCHEDULER=0 leaves schedule submission out."""
    return Watcher(app, schedules_on=scheduler_enabled()).start()
