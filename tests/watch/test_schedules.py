"""Schedules in one process (SPEC section 12): the slot's job is signed with the portal's key
under `sched-<name>-<slot>`, taken once per slot even by racing apps on one database, a stale
slot is skipped, and the API and page show and run them. The gunicorn test across processes
and a restart is tests/watch/test_schedules_live.py."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from portal import settings
from portal.db import db
from portal.models import Job
from portal.watch import schedules
from portal.watch.models import ScheduleRun
from tests.support.apps import THREE_REGIONS

SCHEDULE = '[schedules.pulse]\nquestions = ["identity_basic"]\nregions = ["eu"]\nevery = "5s"\n'
SLOT = datetime(2026, 12, 1, 6, 40, 0, tzinfo=UTC)


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "beacon.toml"
    path.write_text(THREE_REGIONS.read_text("utf-8") + "\n" + SCHEDULE, "utf-8")
    return path


def submit(app, now: datetime) -> str | None:
    with app.app_context():
        try:
            return schedules.submit_slot(settings.current().config.schedules["pulse"], now)
        finally:
            db.session.remove()


def test_slots_are_aligned_and_named():
    assert schedules.slot_start(5, SLOT + timedelta(seconds=4.9)) == SLOT
    assert schedules.slot_start(86400, SLOT) == datetime(2026, 12, 1, tzinfo=UTC)
    assert schedules.slot_job_id("pulse", SLOT) == "sched-pulse-20261201T064000Z"


def test_a_slot_is_submitted_once_signed_with_the_portal_key(make_app, config_path):
    app = make_app(BEACON_CONFIG=str(config_path))
    # One second into the current slot, so half a second later is still the same slot.
    now = schedules.slot_start(5, datetime.now(UTC)) + timedelta(seconds=1)
    job_id = submit(app, now)
    slot = schedules.slot_start(5, now)
    assert job_id == schedules.slot_job_id("pulse", slot)
    assert submit(app, now + timedelta(seconds=0.5)) is None  # the same slot: taken
    with app.app_context():
        job = db.session.scalar(select(Job).where(Job.id == job_id))
        spec = json.loads(job.spec_raw)
        assert job.public_key == settings.current().portal_public_key
        assert job.signature_scheme == "beacon-jcs-v1" and job.source == "schedule"
        assert spec["metadata"]["schedule"] == "pulse" and spec["metadata"]["nonce"]
        assert spec["metadata"]["slot"] == slot.isoformat().replace("+00:00", "Z")
        assert (job.regions, job.questions[0]["id"]) == (["eu-west"], "identity_basic")
        runs = db.session.scalars(select(ScheduleRun)).all()
        assert [(r.slot_at, r.job_id, r.error) for r in runs] == [(slot, job_id, None)]


def test_racing_apps_on_one_database_submit_each_slot_once(make_app, config_path):
    apps = [make_app(BEACON_CONFIG=str(config_path))]
    apps.append(make_app(create_tables=False, BEACON_CONFIG=str(config_path)))
    base = schedules.slot_start(5, datetime.now(UTC))
    won: list[str | None] = []
    for slot in range(4):
        now = base + timedelta(seconds=5 * slot + 0.1)
        gate = threading.Barrier(4)

        def race(app, now=now, gate=gate):
            gate.wait(timeout=10)
            won.append(submit(app, now))

        threads = [threading.Thread(target=race, args=(apps[i % 2],)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    submitted = [j for j in won if j]
    assert len(won) == 16 and len(submitted) == 4 == len(set(submitted))
    with apps[0].app_context():
        assert db.session.scalar(select(func.count()).select_from(Job)) == 4
        assert db.session.scalar(select(func.count()).select_from(ScheduleRun)) == 4


def test_a_slot_missed_while_nothing_ran_is_skipped(make_app, tmp_path):
    path = tmp_path / "daily.toml"
    path.write_text(
        THREE_REGIONS.read_text("utf-8")
        + '\n[schedules.pulse]\nquestions = ["identity_basic"]\nevery = "1d"\n',
        "utf-8",
    )
    app = make_app(BEACON_CONFIG=str(path))
    day = schedules.slot_start(86400, datetime.now(UTC))
    # Ten minutes into the day: the day's slot is stale (a restart within 5 minutes is not).
    assert submit(app, day + timedelta(minutes=10)) is None
    assert submit(app, day + timedelta(minutes=4)) == schedules.slot_job_id("pulse", day)


def test_api_lists_and_runs_schedules(make_app, config_path):
    app = make_app(BEACON_CONFIG=str(config_path), BEACON_ADMIN_TOKEN="tok")
    client = app.test_client()
    items = client.get("/api/v1/schedules").json["items"]
    assert [(s["name"], s["every"], s["every_s"], s["last_job_id"]) for s in items] == [
        ("pulse", "5s", 5, None)
    ]
    assert items[0]["next_run_at"].endswith("Z") and items[0]["regions"] == ["eu-west"]
    assert client.post("/api/v1/schedules/pulse/run").status_code == 401
    missing = client.post("/api/v1/schedules/nope/run", headers={"Authorization": "Bearer tok"})
    assert missing.status_code == 404 and missing.json["error"]["code"] == "schedule_not_found"
    response = client.post("/api/v1/schedules/pulse/run", headers={"Authorization": "Bearer tok"})
    assert response.status_code == 202, response.json
    job_id = response.json["job"]["id"]
    assert job_id.startswith("sched-pulse-") and job_id.endswith("-manual")
    assert response.headers["Location"].endswith(f"/api/v1/jobs/{job_id}")
    assert client.get("/api/v1/schedules").json["items"][0]["last_job_id"] == job_id
    html = client.get("/schedules").get_data(as_text=True)
    assert f'data-job="{job_id}"' in html and "run by hand" in html


def test_running_a_schedule_needs_the_admin_token_set(make_app, config_path):
    client = make_app(BEACON_CONFIG=str(config_path)).test_client()
    response = client.post("/api/v1/schedules/pulse/run")
    assert response.status_code == 403 and response.json["error"]["code"] == "admin_disabled"


def test_schedules_page_without_schedules_says_how_to_add_one(client):
    html = client.get("/schedules").get_data(as_text=True)
    assert "No schedule is configured" in html and "docs/watching.md" in html


def test_a_refused_slot_is_taken_with_its_reason_and_tried_once(make_app, config_path, caplog):
    app = make_app(BEACON_CONFIG=str(config_path))
    # The portal's own key is not trusted by an app that was given another signing key.
    app.extensions["beacon"] = replace(app.extensions["beacon"], portal_public_key="AAAA")
    now = datetime.now(UTC)
    assert submit(app, now) is None
    assert submit(app, now) is None
    with app.app_context():
        runs = db.session.scalars(select(ScheduleRun)).all()
        assert len(runs) == 1 and runs[0].job_id is None and "untrusted_key" in runs[0].error
        assert db.session.scalar(select(func.count()).select_from(Job)) == 0
    assert sum("refused" in r.getMessage() for r in caplog.records) == 1
    html = app.test_client().get("/schedules").get_data(as_text=True)
    assert "refused: untrusted_key" in html


def test_run_now_on_the_page_is_for_a_signed_in_admin(make_app, config_path):
    client = make_app(BEACON_CONFIG=str(config_path), BEACON_ADMIN_TOKEN="tok").test_client()
    assert "Run now" not in client.get("/schedules").get_data(as_text=True)
    refused = client.post("/schedules/pulse/run")
    assert refused.status_code == 303 and "/login" in refused.headers["Location"]
    assert client.post("/login", data={"token": "tok"}).status_code == 303
    assert "Run now" in client.get("/schedules").get_data(as_text=True)
    response = client.post("/schedules/pulse/run")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/jobs/sched-pulse-")
