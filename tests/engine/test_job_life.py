"""Fast feedback for the engine: intake, a job's life and one execution against a loopback
provider, all in this process (no worker, no gunicorn), so a change is answered in seconds.
Refusals here are domain exceptions; only the web edge turns them into HTTP statuses."""

from __future__ import annotations

import json
import time

import pytest

from portal.db import db
from portal.engine import jobs
from portal.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unauthenticated
from portal.intake import submit as intake
from portal.models import Answer, Execution
from portal.status import JobStatus, RunStatus
from tests.support.apps import Signer, spec_3x3
from tests.support.inline import run_inline
from tests.support.loopback import LoopbackProvider
from tests.support.workers import REGIONS, write_config

ONE_MODEL = {"models": ["llama3.2-1b"]}


@pytest.fixture
def loopback_app(make_app, tmp_path):
    """An app whose three regions are loopback providers in this process."""
    providers = {region: LoopbackProvider(label=region).start() for region in REGIONS}
    try:
        config = write_config(
            tmp_path / "beacon.toml", {r: p.base_url_openai for r, p in providers.items()}
        )
        # Lexical comparison: loading the embedding model would cost more than the whole test.
        yield make_app(BEACON_CONFIG=str(config), BEACON_SEMANTIC="0"), providers
    finally:
        for provider in providers.values():
            provider.stop()


def submit(app, signer: Signer, **changes):
    with app.app_context():
        job, created = intake.submit_jobspec(
            json.dumps(signer.sign(spec_3x3(**changes))), intake.intake_context()
        )
        return job.id, created


def test_intake_stores_one_queued_execution_per_model_and_region(loopback_app, signer):
    app, _ = loopback_app
    job_id, created = submit(app, signer, metadata=ONE_MODEL)
    again, created_again = submit(app, signer, metadata=ONE_MODEL)
    assert created and not created_again and again == job_id
    with app.app_context():
        job = jobs.find_job(job_id)
        assert job.status == JobStatus.QUEUED
        assert sorted(e.region for e in job.executions) == sorted(REGIONS)
        assert {a.status for e in job.executions for a in e.answers} == {RunStatus.QUEUED}
        assert sum(len(e.answers) for e in job.executions) == 9


def test_intake_refusals_are_domain_errors_and_leave_nothing(loopback_app, signer):
    app, _ = loopback_app
    with app.app_context():
        ctx = intake.intake_context()
        cases = [
            (Invalid, "invalid_json", "{"),
            (Unauthenticated, "missing_signature", json.dumps(spec_3x3())),
            (Forbidden, None, json.dumps(Signer().sign(spec_3x3()))),
            (Invalid, None, json.dumps(signer.sign(spec_3x3(runs=0)))),
        ]
        for kind, code, body in cases:
            with pytest.raises(DomainError) as info:
                intake.submit_jobspec(body, ctx)
            assert type(info.value) is kind, info.value
            assert code is None or info.value.code == code
            assert not hasattr(info.value, "status")
        assert db.session.query(Execution).count() == 0


def test_one_execution_against_a_loopback_provider(loopback_app, signer):
    app, providers = loopback_app
    job_id, _ = submit(app, signer, metadata=ONE_MODEL)
    (ran,) = run_inline(app, limit=1)
    with app.app_context():
        execution = db.session.get(Execution, ran)
        assert execution.status == RunStatus.COMPLETED and execution.job_id == job_id
        answers = db.session.query(Answer).filter_by(execution_id=ran).all()
        assert [a.status for a in answers] == [RunStatus.COMPLETED] * 3
        assert all(a.output.startswith(f"[{execution.region}] ") for a in answers)
        assert {a.classification for a in answers} == {"substantive"}
        assert jobs.refresh_status(job_id) == JobStatus.RUNNING
    assert providers[execution.region].count() == 3


