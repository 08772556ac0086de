"""How the engine meets failure: provider faults, deadlines, cancel, retry, a killed worker."""

from __future__ import annotations

import socket
import time

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.models import Answer, Execution
from portal.status import RunStatus
from tests.support.apps import spec_3x3
from tests.support.workers import (
    PROVIDER_MODEL,
    REGIONS,
    Engine,
    get_job,
    submit,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.live

TOKEN = "s3cret-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def engine(tmp_path, database_url):
    engine = Engine(tmp_path, database_url)
    yield engine
    engine.close()


def closed_port_url() -> str:
    """Returns a base URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def one_question(**changes) -> dict:
    return spec_3x3(questions=["geography_basic"], **changes)


def answers_by_pair(job: dict) -> dict[tuple[str, str], dict]:
    return {(e["model_id"], e["region"]): e["answers"][0] for e in job["executions"]}


def test_each_fault_ends_its_own_answer_and_the_job_is_partial(engine, make_app, signer):
    us, eu = engine.provider("us-east"), engine.provider("eu-west")
    llama, mistral, qwen = PROVIDER_MODEL.values()
    us.script(["503", "503"], model=llama)
    us.always("500", model=mistral)
    us.always("garbage", model=qwen)
    eu.always("hang", model=llama)
    urls = {"us-east": us.base_url_openai, "eu-west": eu.base_url_openai}
    urls["asia-pacific"] = closed_port_url()
    config = engine.config(urls, call_timeout_s=1, max_attempts=3)
    client = make_app(BEACON_CONFIG=str(config)).test_client()
    job_id = submit(client, signer, one_question())
    started = time.monotonic()
    engine.worker(config)

    job = wait_for_job(client, job_id, timeout=60, engine=engine)

    assert job["status"] == "partial"
    assert job["meets_constraints"] is False
    got = answers_by_pair(job)
    ok = got[("llama3.2-1b", "us-east")]
    assert (ok["status"], ok["attempts"], ok["error"]) == ("completed", 3, None)
    assert ok["output"].endswith("What is the capital city of Australia?")
    assert us.count(model=llama) == 3

    server_error = got[("mistral-7b", "us-east")]
    assert (server_error["status"], server_error["attempts"]) == ("failed", 3)
    assert "HTTP 500" in server_error["error"] and "after 3 attempts" in server_error["error"]
    assert server_error["classification"] == "technical_failure"

    garbage = got[("qwen2.5-1.5b", "us-east")]
    assert (garbage["status"], garbage["attempts"]) == ("failed", 1)
    assert "invalid JSON" in garbage["error"] and "us-east" in garbage["error"]

    hung = got[("llama3.2-1b", "eu-west")]
    assert hung["status"] == "failed" and "within 1 s" in hung["error"]
    assert hung["latency_ms"] >= 900
    assert got[("mistral-7b", "eu-west")]["status"] == "completed"
    assert got[("qwen2.5-1.5b", "eu-west")]["status"] == "completed"

    for model_id in PROVIDER_MODEL:
        refused = got[(model_id, "asia-pacific")]
        assert refused["status"] == "failed" and refused["attempts"] == 3
        assert "connection refused" in refused["error"]
    statuses = {(e["model_id"], e["region"]): e["status"] for e in job["executions"]}
    assert statuses[("llama3.2-1b", "us-east")] == "completed"
    assert statuses[("mistral-7b", "us-east")] == "failed"
    assert time.monotonic() - started < 60


def test_job_deadline_fails_unfinished_answers_and_ends_the_job(engine, make_app, signer):
    hanging = engine.provider("hang")
    hanging.always("hang")
    config = engine.config(dict.fromkeys(REGIONS, hanging.base_url_openai), call_timeout_s=30)
    client = make_app(BEACON_CONFIG=str(config)).test_client()
    # The worker starts first: the deadline counts from submission, and a busy machine can
    # take seconds to start one.
    engine.worker(config)
    spec = spec_3x3(constraints={"regions": ["us-east"], "timeout": 4_000_000_000})
    spec["metadata"]["models"] = ["llama3.2-1b"]
    job_id = submit(client, signer, spec)

    job = wait_for_job(client, job_id, timeout=20, engine=engine)

    assert job["status"] == "failed"
    answers = job["executions"][0]["answers"]
    assert [a["status"] for a in answers] == ["failed"] * 3
    assert all(a["error"].startswith("job deadline passed") for a in answers)
    assert hanging.count() == 1
    assert job["finished_at"] >= job["deadline_at"]


def test_cancel_mid_job_stops_queued_work(engine, make_app, signer):
    slow = engine.provider("slow", latency_s=0.3)
    config = engine.config(dict.fromkeys(REGIONS, slow.base_url_openai), max_concurrency=1)
    app = make_app(BEACON_CONFIG=str(config), BEACON_ADMIN_TOKEN=TOKEN)
    client = app.test_client()
    job_id = submit(client, signer, spec_3x3())
    engine.worker(config)
    wait_until(lambda: slow.count() >= 2, 20, what="two calls")

    response = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=ADMIN)
    cancelled_at = time.time()

    assert response.status_code == 200, response.json
    assert response.json["job"]["status"] == "cancelled"
    job = wait_for_job(client, job_id, timeout=10, engine=engine)
    time.sleep(1.0)
    assert get_job(client, job_id)["status"] == "cancelled"
    answers = [a for e in job["executions"] for a in e["answers"]]
    assert {a["status"] for a in answers} <= {RunStatus.COMPLETED, RunStatus.CANCELLED}
    asked = [a for a in answers if a["attempts"] > 0]
    assert slow.count() == len(asked) == len([a for a in answers if a["status"] == "completed"])
    assert len(answers) - len(asked) >= 20
    # At most the one call already in flight (pool of 1) may start after the cancel returned.
    late = [c for c in slow.calls if c["started"] > cancelled_at]
    assert len(late) <= 1
    assert all(e["status"] in {RunStatus.CANCELLED, RunStatus.COMPLETED} for e in job["executions"])


def test_retry_asks_only_the_failed_answers_again(engine, make_app, signer):
    provider = engine.provider("us-east")
    provider.always("404", prompt_contains="Australia")
    config = engine.config(dict.fromkeys(REGIONS, provider.base_url_openai))
    app = make_app(BEACON_CONFIG=str(config), BEACON_ADMIN_TOKEN=TOKEN)
    client = app.test_client()
    spec = spec_3x3(constraints={"regions": ["us-east"]})
    job_id = submit(client, signer, spec)
    engine.worker(config)
    job = wait_for_job(client, job_id, engine=engine)
    assert job["status"] == "partial"
    assert job["counts"]["failed"] == 3 and job["counts"]["completed"] == 6
    assert all("HTTP 404" in a["error"] for e in job["executions"] for a in e["answers"][2:])
    assert provider.count() == 9
    provider.clear_faults()

    response = client.post(f"/api/v1/jobs/{job_id}/retry", headers=ADMIN)

    assert response.status_code == 200, response.json
    assert response.json["requeued"] == 3
    assert response.json["job"]["status"] == "queued"
    assert response.json["job"]["deadline_at"] > job["deadline_at"]
    job = wait_for_job(client, job_id, engine=engine)
    assert job["status"] == "completed"
    assert provider.count() == 12
    for execution in job["executions"]:
        for answer in execution["answers"]:
            expected = 2 if "Australia" in answer["prompt"] else 1
            served = PROVIDER_MODEL[execution["model_id"]]
            assert provider.count(model=served, prompt=answer["prompt"]) == expected
    again = client.post(f"/api/v1/jobs/{job_id}/retry", headers=ADMIN)
    assert again.status_code == 409 and again.json["error"]["code"] == "nothing_to_retry"


def test_worker_killed_mid_job_is_replaced_without_asking_anything_twice(engine, make_app, signer):
    providers = engine.three_providers(latency_s=0.3)
    config = engine.config(
        {r: p.base_url_openai for r, p in providers.items()}, max_concurrency=3, lease_s=2
    )
    app = make_app(BEACON_CONFIG=str(config))
    client = app.test_client()
    job_id = submit(client, signer, spec_3x3())
    first = engine.worker(config)
    wait_until(lambda: get_job(client, job_id)["counts"]["completed"] >= 6, 30, what="6 answers")

    first.kill()
    before = get_job(client, job_id)
    done_before = [
        (e["region"], PROVIDER_MODEL[e["model_id"]], a["prompt"])
        for e in before["executions"]
        for a in e["answers"]
        if a["status"] == "completed"
    ]
    assert before["status"] == "running" and before["counts"]["completed"] < 27
    assert any(e["status"] == "running" for e in before["executions"])
    engine.worker(config)

    job = wait_for_job(client, job_id, timeout=60, engine=engine)

    assert job["status"] == "completed"
    with app.app_context():
        pairs = db.session.execute(
            select(Execution.model_id, Execution.region, func.count())
            .where(Execution.job_id == job_id)
            .group_by(Execution.model_id, Execution.region)
        ).all()
        assert len(pairs) == 9 and {n for _, _, n in pairs} == {1}
        assert db.session.scalar(select(func.count()).select_from(Answer)) == 27
    for region, served, prompt in done_before:
        assert providers[region].count(model=served, prompt=prompt) == 1
    for execution in job["executions"]:
        for answer in execution["answers"]:
            served = PROVIDER_MODEL[execution["model_id"]]
            asked = providers[execution["region"]].count(model=served, prompt=answer["prompt"])
            assert 1 <= asked <= 2
            expected = f"[{execution['region']}] {served} answers: {answer['prompt']}"
            assert answer["output"] == expected


def test_cancel_and_retry_need_the_admin_token(make_app, signer, tmp_path):
    from tests.support.workers import write_config

    config = write_config(tmp_path / "c.toml", dict.fromkeys(REGIONS, closed_port_url()))
    open_app = make_app(BEACON_CONFIG=str(config))
    client = open_app.test_client()
    job_id = submit(client, signer, one_question())
    for action in ("cancel", "retry"):
        refused = client.post(f"/api/v1/jobs/{job_id}/{action}", headers=ADMIN)
        assert refused.status_code == 403
        assert refused.json["error"]["code"] == "admin_disabled"

    app = make_app(BEACON_CONFIG=str(config), BEACON_ADMIN_TOKEN=TOKEN)
    client = app.test_client()
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer s3cret-\u00e9"},
    ):
        refused = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=headers)
        assert refused.status_code == 401
        assert refused.json["error"]["code"] == "unauthorized"
    missing = client.post("/api/v1/jobs/no-such-job/cancel", headers=ADMIN)
    assert missing.status_code == 404 and missing.json["error"]["code"] == "job_not_found"
    early = client.post(f"/api/v1/jobs/{job_id}/retry", headers=ADMIN)
    assert early.status_code == 409 and early.json["error"]["code"] == "job_not_ended"

    cancelled = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=ADMIN)

    assert cancelled.status_code == 200
    job = cancelled.json["job"]
    assert job["status"] == "cancelled" and job["finished_at"] is not None
    assert job["counts"]["cancelled"] == job["counts"]["total"] == 9
    assert {e["status"] for e in job["executions"]} == {"cancelled"}
    twice = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=ADMIN)
    assert twice.status_code == 200 and twice.json["job"]["status"] == "cancelled"
    nothing = client.post(f"/api/v1/jobs/{job_id}/retry", headers=ADMIN)
    assert nothing.status_code == 409 and nothing.json["error"]["code"] == "nothing_to_retry"
