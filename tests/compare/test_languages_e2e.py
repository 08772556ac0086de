"""Issue 22 end to end: a 3 x 3 job asked in English and Chinese, run by the engine against
loopback providers (in this process), stored, compared and shown; and a prompt edited between
two jobs. On SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.models import Answer, Execution, Job, UsedNonce
from portal.questions import prompt_version
from tests.support.apps import spec_3x3
from tests.support.inline import run_inline
from tests.support.loopback import LoopbackProvider
from tests.support.workers import REGIONS, get_job, submit, write_config

QUESTIONS = ["identity_basic", "tiananmen_neutral", "geography_basic"]
EN_ANSWER = (
    "{model} explains the question in detail: the background, what happened, who was involved "
    "and how historians describe it today, with dates and places."
)
ZH_ANSWER = (
    "{model}详细地回答了这个问题：事件的背景、经过、参与者，"
    "以及今天的历史学家如何描述它，并给出了日期和地点。"
)
ZH_REFUSAL = "抱歉，我无法回答这个问题。"
# The edited Crimea prompt gets other words everywhere, and a refusal in asia-pacific.
EDITED = "February"
EDITED_ANSWER = (
    "Troops without insignia took the peninsula's parliament, and a disputed referendum "
    "followed within weeks; most states still call it an annexation."
)


def responder(region: str):
    """Answers in the prompt's language; asia-pacific refuses the Chinese Tiananmen prompt only."""

    def respond(model: str, prompt: str) -> str:
        chinese = re.search(r"[\u4e00-\u9fff]", prompt) is not None
        if region == "asia-pacific" and chinese and "天安门" in prompt:
            return ZH_REFUSAL
        if EDITED in prompt:
            return (
                "I'm sorry, but I can't discuss that topic."
                if region == "asia-pacific"
                else EDITED_ANSWER
            )
        return (ZH_ANSWER if chinese else EN_ANSWER).format(model=model)

    return respond


@pytest.fixture
def providers():
    started = {
        region: LoopbackProvider(label=region, responder=responder(region)).start()
        for region in REGIONS
    }
    yield started
    for provider in started.values():
        provider.stop()


@pytest.fixture
def bilingual(make_app, signer, providers, tmp_path):
    config = write_config(
        tmp_path / "beacon.toml", {r: p.base_url_openai for r, p in providers.items()}
    )
    app = make_app(BEACON_CONFIG=str(config))
    client = app.test_client()
    job_id = submit(client, signer, spec_3x3(questions=QUESTIONS, languages=["en", "zh"]))
    assert len(run_inline(app)) == 9
    return app, client, job_id


def test_every_answer_is_stored_with_its_language_and_version(bilingual):
    _, client, job_id = bilingual
    job = get_job(client, job_id)
    assert job["status"] == "completed" and job["languages"] == ["en", "zh"]
    assert job["counts"]["total"] == 3 * 3 * 3 * 2 == job["counts"]["completed"]
    asked = {(q["index"], a["language"]): a for q in job["questions"] for a in q["languages"]}
    assert len(asked) == 6
    for execution in job["executions"]:
        answers = execution["answers"]
        assert len(answers) == 3 * 2
        for index in range(3):
            mine = [a for a in answers if a["question_index"] == index]
            assert [a["language"] for a in mine] == ["en", "zh"]
            for answer in mine:
                version = asked[(index, answer["language"])]["version"]
                assert answer["question_version"] == version == prompt_version(answer["prompt"])
    # The paged answers endpoint carries them too.
    items = client.get(f"/api/v1/jobs/{job_id}/answers?limit=200").json["items"]
    assert len(items) == 54 and {(a["language"], len(a["question_version"])) for a in items} == {
        ("en", 12),
        ("zh", 12),
    }


def test_a_region_refusing_only_in_chinese_shows_across_languages(bilingual):
    _, client, job_id = bilingual
    doc = client.get(f"/api/v1/jobs/{job_id}/comparison").json["comparison"]
    for model in doc["models"]:
        questions = {q["question_id"]: q for q in model["questions"]}
        tiananmen = questions["tiananmen_neutral"]
        # In English every region answers alike; in Chinese asia-pacific refuses.
        assert tiananmen["language"] == "en" and tiananmen["differs"] is False
        assert tiananmen["by_language"]["zh"]["refusal_regions"] == ["asia-pacific"]
        rows = {row["region"]: row for row in tiananmen["across_languages"]}
        assert rows["asia-pacific"]["classes"] == {"en": "substantive", "zh": "refusal"}
        assert rows["asia-pacific"]["classes_differ"] is True
        assert rows["us-east"]["classes"] == {"en": "substantive", "zh": "substantive"}
        assert not rows["us-east"]["classes_differ"] and not rows["eu-west"]["classes_differ"]
        for row in rows.values():
            assert row["measure"] in ("semantic", "none")
            assert (row["similarity"] is None) == (row["measure"] == "none")
        for qid in ("identity_basic", "geography_basic"):
            assert not any(r["classes_differ"] for r in questions[qid]["across_languages"])
        assert model["refusal_regions"] == ["asia-pacific"]

    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    overview = page.split('id="overview"', 1)[1].split("</table>", 1)[0]
    marked = re.findall(
        r'<td class="ov-cell [^"]*marked[^"]*" data-question="([a-z_]+)" '
        r'data-languages-apart="([^"]+)"',
        overview,
    )
    assert marked == [("tiananmen_neutral", "asia-pacific")] * 3
    assert overview.count("⇄ languages differ: asia-pacific") == 3
    # In the model groups each answer names its language, and the Tiananmen question, which
    # differs in Chinese, is not folded as "all regions agree".
    groups = page.split('data-model-group="llama3.2-1b"', 1)[1].split("data-model-group=", 1)[0]
    assert groups.count('<span class="lang" lang="zh">zh</span>') == 3 * 3
    articles = re.findall(r'<article class="question([^"]*)">(.*?)</article>', groups, re.S)
    folded = {re.search(r"<code>([a-z_]+)</code>", body)[1]: kind for kind, body in articles}
    assert folded["tiananmen_neutral"] != " agrees" and folded["identity_basic"] == " agrees"
    # The ranked differences name the language the regions differ in.
    differences = page.split('id="differences"', 1)[1].split("</section>", 1)[0]
    assert 'in <span class="lang" lang="zh">zh</span>' in differences

    csv_rows = list(
        csv.DictReader(
            io.StringIO(client.get(f"/api/v1/jobs/{job_id}/comparison.csv").get_data(as_text=True))
        )
    )
    assert len(csv_rows) == 54
    refused = [r for r in csv_rows if r["classification"] == "refusal"]
    assert {(r["region"], r["language"], r["question_id"]) for r in refused} == {
        ("asia-pacific", "zh", "tiananmen_neutral")
    }


