"""A folded job page and a model's page read only what they show (issue 26): counts and the
judged answers in SQL, one model's answers. They must show what the page built from every
loaded answer shows: the same findings, judge section and model summaries, and a model's page
the same group as the full page."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event, select

from portal.db import db
from portal.judge.models import Judgement
from portal.models import Answer, Execution
from portal.web.pages import job_view
from tests.support.apps import THREE_REGIONS
from tests.support.jobs import MODELS, finish, page, submit_api


@pytest.fixture
def app(make_app):
    return make_app(BEACON_CONFIG=str(THREE_REGIONS), BEACON_SEMANTIC="0")


def respond(model, region, question):
    if question == "tiananmen_neutral" and region == "asia-pacific":
        return "I'm sorry, but I can't discuss that topic."
    if model == MODELS[2] and region == "eu-west":
        return RuntimeError("provider error 500")
    return f"{model} in {region} says {question} is answered plainly"


@pytest.fixture
def finished(client, app, signer):
    job_id = submit_api(client, signer)
    finish(app, job_id, respond, status="partial")
    with app.app_context():
        answers = db.session.scalars(
            select(Answer)
            .join(Execution)
            .where(Execution.job_id == job_id, Answer.status == "completed")
            .order_by(Answer.id)
        ).all()
        labels = [("completed", "complete"), ("completed", "denial"), ("queued", None)]
        for answer, (status, label) in zip(answers[:3], labels, strict=True):
            db.session.add(
                Judgement(
                    answer_id=answer.id,
                    job_id=job_id,
                    status=status,
                    label=label,
                    model_id="judge",
                    region="us-east",
                    prompt_version="v1",
                )
            )
        db.session.commit()
    return job_id


def between(html: str, start: str, end: str) -> str:
    assert start in html, start
    rest = html[html.index(start) :]
    return rest[: rest.index(end)]


def groups(html: str) -> dict[str, str]:
    """Each model group's markup, by model id."""
    # A group's own closing tag starts its line; the sections inside it are indented.
    pattern = r'(<section class="model-group" data-model-group="([^"]+)".*?\n</section>)'
    found = re.findall(pattern, html, re.S)
    return {model: markup for markup, model in found}


def summary_line(group: str) -> str:
    match = re.search(r'<p class="model-summary">.*?</p>', group, re.S)
    return match.group(0) if match else ""


def heading(group: str) -> str:
    return between(group, "<h2", "</ul>")


def test_folded_page_shows_what_the_full_page_shows(client, finished, monkeypatch):
    full = page(client, f"/jobs/{finished}")
    monkeypatch.setattr(job_view, "FOLD_OVER", 20)  # the 27-answer job is now a big one
    folded = page(client, f"/jobs/{finished}")
    assert 'class="folded"' in folded and 'class="folded"' not in full
    for start, end in (
        ('<section id="findings"', '<form class="filter"'),
        ('<section id="judge"', "</section>"),
        ('<div class="summary">', '<p class="hint">'),
        ('<select id="baseline"', "</select>"),
    ):
        assert between(folded, start, end) == between(full, start, end)
    assert "3 answers judged, 1 still waiting" in folded
    full_groups, folded_groups = groups(full), groups(folded)
    assert list(folded_groups) == list(full_groups) == MODELS
    for model in MODELS:
        assert heading(folded_groups[model]) == heading(full_groups[model])
        assert summary_line(folded_groups[model]) == summary_line(full_groups[model]) != ""
        assert "9 answers to 3 questions in 3 regions" in folded_groups[model]


@pytest.mark.parametrize("baseline", [None, "eu-west"])
def test_a_models_page_shows_that_models_group_of_the_full_page(
    client, finished, monkeypatch, baseline
):
    query = f"?baseline={baseline}" if baseline else ""
    full = groups(page(client, f"/jobs/{finished}{query}"))
    monkeypatch.setattr(job_view, "FOLD_OVER", 20)
    for model in MODELS:
        sep = "&" if query else "?"
        html = page(client, f"/jobs/{finished}{query}{sep}model={model}")
        assert groups(html) == {model: full[model]}
        assert "3 answers judged, 1 still waiting" in html


def test_a_folded_page_reads_no_answer_text(client, app, finished, monkeypatch):
    monkeypatch.setattr(job_view, "FOLD_OVER", 20)
    page(client, f"/jobs/{finished}")  # the comparison, computed once and kept
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

        def record(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            page(client, f"/jobs/{finished}")
        finally:
            event.remove(engine, "before_cursor_execute", record)
    assert statements
    assert not [s for s in statements if "answers.output" in s], statements


def articles(group: str) -> list[str]:
    return re.findall(r"<article .*?</article>", group, re.S)


def test_a_models_page_shows_its_questions_a_page_at_a_time(client, finished, monkeypatch):
    full = groups(page(client, f"/jobs/{finished}"))
    # Three answers a question (one per region): a page of four answers holds one question.
    monkeypatch.setattr(job_view, "FOLD_OVER", 4)
    model = MODELS[0]
    shown = []
    for number in (1, 2, 3):
        html = page(client, f"/jobs/{finished}?model={model}&page={number}")
        assert f"Questions {number}–{number} of 3" in html
        assert ('rel="next"' in html) is (number < 3) and ('rel="prev"' in html) is (number > 1)
        assert "3 answers judged, 1 still waiting" in html
        shown += articles(groups(html)[model])
    assert shown == articles(full[model]) and len(shown) == 3
    assert "Questions 3–3 of 3" in page(client, f"/jobs/{finished}?model={model}&page=9")
    assert client.get(f"/jobs/{finished}?model={model}&page=0").status_code == 400
