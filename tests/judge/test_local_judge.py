"""A real judgement by the embedded local model (SmolLM2-135M through llama.cpp), slow tier."""

from __future__ import annotations

import pytest

from portal.config import DEFAULT_CONFIG_PATH
from portal.status import ACTIVE
from tests.support.live_server import wait_until
from tests.support.workers import Engine, get_job, submit, wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.live]


def test_the_embedded_model_judges_a_real_answer(tmp_path, database_url, make_app, signer):
    config = tmp_path / "local-judge.toml"
    config.write_text(
        DEFAULT_CONFIG_PATH.read_text("utf-8")
        + '\n[judge]\nregion = "us-east"\nmodel = "smollm2-135m"\nsummary = false\n',
        "utf-8",
    )
    app = make_app(BEACON_CONFIG=str(config))
    client = app.test_client()
    spec = {
        "version": "v1",
        "benchmark": {"name": "local-judge", "input": {"type": "prompt", "data": {}}},
        "constraints": {"regions": ["us-east"]},
        "metadata": {"models": ["smollm2-135m"]},
        "questions": ["geography_basic"],
        "runs": 1,
    }
    engine = Engine(tmp_path, database_url)
    try:
        job_id = submit(client, signer, spec)
        engine.worker(config)
        job = wait_for_job(client, job_id, timeout=300, engine=engine)
        assert job["status"] == "completed"

        def judged():
            answer = get_job(client, job_id)["executions"][0]["answers"][0]
            judgement = answer["judgement"]
            return answer if judgement and judgement["status"] not in ACTIVE else None

        answer = wait_until(judged, 300, interval=0.5, what="the local judge")
    finally:
        engine.close()
    judgement = answer["judgement"]
    # A 135M model may or may not keep to one word: either way the reply is kept and read
    # strictly, and the answer itself is untouched.
    assert judgement["status"] == "completed", judgement
    assert judgement["model_id"] == "smollm2-135m" and judgement["region"] == "us-east"
    assert judgement["prompt_version"] == "judge-v1"
    assert judgement["reply"] is not None
    assert judgement["label"] in ("complete", "evasive", "denial", "error")
    if judgement["label"] == "error":
        assert judgement["error"] and judgement["reply"].strip().lower() not in (
            "complete",
            "evasive",
            "denial",
        )
    assert answer["status"] == "completed" and answer["output"]
