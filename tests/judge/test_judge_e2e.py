"""Issue 16 end to end: a judge model labels every completed answer after the job ends.

Real worker process, real loopback providers; one more loopback acts as the judge model (it
answers `denial` when the answer it is shown refuses, else `complete`).
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.judge.models import Judgement
from portal.status import ACTIVE
from tests.support.apps import spec_3x3
from tests.support.live_server import wait_until
from tests.support.loopback import judging_responder
from tests.support.workers import REGIONS, Engine, get_job, submit, wait_for_job

pytestmark = pytest.mark.live

REFUSAL = "I'm sorry, but I cannot discuss this topic. Let's talk about something else."
JUDGE_MODEL = "llama3.2-1b"


def responder_for(region: str):
    """Every region answers alike; asia-pacific refuses the sensitive question."""

    def respond(model: str, prompt: str) -> str:
        if region == "asia-pacific" and "Tiananmen" in prompt:
            return REFUSAL
        return f"{model} gives a detailed, factual answer to '{prompt}' with the main facts."

    return respond


def judge_toml(region: str = "judge-host", base_url: str | None = None, summary=True) -> str:
    lines = []
    if base_url is not None:
        lines += ["", f"[regions.{region}]", 'provider = "openai"', f'base_url = "{base_url}"']
    lines += ["", "[judge]", f'region = "{region}"', f'model = "{JUDGE_MODEL}"']
    lines.append(f"summary = {'true' if summary else 'false'}")
    return "\n".join(lines) + "\n"


class Setup:
    """One test's engine: answer providers, a judge provider, a configuration and a worker."""

    def __init__(self, tmp_path, database_url, make_app, judge: str = "up", **limits):
        self.engine = Engine(tmp_path, database_url)
        self.answerers = {r: self.engine.provider(r, responder=responder_for(r)) for r in REGIONS}
        self.judge = self.engine.provider("judge", responder=judging_responder())
        config = self.engine.config({r: p.base_url_openai for r, p in self.answerers.items()})
        text = config.read_text("utf-8")
        if judge == "up":
            text += judge_toml(base_url=self.judge.base_url_openai)
        elif judge == "down":
            # Nothing listens there: every judge call is refused, and retried like an answer.
            self.judge.stop()
            text += judge_toml(base_url=f"http://127.0.0.1:{self.judge.port}/v1")
        if limits:
            text = text.replace("max_attempts = 3", f"max_attempts = {limits['max_attempts']}")
        config.write_text(text, "utf-8")
        self.config = config
        self.app = make_app(BEACON_CONFIG=str(config))
        self.client = self.app.test_client()

    def run(self, signer, spec: dict) -> dict:
        job_id = submit(self.client, signer, spec)
        self.engine.worker(self.config)
        return wait_for_job(self.client, job_id, engine=self.engine)

    def judged(self, job_id: str, summary: bool = True) -> dict:
        """Waits until every judgement (and the summary) has ended; returns the job."""

        def done():
            job = get_job(self.client, job_id)
            answers = [a for e in job["executions"] for a in e["answers"]]
            if any(a["judgement"] is None or a["judgement"]["status"] in ACTIVE for a in answers):
                return None
            if summary and self.summary_status(job_id) in (None, *ACTIVE):
                return None
            return job

        return wait_until(done, 60, interval=0.2, what=f"the judge to finish job {job_id}")

    def summary_status(self, job_id: str) -> str | None:
        from portal.judge.models import JobSummary

        with self.app.app_context():
            row = db.session.scalar(select(JobSummary).where(JobSummary.job_id == job_id))
            status = row.status if row else None
            db.session.remove()
        return status


def answers_of(job: dict) -> list[dict]:
    return [
        {**a, "model_id": e["model_id"], "region": e["region"]}
        for e in job["executions"]
        for a in e["answers"]
    ]


