"""The execution engine against real HTTP providers on 127.0.0.1 and real worker processes."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from portal.db import db
from portal.engine import pool
from portal.models import Execution
from tests.support.apps import pg_test_url, spec_3x3
from tests.support.workers import (
    PROVIDER_MODEL,
    REGIONS,
    Engine,
    submit,
    wait_for_job,
    write_config,
)

pytestmark = pytest.mark.live


@pytest.fixture
def engine(tmp_path, database_url):
    engine = Engine(tmp_path, database_url)
    yield engine
    engine.close()


def test_three_by_three_job_stores_exactly_what_each_provider_said(engine, make_app, signer):
    providers = engine.three_providers()
    config = engine.config({r: p.base_url_openai for r, p in providers.items()})
    app = make_app(BEACON_CONFIG=str(config))
    client = app.test_client()
    job_id = submit(client, signer, spec_3x3())
    engine.worker(config)

    job = wait_for_job(client, job_id, engine=engine)

    assert job["status"] == "completed"
    assert job["meets_constraints"] is True
    executions = job["executions"]
    assert len(executions) == 9
    assert len({(e["model_id"], e["region"]) for e in executions}) == 9
    answers = [a for e in executions for a in e["answers"]]
    assert len(answers) == 27
    for execution in executions:
        served = PROVIDER_MODEL[execution["model_id"]]
        assert execution["status"] == "completed"
        assert [a["question_index"] for a in execution["answers"]] == [0, 1, 2]
        for answer in execution["answers"]:
            expected = f"[{execution['region']}] {served} answers: {answer['prompt']}"
            assert answer["output"] == expected
            assert answer["output_sha256"] == hashlib.sha256(expected.encode()).hexdigest()
            assert answer["status"] == "completed" and answer["attempts"] == 1
            assert answer["provider"] == "openai" and answer["provider_model"] == served
            assert answer["started_at"] <= answer["finished_at"]
            assert answer["latency_ms"] >= 0 and answer["completion_tokens"] >= 1
            assert answer["classification"] in ("substantive", "evasive", "refusal")
    for region, provider in providers.items():
        assert provider.count() == 9, region
        for model_id in PROVIDER_MODEL.values():
            for answer in executions[0]["answers"]:
                assert provider.count(model=model_id, prompt=answer["prompt"]) == 1


def test_pool_bounds_calls_in_flight_and_reaches_its_size(engine, make_app, signer):
    shared = engine.provider("shared", latency_s=0.2)
    config = engine.config({r: shared.base_url_openai for r in REGIONS}, max_concurrency=3)
    app = make_app(BEACON_CONFIG=str(config))
    client = app.test_client()
    job_id = submit(client, signer, spec_3x3())
    engine.worker(config)

    assert wait_for_job(client, job_id, engine=engine)["status"] == "completed"
    assert shared.count() == 27
    assert shared.max_in_flight == 3


def test_region_cap_holds_under_the_pool(engine, make_app, signer):
    providers = engine.three_providers(latency_s=0.2)
    config = engine.config(
        {r: p.base_url_openai for r, p in providers.items()},
        max_concurrency=4,
        region_caps={"us-east": 1},
    )
    app = make_app(BEACON_CONFIG=str(config))
    client = app.test_client()
    job_id = submit(client, signer, spec_3x3())
    engine.worker(config)

    assert wait_for_job(client, job_id, engine=engine)["status"] == "completed"
    assert providers["us-east"].count() == 9
    assert providers["us-east"].max_in_flight == 1
    assert max(p.max_in_flight for p in providers.values()) >= 2


def test_claim_hands_each_execution_to_one_owner(make_app, signer, tmp_path):
    config = write_config(tmp_path / "c.toml", {r: "http://127.0.0.1:9/v1" for r in REGIONS})
    app = make_app(BEACON_CONFIG=str(config))
    submit(app.test_client(), signer, spec_3x3())
    with app.app_context():
        first = pool.claim("us-east", 2, "a", 30)
        second = pool.claim("us-east", 5, "b", 30)
        db.session.commit()
        assert len(first) == 2 and len(second) == 1
        assert not set(first) & set(second)
        owners = dict(db.session.execute(select(Execution.id, Execution.lease_owner)).all())
        assert {owners[i] for i in first} == {"a"} and {owners[i] for i in second} == {"b"}
        assert pool.claim("us-east", 5, "c", 30) == []
        assert pool.waiting_by_region() == {"eu-west": 3, "asia-pacific": 3}


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_on_one_postgres_ask_every_answer_exactly_once(engine, make_app, signer):
    if pg_test_url() is None:
        pytest.skip("SKIPPED LOUDLY: two workers sharing one database need TEST_DATABASE_URL")
    providers = engine.three_providers(latency_s=0.05)
    config = engine.config({r: p.base_url_openai for r, p in providers.items()})
    app = make_app(BEACON_CONFIG=str(config))
    client = app.test_client()
    engine.worker(config)
    engine.worker(config)

    job_ids = []
    for i in range(20):
        questions = [f"Job {i}, question {q}: what is {q} plus {i}?" for q in range(3)]
        job_ids.append(submit(client, signer, spec_3x3(id=f"burst-{i}", questions=questions)))
    jobs = [wait_for_job(client, job_id, timeout=120, engine=engine) for job_id in job_ids]

    assert {job["status"] for job in jobs} == {"completed"}
    for job in jobs:
        for execution in job["executions"]:
            served = PROVIDER_MODEL[execution["model_id"]]
            provider = providers[execution["region"]]
            for answer in execution["answers"]:
                assert provider.count(model=served, prompt=answer["prompt"]) == 1
                assert answer["attempts"] == 1
    assert sum(p.count() for p in providers.values()) == 20 * 27
    with app.app_context():
        owners = set(db.session.scalars(select(Execution.lease_owner)))
    assert len(owners) == 2, owners


@pytest.mark.slow
def test_real_local_answer_through_the_engine_on_the_embedded_default(engine, make_app, signer):
    app = make_app()
    client = app.test_client()
    spec = {
        "version": "v1",
        "constraints": {"regions": ["us-east"]},
        "metadata": {"models": ["smollm2-135m"]},
        "questions": ["geography_basic"],
    }
    job_id = submit(client, signer, spec)
    engine.worker("")

    job = wait_for_job(client, job_id, timeout=180, engine=engine)

    assert job["status"] == "completed", job
    answer = job["executions"][0]["answers"][0]
    assert answer["provider"] == "local"
    assert answer["provider_model"].endswith(".gguf")
    assert answer["output"].strip() and answer["completion_tokens"] >= 1
    assert answer["classification"] is not None


def test_a_lapsed_lease_claimed_back_by_its_own_worker_is_not_run_twice(make_app, signer):
    # A worker that stalls past lease_s may claim its own running execution again; the task
    # already running it must stay the only one.
    from datetime import timedelta

    from portal.times import utcnow
    from tests.support.apps import THREE_REGIONS
    from tests.support.workers import submit

    app = make_app(BEACON_CONFIG=str(THREE_REGIONS))
    job_id = submit(app.test_client(), signer, spec_3x3(metadata={"models": ["llama3.2-1b"]}))
    dispatcher = pool.Dispatcher(app, owner="stalled-worker")
    with app.app_context():
        first = db.session.scalars(
            select(Execution).where(Execution.job_id == job_id).order_by(Execution.id)
        ).first()
        first.status, first.lease_owner = "running", dispatcher.owner
        first.lease_expires_at = utcnow() - timedelta(seconds=5)
        db.session.commit()
        dispatcher.running.add(first.id)
        started = dispatcher.tick()
        spawned = len(dispatcher.pool)
        dispatcher.pool.kill()
        renewed = db.session.get(Execution, first.id, populate_existing=True)
        assert renewed.lease_owner == dispatcher.owner and renewed.lease_expires_at > utcnow()
    assert first.id in dispatcher.running
    assert started == spawned == 2  # the job's two other executions, not the lapsed one again
