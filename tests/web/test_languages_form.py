"""The job form offers the bank's languages (SPEC section 11) and sends the ticked ones."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.db import db
from portal.models import Job
from tests.support.apps import THREE_REGIONS
from tests.support.jobs import FORM_3X3, MODELS, REGIONS, page, submit_form


@pytest.fixture
def app(make_app):
    return make_app(BEACON_CONFIG=str(THREE_REGIONS))


def test_the_form_offers_the_languages_of_the_bank(client):
    html = page(client, "/jobs/new")
    box = html.split("<legend>Languages</legend>", 1)[1].split("</fieldset>", 1)[0]
    assert 'value="en"' in box and "en (8 questions)" in box
    assert 'value="zh"' in box and "zh (8 questions)" in box
    assert "checked" not in box


def test_ticked_languages_reach_the_job(client, app):
    job_id = submit_form(client, {**FORM_3X3, "languages": ["en", "zh"]})
    with app.app_context():
        job = db.session.scalar(select(Job).where(Job.id == job_id))
        assert [[a["language"] for a in q["languages"]] for q in job.questions] == [
            ["en", "zh"]
        ] * 3
        answers = [a for e in job.executions for a in e.answers]
        assert len(answers) == len(MODELS) * len(REGIONS) * 3 * 2


def test_a_language_no_picked_question_has_is_shown_by_the_field(client):
    response = client.post(
        "/jobs/new",
        data={
            "prompt": "What is the tallest mountain?",
            "languages": ["zh"],
            "models": MODELS,
            "regions": REGIONS,
        },
    )
    assert response.status_code == 422
    box = response.get_data(as_text=True).split("<legend>Languages</legend>", 1)[1]
    errors = box.split("</fieldset>", 1)[0]
    assert "no question of this job is in language &#39;zh&#39;" in errors