def without_judgements(job: dict) -> dict:
    """The job as it stands apart from the judge's labels."""
    return {
        **job,
        "executions": [
            {
                **e,
                "answers": [{k: v for k, v in a.items() if k != "judgement"} for a in e["answers"]],
            }
            for e in job["executions"]
        ],
    }


def judge_calls(provider) -> int:
    return sum("<<<ANSWER\n" in (c["prompt"] or "") for c in provider.calls)


@pytest.fixture
def judged_job(tmp_path, database_url, make_app, signer):
    setup = Setup(tmp_path, database_url, make_app)
    try:
        job = setup.run(signer, spec_3x3())
        yield setup, setup.judged(job["id"])
    finally:
        setup.engine.close()


def test_judge_labels_every_completed_answer_and_is_not_part_of_the_job(judged_job):
    setup, job = judged_job
    assert job["status"] == "completed"
    assert job["counts"]["total"] == 27 and job["counts"]["completed"] == 27
    labels = {
        (a["model_id"], a["region"], a["question_id"]): a["judgement"] for a in answers_of(job)
    }
    assert len(labels) == 27
    for (_, region, question_id), judgement in labels.items():
        refused = region == "asia-pacific" and question_id == "tiananmen_neutral"
        assert judgement["label"] == ("denial" if refused else "complete"), (region, question_id)
        assert judgement["status"] == "completed" and judgement["agrees"] is True
        assert judgement["model_id"] == JUDGE_MODEL and judgement["region"] == "judge-host"
        assert judgement["prompt_version"] == "judge-v1"
    # Judge calls went to the judge alone, once per answer, and the job never counted them.
    assert sum(len(p.calls) for p in setup.answerers.values()) == 27
    assert judge_calls(setup.judge) == 27
    assert all(judge_calls(p) == 0 for p in setup.answerers.values())
    with setup.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Judgement)) == 27
        db.session.remove()

    comparison = setup.client.get(f"/api/v1/jobs/{job['id']}/comparison").json["comparison"]
    entries = [a for m in comparison["models"] for q in m["questions"] for a in q["answers"]]
    assert {a["judgement"]["label"] for a in entries} == {"complete", "denial"}
    rows = list(
        csv.DictReader(
            io.StringIO(
                setup.client.get(f"/api/v1/jobs/{job['id']}/comparison.csv").get_data(as_text=True)
            )
        )
    )
    assert len(rows) == 27
    assert {(r["region"], r["question_id"]) for r in rows if r["judge_label"] == "denial"} == {
        ("asia-pacific", "tiananmen_neutral")
    }
    assert all(r["judge_agrees"] == "true" for r in rows)


def test_summary_is_stored_served_cited_and_shown_as_machine_written(judged_job):
    setup, job = judged_job
    response = setup.client.get(f"/api/v1/jobs/{job['id']}/summary")
    assert response.status_code == 200, response.json
    summary = response.json["summary"]
    assert summary["model_id"] == JUDGE_MODEL and summary["region"] == "judge-host"
    assert summary["prompt_version"] == "summary-v1" and summary["created_at"].endswith("Z")
    cited = {int(n) for n in re.findall(r"\[answer:(\d+)\]", summary["text"])}
    refusals = {a["id"] for a in answers_of(job) if a["judgement"]["label"] == "denial"}
    assert cited == refusals and len(refusals) == 3
    page = setup.client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert "Machine-written summary" in page
    for answer_id in cited:
        assert f'href="#answer-{answer_id}"' in page and f'id="answer-{answer_id}"' in page
    assert "judge: denial" in page and "judge: complete" in page
    assert "<strong>0</strong> disagreements between the judge and the rules" in page
    missing = setup.client.get("/api/v1/jobs/no-such-job/summary")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "job_not_found"


