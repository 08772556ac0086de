"""Jobs for in-process page and API tests: submitted through the API or the form, and ended
as the engine would end them, without a provider."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from portal.db import db
from portal.models import Job
from portal.times import utcnow
from tests.support.apps import spec_3x3

MODELS = ["llama3.2-1b", "mistral-7b", "qwen2.5-1.5b"]
REGIONS = ["us-east", "eu-west", "asia-pacific"]
QUESTIONS = ["identity_basic", "tiananmen_neutral", "geography_basic"]
FORM_3X3 = {"questions": QUESTIONS, "models": MODELS, "regions": REGIONS}


def submit_api(client, signer, **changes) -> str:
    response = client.post(
        "/api/v1/jobs", data=signer.body(spec_3x3(**changes)), content_type="application/json"
    )
    assert response.status_code == 202, response.json
    return response.json["job"]["id"]


def submit_form(client, data=None) -> str:
    response = client.post("/jobs/new", data=data or FORM_3X3)
    assert response.status_code == 303, response.get_data(as_text=True)
    return response.headers["Location"].rsplit("/", 1)[-1]


def finish(app, job_id: str, respond, status: str = "completed") -> None:
    """Ends a job as the engine would: `respond(model, region, question_id)` gives the output."""
    now = utcnow()
    with app.app_context():
        job = db.session.scalar(select(Job).where(Job.id == job_id))
        for execution in job.executions:
            for answer in execution.answers:
                result = respond(execution.model_id, execution.region, answer.question_id)
                if isinstance(result, Exception):
                    answer.status, answer.error = "failed", str(result)
                else:
                    answer.status, answer.output = "completed", result
                answer.attempts = 1
                answer.started_at = now - timedelta(milliseconds=300)
                answer.finished_at = now
                answer.latency_ms = 300
            execution.status = "completed"
            execution.started_at, execution.finished_at = now - timedelta(seconds=1), now
        job.status, job.started_at, job.finished_at = status, now - timedelta(seconds=1), now
        db.session.commit()


def page(client, path: str, status: int = 200, **kwargs) -> str:
    response = client.get(path, **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


def echo(model, region, question):
    return f"{model} says the answer to {question} is the same everywhere"


def groups_of(html: str) -> list[tuple[str, list[str]]]:
    """Returns [(model_id, [regions])] from the data-model-group / data-region markers."""
    found = []
    for match in re.finditer(
        r'data-model-group="([^"]+)"(.*?)</section>\s*(?=<section|$|</)', html, re.S
    ):
        found.append((match.group(1), re.findall(r'data-region="([^"]+)"', match.group(2))))
    return found
