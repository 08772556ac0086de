"""Schedules (SPEC section 12): the portal submits a schedule's JobSpec, signed with its own key,
once per slot of `every` seconds, across every worker process and instance.

A slot is `every` seconds long and starts on a multiple of `every` since the Unix epoch (UTC), so
every process computes the same slots from its own clock. The slot's row in `schedule_runs` is
unique per (schedule, slot): whoever inserts it submits the job, in the same transaction, so a
crash between the two loses nothing and doubles nothing; everyone else's insert fails and they
move on. A slot is only taken while it is fresh (`GRACE_S`): a slot missed while nothing ran is
skipped, not made up. See docs/watching.md.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import desc, select
from sqlalchemy.exc import IntegrityError

from portal import settings
from portal.config import BeaconConfig
from portal.db import db
from portal.errors import Conflict, DomainError, NotFound
from portal.intake import signing
from portal.intake import submit as intake
from portal.models import Job
from portal.times import iso, utcnow
from portal.watch.config import Schedule
from portal.watch.models import ScheduleRun

log = logging.getLogger(__name__)

SLOT_FORMAT = "%Y%m%dT%H%M%SZ"
# A slot is taken at most this late (and never later than its own end).
GRACE_S = 300
RECENT_RUNS = 5
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def slot_start(every_s: int, now: datetime) -> datetime:
    """Returns the UTC start of the slot `now` falls in."""
    elapsed = int((now - EPOCH).total_seconds())
    return EPOCH + timedelta(seconds=elapsed - elapsed % every_s)


def next_run_at(schedule: Schedule, now: datetime) -> datetime:
    """Returns the start of the next slot."""
    return slot_start(schedule.every_s, now) + timedelta(seconds=schedule.every_s)


def slot_job_id(name: str, slot: datetime) -> str:
    """Returns the job id of a schedule's slot: `sched-<name>-<YYYYMMDDTHHMMSSZ>`."""
    return f"sched-{name}-{slot.astimezone(UTC).strftime(SLOT_FORMAT)}"


def find_schedule(name: str, config: BeaconConfig) -> Schedule:
    """Returns the configured schedule or raises 404 schedule_not_found."""
    schedule = config.schedules.get(name)
    if schedule is None:
        known = ", ".join(sorted(config.schedules)) or "none"
        raise NotFound("schedule_not_found", f"no schedule {name!r} (configured: {known})")
    return schedule


def job_spec(schedule: Schedule, job_id: str, now: datetime, slot: datetime | None) -> dict:
    """Returns the schedule's unsigned JobSpec with a fresh nonce and timestamp."""
    metadata = {
        "models": list(schedule.models),
        "nonce": secrets.token_hex(16),
        "timestamp": iso(now, "seconds"),
        "schedule": schedule.name,
    }
    if slot is not None:
        metadata["slot"] = iso(slot, "seconds")
    spec = {
        "id": job_id,
        "version": "v1",
        "benchmark": {
            "name": f"schedule {schedule.name}",
            "description": f"Submitted by the portal every {schedule.every}.",
        },
        "constraints": {"regions": list(schedule.regions)},
        "metadata": metadata,
        "questions": list(schedule.questions),
        "runs": schedule.runs,
        "created_at": iso(now, "seconds"),
    }
    if schedule.languages:
        spec["languages"] = list(schedule.languages)
    return spec