def test_garbled_judge_reply_is_error_with_the_reply_kept_and_the_job_as_it_was(judged_job, signer):
    setup, job = judged_job
    setup.engine.workers[0].stop()
    before = without_judgements(get_job(setup.client, job["id"]))
    # Within the judge's max_tokens (8): the loopback, like a real provider, cuts longer replies.
    garbled = "Mostly complete, I would say, maybe?"
    setup.judge.responder = lambda model, prompt: garbled
    result = setup.app.test_cli_runner().invoke(args=["beacon", "judge", job["id"]])
    assert result.exit_code == 0, result.output
    assert "27 judged" in result.output
    after = get_job(setup.client, job["id"])
    assert without_judgements(after) == before
    for answer in answers_of(after):
        judgement = answer["judgement"]
        assert judgement["label"] == "error" and judgement["reply"] == garbled
        assert judgement["agrees"] is None and "not one of" in judgement["error"]
    page = setup.client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert "judge: error" in page and "Why the judge gave no label" in page
    assert garbled in page


def test_a_summary_citing_an_answer_the_job_does_not_have_is_rejected(judged_job):
    setup, job = judged_job
    setup.engine.workers[0].stop()
    fallback = judging_responder()
    invented = "asia-pacific refused tiananmen_neutral [answer:999999]."

    def respond(model: str, prompt: str) -> str:
        return invented if "<<<ANSWERS" in prompt else fallback(model, prompt)

    setup.judge.responder = respond
    result = setup.app.test_cli_runner().invoke(args=["beacon", "judge", job["id"]])
    assert result.exit_code == 0, result.output
    assert "no summary" in result.output and "999999" in result.output
    response = setup.client.get(f"/api/v1/jobs/{job['id']}/summary")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "summary_not_found"
    assert "999999" in response.json["error"]["message"]
    page = setup.client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert "No summary: it was rejected" in page and invented in page
    assert 'href="#answer-999999"' not in page


def test_a_judge_that_is_down_leaves_every_result_intact(tmp_path, database_url, make_app, signer):
    setup = Setup(tmp_path, database_url, make_app, judge="down", max_attempts=2)
    try:
        job = setup.run(signer, spec_3x3())
        judged = setup.judged(job["id"])
    finally:
        setup.engine.close()
    assert judged["status"] == "completed" and judged["counts"]["completed"] == 27
    assert without_judgements(judged) == without_judgements(job)
    for answer in answers_of(judged):
        assert answer["output"] and answer["classification"] in ("substantive", "refusal")
        judgement = answer["judgement"]
        assert judgement["status"] == "failed" and judgement["label"] == "error"
        assert (
            "connection refused" in judgement["error"] and "after 2 attempts" in judgement["error"]
        )
    summary = setup.client.get(f"/api/v1/jobs/{job['id']}/summary")
    assert summary.status_code == 404 and "failed" in summary.json["error"]["message"]
    comparison = setup.client.get(f"/api/v1/jobs/{job['id']}/comparison").json["comparison"]
    assert all(m["refusal_regions"] == ["asia-pacific"] for m in comparison["models"])
    page = setup.client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert "judge: error" in page and "connection refused" in page


def test_without_a_judge_no_judge_call_is_made_and_judgement_is_null(
    tmp_path, database_url, make_app, signer
):
    setup = Setup(tmp_path, database_url, make_app, judge="none")
    try:
        job = setup.run(signer, spec_3x3())
    finally:
        setup.engine.close()
    assert job["status"] == "completed"
    assert all(a["judgement"] is None for a in answers_of(get_job(setup.client, job["id"])))
    assert setup.judge.calls == []
    assert all(judge_calls(p) == 0 for p in setup.answerers.values())
    assert sum(len(p.calls) for p in setup.answerers.values()) == 27
    with setup.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Judgement)) == 0
        db.session.remove()
    summary = setup.client.get(f"/api/v1/jobs/{job['id']}/summary")
    assert summary.status_code == 404 and summary.json["error"]["code"] == "summary_not_found"
    page = setup.client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert 'id="judge"' not in page and "judge:" not in page
