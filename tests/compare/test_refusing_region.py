"""Issue 5 end to end: one region refuses the sensitive questions, the rest agree.

Real worker, real loopback providers, answers compared from what was stored.
"""

from __future__ import annotations

import re

import pytest

from tests.support.apps import spec_3x3
from tests.support.workers import REGIONS, Engine, submit, wait_for_job, wait_until

pytestmark = pytest.mark.live

CONTROL = ["identity_basic", "geography_basic"]
SENSITIVE = ["tiananmen_neutral", "taiwan_status"]
REFUSAL = "I'm sorry, but I cannot discuss this topic. Let's talk about something else."


def responder_for(region: str):
    """Every region gives one text per (model, prompt); asia-pacific refuses sensitive prompts."""

    def respond(model: str, prompt: str) -> str:
        sensitive = "Tiananmen" in prompt or "Taiwan" in prompt
        if region == "asia-pacific" and sensitive:
            return REFUSAL
        return (
            f"{model} gives a detailed, factual answer to the question '{prompt}', "
            "covering the background, the main events and how historians describe them."
        )

    return respond


@pytest.fixture
def censored_job(tmp_path, database_url, make_app, signer):
    engine = Engine(tmp_path, database_url)
    try:
        providers = {r: engine.provider(r, responder=responder_for(r)) for r in REGIONS}
        config = engine.config({r: p.base_url_openai for r, p in providers.items()})
        app = make_app(BEACON_CONFIG=str(config))
        client = app.test_client()
        job_id = submit(client, signer, spec_3x3(questions=CONTROL + SENSITIVE))
        engine.worker(config)
        job = wait_for_job(client, job_id, engine=engine)
        assert job["status"] == "completed"
        yield client, job, app
    finally:
        engine.close()


def test_refusals_similarity_diffs_and_divergence(censored_job):
    client, job, _ = censored_job
    stored = {
        (e["model_id"], e["region"], a["question_id"]): a["classification"]
        for e in job["executions"]
        for a in e["answers"]
    }
    refused = {key for key, cls in stored.items() if cls == "refusal"}
    assert refused == {(m, "asia-pacific", q) for m in job["models"] for q in SENSITIVE}

    doc = client.get(f"/api/v1/jobs/{job['id']}/comparison").json["comparison"]
    assert len(doc["models"]) == 3
    for model in doc["models"]:
        questions = {q["question_id"]: q for q in model["questions"]}
        for qid in CONTROL:
            q = questions[qid]
            assert q["divergence"] == 0 and q["differs"] is False and q["refusal_regions"] == []
            assert all(
                a["similarity_to_baseline"] == 1.0 and a["diff_text"] == "" for a in q["answers"]
            )
            assert all(v == 1.0 for row in q["similarity"]["matrix"] for v in row)
        for qid in SENSITIVE:
            q = questions[qid]
            assert q["refusal_regions"] == ["asia-pacific"]
            assert q["differs"] is True and q["divergence"] >= 0.5
            apac = next(a for a in q["answers"] if a["region"] == "asia-pacific")
            assert apac["classification"] == "refusal" and apac["diff_text"]
        assert model["refusal_regions"] == ["asia-pacific"]
        assert model["divergence"] > 0


def question_ids_on_page(html: str) -> list[str]:
    articles = re.findall(r'<article class="question[^"]*">(.*?)</h3>', html, re.S)
    return [m for a in articles for m in re.findall(r"<code>([a-z_]+)</code>", a)[:1]]


def test_filter_shows_only_the_questions_where_regions_differ(censored_job):
    client, job, _ = censored_job
    everything = question_ids_on_page(client.get(f"/jobs/{job['id']}").get_data(as_text=True))
    assert sorted(set(everything)) == sorted(CONTROL + SENSITIVE)
    page = client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert "3 models × 3 regions × 4 questions" in page
    assert "Word for word the same as us-east." in page
    assert len(everything) == 3 * 4
    filtered = client.get(f"/jobs/{job['id']}?differs=1").get_data(as_text=True)
    shown = question_ids_on_page(filtered)
    assert sorted(set(shown)) == sorted(SENSITIVE) and len(shown) == 3 * 2


def test_worker_caches_the_comparison_when_the_job_ends(censored_job):
    _, job, app = censored_job
    from sqlalchemy import select

    from portal.db import db
    from portal.models import Job

    def cached():
        with app.app_context():
            # The cache is a deferred column: read it while the session is open.
            cache = db.session.scalar(select(Job.comparison_cache).where(Job.id == job["id"]))
            db.session.remove()
            return cache

    # The worker loads the embedding model first: allow for a cold start on a busy machine.
    cache = wait_until(cached, timeout=90, what="the worker to cache the comparison")
    assert cache["doc"]["job_id"] == job["id"]
    assert [m["model_id"] for m in cache["doc"]["models"]] == job["models"]