def submit_slot(schedule: Schedule, now: datetime | None = None) -> str | None:
    """Submits the job of the slot `now` falls in unless it is stale or some process already
    took it; returns the job id when this call submitted it."""
    now = now or utcnow()
    slot = slot_start(schedule.every_s, now)
    if (now - slot).total_seconds() > min(GRACE_S, schedule.every_s):
        return None
    taken = select(ScheduleRun.id).where(
        ScheduleRun.schedule == schedule.name, ScheduleRun.slot_at == slot
    )
    if db.session.scalar(taken) is not None:
        db.session.rollback()
        return None
    job_id = slot_job_id(schedule.name, slot)
    # The claim: inserted first and flushed, so a second process's insert waits for our commit
    # (PostgreSQL) or our write lock (SQLite) and then fails; the job commits with it.
    db.session.add(ScheduleRun(schedule=schedule.name, slot_at=slot, job_id=job_id, created_at=now))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return None
    try:
        _submit(schedule, job_id, slot)
    except Conflict:
        # The job id is taken: another process stored this slot's job first.
        db.session.rollback()
        return None
    except DomainError as exc:
        db.session.rollback()
        _record_refusal(schedule, slot, now, exc)
        return None
    log.info("schedule %s: submitted job %s for slot %s", schedule.name, job_id, iso(slot))
    return job_id


def run_now(schedule: Schedule, now: datetime | None = None) -> Job:
    """Submits the schedule's job at once, outside its slots (an admin asked for it)."""
    now = now or utcnow()
    job_id = f"sched-{schedule.name}-{now.astimezone(UTC).strftime(SLOT_FORMAT)}-manual"
    db.session.add(ScheduleRun(schedule=schedule.name, slot_at=None, job_id=job_id, created_at=now))
    try:
        return _submit(schedule, job_id, None)
    except DomainError:
        db.session.rollback()
        raise


def _submit(schedule: Schedule, job_id: str, slot: datetime | None) -> Job:
    s = settings.current()
    # Signed now, whatever time the slot was computed for: the timestamp says when it was signed.
    signed = signing.sign(job_spec(schedule, job_id, utcnow(), slot), s.signing_seed)
    ctx = intake.IntakeContext(s.config, s.trusted_keys, s.portal_public_key)
    # submit_jobspec commits: the run row pending in this session commits with the job.
    job, _ = intake.submit_jobspec(json.dumps(signed), ctx, source="schedule")
    return job


def _record_refusal(schedule: Schedule, slot: datetime, now: datetime, exc: DomainError) -> None:
    """Takes the slot with the refusal instead of a job, so it is tried (and logged) once."""
    error = f"{exc.code}: {exc.message}"
    db.session.add(ScheduleRun(schedule=schedule.name, slot_at=slot, error=error, created_at=now))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return
    log.warning("schedule %s: slot %s refused: %s", schedule.name, iso(slot), error)


def schedule_items(config: BeaconConfig, now: datetime | None = None, recent: int = 0) -> list:
    """Returns each schedule with its next run and last job (and `recent` runs when asked)."""
    now = now or utcnow()
    items = []
    for schedule in config.schedules.values():
        last = db.session.scalar(
            select(ScheduleRun.job_id)
            .where(ScheduleRun.schedule == schedule.name, ScheduleRun.job_id.is_not(None))
            .order_by(desc(ScheduleRun.id))
            .limit(1)
        )
        item = {
            "name": schedule.name,
            "every": schedule.every,
            "every_s": schedule.every_s,
            "questions": list(schedule.questions),
            "models": list(schedule.models),
            "regions": list(schedule.regions),
            "languages": list(schedule.languages),
            "runs": schedule.runs,
            "next_run_at": iso(next_run_at(schedule, now), "seconds"),
            "last_job_id": last,
        }
        if recent:
            item["recent"] = recent_runs(schedule.name, recent)
        items.append(item)
    return items


def recent_runs(name: str, limit: int = RECENT_RUNS) -> list[dict]:
    """Returns a schedule's newest runs with their jobs' status, newest first."""
    rows = db.session.execute(
        select(ScheduleRun, Job.status, Job.finished_at)
        .outerjoin(Job, Job.id == ScheduleRun.job_id)
        .where(ScheduleRun.schedule == name)
        .order_by(desc(ScheduleRun.id))
        .limit(limit)
    ).all()
    return [
        {**run.to_dict(), "status": status, "finished_at": iso(finished)}
        for run, status, finished in rows
    ]
