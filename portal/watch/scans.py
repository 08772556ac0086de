"""Which ended jobs still have to be compared with earlier runs, and who compares each.

Any worker process's watcher (portal/watch/loop.py) looks, every second or so, for jobs that
ended in the last `WINDOW` and were not compared since they ended, and claims each with a lease
in `change_scans` (an insert that only one process wins, or a conditional update of an expired
lease), so two processes never compare the same job at once and a process that stops hands its
claim on when the lease ends. A job is looked at again once the judge has labelled its answers,
for label changes. Comparing writes the changes, their webhook deliveries and the scan's end in
one transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from portal import settings
from portal.compare import report
from portal.db import db
from portal.judge.models import Judgement
from portal.models import ACTIVE, JOB_ENDED, Job
from portal.times import utcnow
from portal.watch import changes
from portal.watch.models import ChangeScan

log = logging.getLogger(__name__)

# Jobs that ended longer ago than this are not compared any more (nor are their labels awaited).
WINDOW = timedelta(days=1)
LEASE_S = 120
BATCH = 5


def due(now: datetime | None = None, limit: int = BATCH) -> list[str]:
    """Returns ids of recently ended jobs to compare, or to look at again for labels."""
    now = now or utcnow()
    free = or_(ChangeScan.lease_expires_at.is_(None), ChangeScan.lease_expires_at < now)
    labelled = ~exists().where(Judgement.job_id == Job.id, Judgement.status.in_(ACTIVE))
    query = (
        select(Job.id)
        .outerjoin(ChangeScan, ChangeScan.job_id == Job.id)
        .where(Job.status.in_(JOB_ENDED), Job.finished_at > now - WINDOW)
        .where(
            or_(
                ChangeScan.job_id.is_(None),
                and_(
                    free,
                    or_(
                        ChangeScan.scanned_at.is_(None),
                        ChangeScan.job_finished_at != Job.finished_at,
                        and_(ChangeScan.labels_done.is_(False), labelled),
                    ),
                ),
            )
        )
        .order_by(Job.finished_at)
        .limit(limit)
    )
    return list(db.session.scalars(query))


def claim(job_id: str, owner: str, now: datetime | None = None) -> bool:
    """Leases the comparison of `job_id` to `owner`; False when another process holds it."""
    now = now or utcnow()
    lease = {"lease_owner": owner, "lease_expires_at": now + timedelta(seconds=LEASE_S)}
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    inserted = db.session.scalar(
        dialect.insert(ChangeScan)
        .values(job_id=job_id, labels_done=False, **lease)
        .on_conflict_do_nothing(index_elements=["job_id"])
        .returning(ChangeScan.job_id)
    )
    if inserted is not None:
        return True
    taken = db.session.execute(
        update(ChangeScan)
        .where(
            ChangeScan.job_id == job_id,
            or_(ChangeScan.lease_expires_at.is_(None), ChangeScan.lease_expires_at < now),
        )
        .values(**lease)
    )
    return taken.rowcount == 1


def scan(job_id: str, owner: str) -> list:
    """Compares a claimed job's answers with the earlier ones and ends its scan; returns the
    changes it added. Commits."""
    row = db.session.get(ChangeScan, job_id, populate_existing=True)
    job = db.session.scalar(select(Job).where(Job.id == job_id))
    if row is None or row.lease_owner != owner or job is None:
        db.session.rollback()
        return []
    finished_at = job.finished_at
    if row.scanned_at is None or row.job_finished_at != finished_at:
        # The answers' classes follow the job's comparison: compute it first if nobody has.
        report.precompute(job_id)
    config = settings.current().config
    added = changes.detect(job_id, config.watch)
    row = db.session.get(ChangeScan, job_id)
    row.job_finished_at = finished_at
    row.scanned_at = utcnow()
    row.lease_owner, row.lease_expires_at = None, None
    row.labels_done = config.judge is None or not db.session.scalar(
        select(exists().where(Judgement.job_id == job_id, Judgement.status.in_(ACTIVE)))
    )
    db.session.commit()
    if added:
        log.info("job %s: %d change(s) since earlier runs", job_id, len(added))
    return added


def scan_due(owner: str, now: datetime | None = None) -> int:
    """Claims and compares the jobs that are due; returns how many it compared."""
    done = 0
    for job_id in due(now):
        if not claim(job_id, owner, now):
            db.session.rollback()
            continue
        db.session.commit()
        try:
            scan(job_id, owner)
        except SQLAlchemyError:
            # The lease lapses and another pass (here or elsewhere) compares the job again.
            db.session.rollback()
            log.exception("comparing job %s with earlier runs failed", job_id)
            continue
        done += 1
    return done
