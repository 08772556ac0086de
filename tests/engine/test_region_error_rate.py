"""Issue 20, item 7: /regions and /api/v1/regions compute a region's error rate from its
provider calls, not from its answers: an answer asked four times, three of them failing, is
four calls and three failures, not one success."""

from __future__ import annotations

import re

from tests.support.inline import run_inline
from tests.support.loopback import LoopbackProvider
from tests.support.specs import job_spec
from tests.support.workers import submit, write_config

PROMPT = "What is one plus one, please?"


def test_calls_that_failed_before_a_success_count_in_the_error_rate(make_app, signer, tmp_path):
    with LoopbackProvider(label="flaky") as flaky, LoopbackProvider(label="steady") as steady:
        # Three transient failures, then the answer: within max_attempts = 4.
        flaky.script(["503", "503", "503"])
        urls = {
            "us-east": flaky.base_url_openai,
            "eu-west": steady.base_url_openai,
            "asia-pacific": steady.base_url_openai,
        }
        config = write_config(tmp_path / "flaky.toml", urls, max_attempts=4)
        # Lexical similarity only: loading the embedding model is not what this test is about.
        app = make_app(BEACON_CONFIG=str(config), BEACON_SEMANTIC="0")
        client = app.test_client()
        job_id = submit(client, signer, job_spec(["llama3.2-1b"], ["us-east"], [PROMPT]))
        run_inline(app)
        assert flaky.count() == 4, flaky.stats()

    job = client.get(f"/api/v1/jobs/{job_id}").json["job"]
    answer = job["executions"][0]["answers"][0]
    assert (answer["status"], answer["attempts"]) == ("completed", 4), answer

    health = {r["id"]: r["health"] for r in client.get("/api/v1/regions").json["items"]}
    us_east = health["us-east"]
    # Today: 1 call, 0 failed, error rate 0.0, status "ok".
    assert (us_east["calls"], us_east["failed"], us_east["error_rate"]) == (4, 3, 0.75), us_east
    assert us_east["status"] == "degraded", us_east

    page = client.get("/regions").get_data(as_text=True)
    row = re.search(r"<code>us-east</code>.*?</tr>", page, re.S)
    assert row is not None, page[:2000]
    assert "75%" in row.group(0) and "3 of 4 failed" in row.group(0), row.group(0)
