"""Runs the judge's work in a dispatcher's pool (portal/engine/pool.py): labels, then summaries.

Judge calls take the same pool slots and the same judge-region slot as the answers of that
region, so the pool size and the region's cap bound answers and judge calls together.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from portal.db import db
from portal.judge.labels import claim, lease_s, run_judgement
from portal.judge.models import Judgement
from portal.judge.summary import claim_summaries, run_summary

log = logging.getLogger(__name__)


def start_judging(dispatcher) -> int:
    """Claims judge work for the judge region's free slots of `dispatcher`; returns how many."""
    setting = dispatcher.config.judge
    if setting is None:
        return 0
    pool, slot = dispatcher.pool, dispatcher.slots.get(setting.region)
    free = min(pool.free_count(), slot.counter if slot is not None else pool.free_count())
    if free <= 0:
        return 0
    lease = lease_s(dispatcher.config.execution)
    tasks = [(run_judgement, i) for i in claim(Judgement, free, dispatcher.owner, lease)]
    if setting.summary and len(tasks) < free:
        more = claim_summaries(free - len(tasks), dispatcher.owner, lease)
        tasks += [(run_summary, i) for i in more]
    db.session.commit()
    for run, row_id in tasks:
        if slot is not None:
            slot.acquire(blocking=False)
        pool.spawn(_task, dispatcher, run, row_id, slot)
    return len(tasks)


def _task(dispatcher, run, row_id: int, slot) -> None:
    try:
        with dispatcher.app.app_context():
            try:
                run(row_id, dispatcher.owner, dispatcher.config)
            except SQLAlchemyError:
                # Its lease expires and the judge call is taken again; the job is untouched.
                db.session.rollback()
                log.exception("judge task %s(%d) stopped on a database error", run.__name__, row_id)
            finally:
                db.session.remove()
    finally:
        if slot is not None:
            slot.release()
