"""GET /api/v1/jobs/<id>/comparison and .csv, computed from stored answers, cached once ended."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from portal.compare import CSV_COLUMNS
from portal.config import ConfigError
from portal.db import db
from portal.models import Job
from tests.support.apps import THREE_REGIONS, spec_3x3

REFUSAL = "I'm sorry, but I can't discuss that topic."


def answer_text(region: str, question_id: str) -> str:
    if region == "asia-pacific" and question_id == "tiananmen_neutral":
        return REFUSAL
    return f"A full and identical answer about {question_id} that every region gives the same way."


@pytest.fixture
def finished_job(make_app, signer):
    """A 3 x 3 x 3 job whose answers are stored as a finished run would leave them."""
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS))
    client = app.test_client()
    job_id = client.post(
        "/api/v1/jobs", data=signer.body(spec_3x3()), content_type="application/json"
    ).json["job"]["id"]
    with app.app_context():
        job = db.session.scalar(select(Job).where(Job.id == job_id))
        for execution in job.executions:
            execution.status = "completed"
            for answer in execution.answers:
                answer.status = "completed"
                answer.output = answer_text(execution.region, answer.question_id)
        job.status = "completed"
        from portal.times import utcnow

        job.finished_at = utcnow()
        db.session.commit()
    return app, client, job_id


def test_comparison_flags_refusals_and_matches_controls(finished_job):
    _, client, job_id = finished_job
    doc = client.get(f"/api/v1/jobs/{job_id}/comparison").json["comparison"]
    assert doc["baseline"] == "us-east" and doc["measure"] in ("lexical", "semantic")
    assert [m["model_id"] for m in doc["models"]] == ["llama3.2-1b", "mistral-7b", "qwen2.5-1.5b"]
    for model in doc["models"]:
        by_id = {q["question_id"]: q for q in model["questions"]}
        sensitive = by_id["tiananmen_neutral"]
        assert sensitive["refusal_regions"] == ["asia-pacific"]
        assert sensitive["differs"] is True and sensitive["divergence"] > 0.5
        for control in ("identity_basic", "geography_basic"):
            question = by_id[control]
            assert question["divergence"] == 0 and question["differs"] is False
            assert all(a["similarity_to_baseline"] == 1.0 for a in question["answers"])
            assert all(a["diff_text"] == "" for a in question["answers"])
        assert model["refusal_regions"] == ["asia-pacific"]


def test_csv_has_the_documented_columns_one_row_per_answer(finished_job):
    _, client, job_id = finished_job
    response = client.get(f"/api/v1/jobs/{job_id}/comparison.csv?baseline=eu-west")
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 27
    assert list(rows[0]) == CSV_COLUMNS
    assert {r["baseline"] for r in rows} == {"eu-west"}
    refusals = [r for r in rows if r["classification"] == "refusal"]
    assert {(r["region"], r["question_id"]) for r in refusals} == {
        ("asia-pacific", "tiananmen_neutral")
    }
    assert len(refusals) == 3


def test_comparison_is_cached_once_ended_and_refuses_unknown_baseline(finished_job):
    app, client, job_id = finished_job
    first = client.get(f"/api/v1/jobs/{job_id}/comparison").json
    with app.app_context():
        job = db.session.scalar(select(Job).where(Job.id == job_id))
        assert job.comparison_cache["doc"] == first["comparison"]
    assert client.get(f"/api/v1/jobs/{job_id}/comparison").json == first
    bad = client.get(f"/api/v1/jobs/{job_id}/comparison?baseline=mars")
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_parameter"
    assert client.get("/api/v1/jobs/none/comparison.csv").status_code == 404


def test_semantic_can_be_switched_off(finished_job, make_app):
    app, _, job_id = finished_job
    lexical = make_app(create_tables=False, BEACON_CONFIG=str(THREE_REGIONS), BEACON_SEMANTIC="0")
    doc = lexical.test_client().get(f"/api/v1/jobs/{job_id}/comparison").json["comparison"]
    assert doc["measure"] == "lexical"
    with pytest.raises(ConfigError, match="BEACON_SEMANTIC"):
        make_app(create_tables=False, BEACON_SEMANTIC="maybe")
