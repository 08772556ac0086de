"""A 10,000-answer job end to end (issue 26): 10 models x 10 regions x 100 questions, submitted
through the API, run by two real worker processes against loopback providers answering at once,
on the test's database. It ends `completed` with exactly 10,000 answers, one per (execution,
question), and the worker that ended it caches its comparison. Its evidence file streams every
answer. About two minutes on two cores (docs/benchmarks.md has the timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.models import Answer, Execution, Job
from tests.support.specs import job_spec
from tests.support.workers import Engine, submit, wait_for_job, wait_until

pytestmark = [pytest.mark.live, pytest.mark.slow]

MODELS = [f"model-{i:02d}" for i in range(1, 11)]
REGIONS = [f"region-{i:02d}" for i in range(1, 11)]
QUESTIONS = [f"Scale question {i}: what is {i} plus {i}?" for i in range(1, 101)]
ANSWERS = len(MODELS) * len(REGIONS) * len(QUESTIONS)
JOB_TIMEOUT_S = 600


def write_config(path: Path, base_urls: dict[str, str]) -> Path:
    """Ten regions on their own loopback providers, ten models, the default limits otherwise."""
    lines = [
        "[execution]",
        "max_concurrency = 20",
        "call_timeout_s = 30",
        f"job_timeout_s = {JOB_TIMEOUT_S * 2}",
        "max_attempts = 3",
        "lease_s = 30",
    ]
    for region, url in base_urls.items():
        lines += ["", f"[regions.{region}]", f'name = "Scale {region}"', 'provider = "openai"']
        lines.append(f'base_url = "{url}"')
    for model in MODELS:
        lines += ["", f'[models."{model}"]', f'name = "Scale {model}"']
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


@pytest.fixture
def engine(tmp_path, database_url):
    engine = Engine(tmp_path, database_url)
    yield engine
    engine.close()


def test_a_10000_answer_job_completes_with_every_answer_and_a_comparison(
    engine, tmp_path, make_app, signer
):
    urls = {region: engine.provider(region).base_url_openai for region in REGIONS}
    config = write_config(tmp_path / "scale.toml", urls)
    app = make_app(BEACON_CONFIG=str(config), BEACON_SEMANTIC="0")
    client = app.test_client()
    for _ in range(2):
        engine.worker(config, BEACON_SEMANTIC="0")

    job_id = submit(client, signer, job_spec(MODELS, REGIONS, QUESTIONS, name="scale"))
    job = wait_for_job(client, job_id, timeout=JOB_TIMEOUT_S, engine=engine)

    assert job["status"] == "completed", job["counts"]
    assert job["counts"]["total"] == job["counts"]["completed"] == ANSWERS
    assert job["answers_page"]["total"] == ANSWERS
    with app.app_context():
        stored = db.session.execute(
            select(func.count(Answer.id), func.count(func.distinct(Answer.execution_id)))
            .join(Execution)
            .where(Execution.job_id == job_id, Answer.status == "completed")
        ).one()
        db.session.remove()
    assert tuple(stored) == (ANSWERS, len(MODELS) * len(REGIONS))
    # Exactly once: every provider was asked each of its 1,000 (model, question) pairs once.
    assert sorted(p.count() for p in engine.providers) == [ANSWERS // len(REGIONS)] * len(REGIONS)

    def cached() -> bool:
        with app.app_context():
            found = db.session.scalar(
                select(Job.comparison_cache.is_not(None)).where(Job.id == job_id)
            )
            db.session.remove()
            return bool(found)

    wait_until(cached, timeout=300, interval=0.5, what="the worker to cache the comparison")
    comparison = client.get(f"/api/v1/jobs/{job_id}/comparison").json["comparison"]
    assert [m["model_id"] for m in comparison["models"]] == MODELS
    compared = [
        entry
        for model in comparison["models"]
        for question in model["questions"]
        for entry in question["answers"]
    ]
    assert len(compared) == ANSWERS and all(e["classification"] for e in compared)

    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200 and 'class="folded"' in page.get_data(as_text=True)
    evidence = client.get(f"/api/v1/jobs/{job_id}/evidence")
    assert evidence.status_code == 200 and evidence.is_streamed
    executions = json.loads(evidence.get_data())["executions"]
    assert sum(len(e["answers"]) for e in executions) == ANSWERS
