"""A big job's page folds its model groups to one link each, and `?model=` shows one model's
answers: the page of a 1,000-answer job costs its findings, not 1,000 rendered answers."""

from __future__ import annotations

import pytest

from portal.web.pages import job_view
from tests.support.apps import THREE_REGIONS
from tests.support.html_check import assert_valid_page
from tests.support.jobs import MODELS, echo, finish, groups_of, page, submit_api


@pytest.fixture
def app(make_app):
    return make_app(BEACON_CONFIG=str(THREE_REGIONS))


@pytest.fixture
def finished(client, app, signer):
    job_id = submit_api(client, signer)
    finish(app, job_id, echo)
    return job_id


def answers_on(html: str) -> int:
    return html.count('class="answer"')


def test_a_job_under_the_fold_shows_every_answer(client, finished):
    html = page(client, f"/jobs/{finished}")
    assert answers_on(html) == 27
    assert "read this model's answers" not in html


def test_a_job_over_the_fold_links_each_model_instead(client, finished, monkeypatch):
    monkeypatch.setattr(job_view, "FOLD_OVER", 20)  # the 27-answer job is now a big one
    html = page(client, f"/jobs/{finished}")
    assert_valid_page(html)
    assert answers_on(html) == 0
    assert [model for model, _ in groups_of(html)] == MODELS
    for model in MODELS:
        assert f'href="/jobs/{finished}?model={model}"' in html
    assert 'id="overview"' in html  # the findings stay on the page
    assert "each model's answers are on a page of their own" in html


def test_one_model_page_shows_that_models_answers_only(client, finished, monkeypatch):
    monkeypatch.setattr(job_view, "FOLD_OVER", 20)
    html = page(client, f"/jobs/{finished}?model={MODELS[1]}&baseline=eu-west")
    assert_valid_page(html)
    assert [model for model, _ in groups_of(html)] == [MODELS[1]]
    assert answers_on(html) == 9
    assert f'<input type="hidden" name="model" value="{MODELS[1]}">' in html
    assert f'href="/jobs/{finished}?baseline=eu-west"' in html  # back to every model
    live = client.get(f"/jobs/{finished}?model={MODELS[1]}", headers={"HX-Request": "true"})
    assert [model for model, _ in groups_of(live.get_data(as_text=True))] == [MODELS[1]]


def test_a_model_the_job_does_not_have_is_404(client, finished):
    assert client.get(f"/jobs/{finished}?model=gpt-9").status_code == 404
    assert client.get(f"/jobs/{finished}?models=x").status_code == 400