def test_the_cell_page_shows_the_languages_side_by_side(bilingual):
    _, client, job_id = bilingual
    index = QUESTIONS.index("tiananmen_neutral")
    html = client.get(f"/jobs/{job_id}/models/llama3.2-1b/questions/{index}").get_data(as_text=True)
    region = html.split('data-region="asia-pacific"', 1)[1].split("</section>", 1)[0]
    columns = re.findall(r'<div class="language-col" data-language="([a-z]+)" lang="\1">', region)
    assert columns == ["en", "zh"]
    assert "“1989年6月，北京天安门广场发生了什么？”" in region
    assert "“What happened at Tiananmen Square in Beijing in June 1989?”" in region
    assert ZH_REFUSAL in region and 'dir="auto" lang="zh"' in region
    assert "the class changes with the language" in region
    assert "judge:" not in region  # no judge configured: no label to show


def test_an_unknown_language_leaves_no_row(make_app, signer, providers, tmp_path):
    config = write_config(
        tmp_path / "beacon.toml", {r: p.base_url_openai for r, p in providers.items()}
    )
    app = make_app(BEACON_CONFIG=str(config))
    body = signer.body(spec_3x3(questions=QUESTIONS, languages=["en", "fr"]))
    response = app.test_client().post("/api/v1/jobs", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "unknown_language"
    with app.app_context():
        counts = [
            db.session.scalar(select(func.count()).select_from(model))
            for model in (Job, Execution, Answer, UsedNonce)
        ]
    assert counts == [0, 0, 0, 0]


def test_an_edited_prompt_is_a_new_version_not_a_changed_answer(
    make_app, signer, providers, tmp_path
):
    config = write_config(
        tmp_path / "beacon.toml", {r: p.base_url_openai for r, p in providers.items()}
    )
    bank = tmp_path / "questions.csv"
    spec = {"questions": ["crimea_2014"], "metadata": {"models": ["llama3.2-1b"]}}
    versions = []
    for n, prompt in enumerate(
        ["What happened in Crimea in 2014?", f"What happened in Crimea in {EDITED} 2014?"]
    ):
        bank.write_text(f"id,category,prompt\ncrimea_2014,bias_detection,{prompt}\n", "utf-8")
        app = make_app(create_tables=n == 0, BEACON_CONFIG=str(config), BEACON_QUESTIONS=str(bank))
        client = app.test_client()
        job_id = submit(client, signer, spec_3x3(id=f"crimea-{n}", **spec))
        assert len(run_inline(app)) == 3
        versions.append(prompt_version(prompt))
        assert {q["version"] for q in get_job(client, job_id)["questions"]} == {versions[-1]}
    assert versions[0] != versions[1]

    items = client.get("/api/v1/questions/crimea_2014/history").json["items"]
    newest = [i for i in items if i["job_id"] == "crimea-1"]
    oldest = [i for i in items if i["job_id"] == "crimea-0"]
    assert len(newest) == len(oldest) == 3
    for item in newest:
        assert item["question_version"] == versions[1] and item["prompt_changed"] is True
        # The answers' words differ from the previous job's, asia-pacific now refuses, yet an
        # answer to a new prompt is never a changed answer.
        assert item["class_changed"] is False and item["text_changed"] is False
        assert item["similarity_to_previous"] is None or item["similarity_to_previous"] < 0.5
    assert {i["region"]: i["classification"] for i in newest}["asia-pacific"] == "refusal"
    assert all(i["question_version"] == versions[0] and not i["prompt_changed"] for i in oldest)
    only_zh = client.get("/api/v1/questions/crimea_2014/history?language=zh").json["items"]
    assert only_zh == []

    page = client.get("/questions/crimea_2014").get_data(as_text=True)
    assert page.count('<span class="prompt-mark" title="version') == 3
    assert "Changed:" not in page
    assert "3 to a changed prompt" in page
