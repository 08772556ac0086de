"""Asking in several languages (SPEC section 11): a JobSpec's `languages`, one answer per
(question, language) pair, the answer count and its limit, and unknown_language."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from portal.config import load_config
from portal.db import db
from portal.errors import Invalid
from portal.intake import jobspec
from portal.models import Answer, Execution, Job, UsedNonce
from portal.questions import prompt_version
from tests.support.apps import THREE_REGIONS, spec_3x3

ZH = "1989年6月，北京天安门广场发生了什么？"
LITERAL = "What is the tallest mountain?"


def post(client, signer, **changes):
    return client.post(
        "/api/v1/jobs", data=signer.body(spec_3x3(**changes)), content_type="application/json"
    )


def row_counts(app) -> tuple[int, ...]:
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(model))
            for model in (Job, Execution, Answer, UsedNonce)
        )


def test_each_question_is_asked_in_each_listed_language_it_has(client3, signer):
    response = post(
        client3,
        signer,
        questions=["tiananmen_neutral", LITERAL, "math_basic"],
        languages=["zh", "en"],
    )
    assert response.status_code == 202, response.json
    job = response.json["job"]
    assert job["languages"] == ["en", "zh", "und"]
    tiananmen, literal, math = job["questions"]
    # Its own language first, whatever the list's order; the question's fields are its first.
    assert [a["language"] for a in tiananmen["languages"]] == ["en", "zh"]
    assert tiananmen["languages"][1] == {
        "language": "zh",
        "prompt": ZH,
        "version": prompt_version(ZH),
    }
    assert (tiananmen["language"], tiananmen["prompt"]) == (
        "en",
        tiananmen["languages"][0]["prompt"],
    )
    # A literal prompt is asked as written, once.
    assert literal["languages"] == [
        {"language": "und", "prompt": LITERAL, "version": prompt_version(LITERAL)}
    ]
    assert [a["language"] for a in math["languages"]] == ["en", "zh"]
    pairs = {(q["index"], a["language"]): a for q in job["questions"] for a in q["languages"]}
    assert len(pairs) == 5
    assert job["counts"]["total"] == 3 * 3 * 5
    for execution in job["executions"]:
        got = [(a["question_index"], a["language"]) for a in execution["answers"]]
        assert got == [(0, "en"), (0, "zh"), (1, "und"), (2, "en"), (2, "zh")]
        for answer in execution["answers"]:
            asked = pairs[(answer["question_index"], answer["language"])]
            assert answer["prompt"] == asked["prompt"]
            assert answer["question_version"] == asked["version"]


def test_languages_in_metadata_are_read_and_normalized(client3, signer):
    response = post(
        client3,
        signer,
        questions=["identity_basic"],
        metadata={"models": ["llama3.2-1b"], "languages": ["ZH", "zh", "en"]},
        runs=2,
    )
    assert response.status_code == 202, response.json
    job = response.json["job"]
    assert job["languages"] == ["en", "zh"]
    assert job["counts"]["total"] == 1 * 3 * 2 * 2


def test_without_languages_only_the_original_is_asked(client3, signer):
    job = post(client3, signer, questions=["tiananmen_neutral"]).json["job"]
    assert job["languages"] == ["en"]
    assert {a["language"] for e in job["executions"] for a in e["answers"]} == {"en"}


def test_a_question_without_any_listed_language_is_asked_in_its_own(make_app, signer, tmp_path):
    folder = tmp_path / "questions.csv"
    folder.write_text("id,prompt,language\nonly_en,What is only English?,en\n", "utf-8")
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS), BEACON_QUESTIONS=str(folder))
    job = post(app.test_client(), signer, questions=["only_en", "identity_basic"], languages=["zh"])
    questions = job.json["job"]["questions"]
    assert [a["language"] for a in questions[0]["languages"]] == ["en"]
    assert [a["language"] for a in questions[1]["languages"]] == ["zh"]


def test_a_language_no_question_has_is_refused_and_leaves_no_row(client3, app3, signer):
    response = post(client3, signer, questions=["identity_basic"], languages=["en", "ru"])
    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "unknown_language"
    assert error["fields"] == {"languages": "ru"}
    assert "'ru'" in error["message"] and "en, zh" in error["message"]
    assert row_counts(app3) == (0, 0, 0, 0)


@pytest.mark.parametrize("languages", ["zh", ["english please"], [7]])
def test_languages_of_the_wrong_shape_are_invalid(client3, app3, signer, languages):
    response = post(client3, signer, languages=languages)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_field"
    assert row_counts(app3) == (0, 0, 0, 0)


def test_the_answer_limit_counts_every_question_language_pair():
    config = load_config(THREE_REGIONS)
    literals = [f"Literal question number {i}?" for i in range(100)]
    spec = spec_3x3(questions=[*config.questions, *literals], runs=10)
    alone = jobspec.normalize(spec, config)
    # 3 models x 3 regions x (8 bank questions + 100 prompts) x 10 runs: under 10,000.
    assert alone.answer_count == 9 * 108 * 10
    with pytest.raises(Invalid) as caught:
        jobspec.normalize({**spec, "languages": ["en", "zh"]}, config)
    assert caught.value.code == "too_many_answers"
    assert f"{9 * (16 + 100) * 10} answers requested" in caught.value.message
