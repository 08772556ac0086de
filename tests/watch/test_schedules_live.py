"""Exactly one job per schedule slot across processes and a restart (SPEC section 12).

Two gunicorn workers started from the Procfile's `web` line, on SQLite or on PostgreSQL (with
TEST_DATABASE_URL), run a schedule every 5 s for 30 s; the server is stopped and started again
and runs it on. Every slot that has a row has exactly one job, under its own id, and no slot
has two, whichever worker took it. The `worker` line runs schedules as the web workers do.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.models import Job
from portal.watch.models import ScheduleRun
from portal.watch.schedules import slot_job_id, slot_start
from tests.support.live_server import ROOT, procfile, shell_env, start_web, wait_until
from tests.support.workers import Engine, clean_env

pytestmark = pytest.mark.live

EVERY_S = 5
SCHEDULE = (
    '\n[schedules.pulse]\nquestions = ["identity_basic"]\nmodels = ["llama3.2-1b"]\n'
    f'regions = ["us-east"]\nevery = "{EVERY_S}s"\n'
)


@pytest.fixture
def engine(tmp_path, database_url):
    engine = Engine(tmp_path, database_url)
    yield engine
    engine.close()


def slot_rows(app) -> list[tuple]:
    with app.app_context():
        rows = db.session.execute(
            select(ScheduleRun.slot_at, ScheduleRun.job_id, ScheduleRun.error).order_by(
                ScheduleRun.slot_at
            )
        ).all()
        db.session.remove()
    return [tuple(r) for r in rows]


def scheduled_jobs(app) -> list[str]:
    with app.app_context():
        ids = db.session.scalars(select(Job.id).where(Job.id.like("sched-pulse-%"))).all()
        db.session.remove()
    return list(ids)


def run_web_until(env, log_path, app, slots: int) -> list[str]:
    """Serves with two workers until `slots` more slots have rows; returns the server's log."""
    before = len(slot_rows(app))
    web = start_web(env, log_path)
    try:
        web.wait_ready(timeout=60, interval=0.2)
        wait_until(
            lambda: len(slot_rows(app)) >= before + slots,
            timeout=EVERY_S * slots + 60,
            interval=0.5,
            what=f"{slots} more schedule slots",
        )
    finally:
        web.stop(timeout=30)
    return web.log()


def test_two_workers_submit_each_slot_once_across_a_restart(engine, make_app, database_url):
    providers = engine.three_providers()
    config = engine.config({r: p.base_url_openai for r, p in providers.items()})
    config.write_text(config.read_text("utf-8") + SCHEDULE, "utf-8")
    app = make_app(create_tables=False, BEACON_CONFIG=str(config))
    env = clean_env(
        DATABASE_URL=database_url,
        BEACON_CONFIG=str(config),
        BEACON_TRUSTED_KEYS=json.dumps([]),
        WEB_CONCURRENCY="2",
        BEACON_SEMANTIC="0",
        BEACON_SCHEDULER="1",  # both workers submit, whatever this shell says
    )
    release = subprocess.run(
        ["bash", "-c", procfile()["release"]],
        cwd=ROOT,
        env=shell_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert release.returncode == 0, release.stdout + release.stderr
    started = datetime.now(UTC)
    # 30 s of slots, a restart, then more slots on the same database.
    logs = run_web_until(env, engine.tmp_path / "web-1.log", app, 30 // EVERY_S)
    first_phase = len(slot_rows(app))
    logs += run_web_until(env, engine.tmp_path / "web-2.log", app, 3)

    rows = slot_rows(app)
    slots = [slot for slot, _, _ in rows]
    assert len(slots) == len(set(slots)) >= 30 // EVERY_S + 3, rows
    for slot, job_id, error in rows:
        assert error is None and job_id == slot_job_id("pulse", slot), (slot, job_id, error)
        assert slot == slot_start(EVERY_S, slot) and slot >= slot_start(EVERY_S, started)
    jobs = scheduled_jobs(app)
    assert sorted(jobs) == sorted(job_id for _, job_id, _ in rows), "a slot with two jobs"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Job)) == len(jobs)
        db.session.remove()
    # After the restart the slots go on from where they were, none taken twice.
    assert rows[first_phase][0] > rows[first_phase - 1][0]
    assert rows[-1][0] - rows[0][0] >= timedelta(seconds=EVERY_S * (len(rows) - 1))
    assert "Traceback" not in logs and "IntegrityError" not in logs, logs
    assert providers["us-east"].count() >= len(jobs) - 2  # the jobs ran, too


def test_the_worker_line_runs_schedules_unless_told_not_to(engine, make_app):
    providers = engine.three_providers()
    config = engine.config({r: p.base_url_openai for r, p in providers.items()})
    config.write_text(config.read_text("utf-8") + SCHEDULE, "utf-8")
    app = make_app(BEACON_CONFIG=str(config))
    quiet = engine.worker(config, BEACON_SCHEDULER="0", BEACON_SEMANTIC="0")
    # Two whole slots with only a BEACON_SCHEDULER=0 process running: nothing is submitted.
    wait_until(lambda: "submission off" in quiet.log(), 30, what="the watcher to start")
    deadline = datetime.now(UTC) + timedelta(seconds=2 * EVERY_S + 1)
    wait_until(lambda: datetime.now(UTC) > deadline, 3 * EVERY_S, what="two slots to pass")
    assert slot_rows(app) == []
    engine.worker(config, BEACON_SCHEDULER="1", BEACON_SEMANTIC="0")
    wait_until(lambda: len(slot_rows(app)) >= 2, 4 * EVERY_S + 30, what="two slots submitted")
    # The job ran on the workers, too.
    first = slot_rows(app)[0][1]
    wait_until(lambda: providers["us-east"].count() >= 1, 30, what=f"job {first} to run")