def test_a_job_runs_to_its_end_then_refuses_cancel_and_retry(loopback_app, signer):
    app, _ = loopback_app
    job_id, _ = submit(app, signer, metadata=ONE_MODEL)
    assert len(run_inline(app)) == 3
    with app.app_context():
        job = jobs.find_job(job_id)
        assert job.status == JobStatus.COMPLETED and job.ended and job.comparison_cache
        with pytest.raises(Conflict) as ended:
            jobs.cancel_job(job)
        assert ended.value.code == "job_ended"
        with pytest.raises(Conflict) as nothing:
            jobs.retry_job(job, app.extensions["beacon"].config)
        assert nothing.value.code == "nothing_to_retry"
        with pytest.raises(NotFound):
            jobs.find_job("no-such-job")


def test_a_cancelled_job_ends_without_asking(loopback_app, signer):
    app, providers = loopback_app
    job_id, _ = submit(app, signer, metadata=ONE_MODEL)
    with app.app_context():
        jobs.cancel_job(jobs.find_job(job_id))
        db.session.commit()
    run_inline(app)
    with app.app_context():
        job = jobs.find_job(job_id)
        assert job.status == JobStatus.CANCELLED
        assert {a.status for e in job.executions for a in e.answers} == {RunStatus.CANCELLED}
    assert sum(p.count() for p in providers.values()) == 0


def test_the_web_edge_maps_domain_errors_to_statuses(loopback_app, signer):
    app, _ = loopback_app
    client = app.test_client()
    missing = client.get("/api/v1/jobs/no-such-job")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "job_not_found"
    assert client.get("/jobs/no-such-job").status_code == 404
    unsigned = client.post(
        "/api/v1/jobs", data=json.dumps(spec_3x3()), content_type="application/json"
    )
    assert unsigned.status_code == 401 and unsigned.json["error"]["code"] == "missing_signature"
    job_id, _ = submit(app, signer, metadata=ONE_MODEL)
    bad = client.get(f"/api/v1/jobs/{job_id}/comparison?baseline=mars")
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize("pool_size", [9, 1])
def test_work_queued_here_is_claimed_without_waiting_for_the_poll(
    make_app, signer, tmp_path, pool_size
):
    # The dispatcher polls every minute here, so only the wake can start this job in time: a
    # submission in this process wakes it, and with a pool of 1 each freed slot wakes it again
    # for the next of the three executions.
    import gevent

    from portal.engine import pool

    providers = {r: LoopbackProvider(label=r).start() for r in REGIONS}
    try:
        config = write_config(
            tmp_path / "beacon.toml",
            {r: p.base_url_openai for r, p in providers.items()},
            max_concurrency=pool_size,
        )
        app = make_app(BEACON_CONFIG=str(config), BEACON_SEMANTIC="0")
        dispatcher = pool.Dispatcher(app, poll_s=60).start()
        try:
            gevent.sleep(0.5)  # its first pass finds nothing; it now waits for a minute
            job_id, _ = submit(app, signer, metadata=ONE_MODEL, questions=["identity_basic"])
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and job_status(app, job_id) != JobStatus.COMPLETED:
                gevent.sleep(0.1)
        finally:
            dispatcher.stop(timeout=2)
        assert job_status(app, job_id) == JobStatus.COMPLETED
        assert sum(p.count() for p in providers.values()) == 3
    finally:
        for provider in providers.values():
            provider.stop()


def job_status(app, job_id: str) -> str:
    with app.app_context():
        try:
            return jobs.find_job(job_id).status
        finally:
            db.session.remove()


def test_nul_in_a_signed_prompt_is_stored_as_both_databases_can_hold_it(loopback_app, signer):
    # PostgreSQL text cannot hold NUL: the prompt is kept with U+FFFD in its place, on SQLite
    # too, so a job stores and asks the same text wherever it runs. A nonce is an identifier:
    # NUL in it is refused.
    app, _ = loopback_app
    job_id, created = submit(app, signer, metadata=ONE_MODEL, questions=["what is a\x00b here?"])
    with app.app_context():
        prompts = {a.prompt for e in jobs.find_job(job_id).executions for a in e.answers}
    assert created and prompts == {"what is a\ufffdb here?"}
    with app.app_context(), pytest.raises(Invalid) as refused:
        intake.submit_jobspec(
            json.dumps(signer.sign(spec_3x3(metadata={**ONE_MODEL, "nonce": "n\x00"}))),
            intake.intake_context(),
        )
    assert refused.value.code == "invalid_field" and "nonce" in refused.value.message
