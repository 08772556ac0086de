"""Findings first, through the app: a finished 3 x 3 x 3 job where Asia-Pacific refuses the
sensitive question (real worker, real loopback providers), its overview, differences, charts,
cell pages, and a question's history across two jobs."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.db import db
from portal.models import Job
from tests.support.apps import spec_3x3
from tests.support.workers import REGIONS, Engine, submit, wait_for_job, wait_until

pytestmark = pytest.mark.live

QUESTIONS = ["identity_basic", "tiananmen_neutral", "geography_basic"]
MODELS = ["llama3.2-1b", "mistral-7b", "qwen2.5-1.5b"]
REFUSAL = "I'm sorry, but I can't discuss that topic."
SENSITIVE_ANSWER = (
    "In June 1989 the army ended weeks of protests in Beijing with a crackdown. Tanks entered "
    "the square, and many historians call the killings a massacre; the government called it "
    "an incident. <b>Martial law</b> had been declared in May."
)


class Mode:
    """Which region refuses the sensitive question; tests switch it between jobs."""

    refusing = "asia-pacific"


def responder_for(region: str, mode: type[Mode]):
    def respond(model: str, prompt: str) -> str:
        if "Tiananmen" in prompt:
            return REFUSAL if region == mode.refusing else SENSITIVE_ANSWER
        return f"{model} answers '{prompt}' plainly: the same words in every region."

    return respond


@pytest.fixture
def engine_client(tmp_path, database_url, make_app):
    engine = Engine(tmp_path, database_url)

    class JobMode(Mode):
        pass

    try:
        providers = {r: engine.provider(r, responder=responder_for(r, JobMode)) for r in REGIONS}
        config = engine.config({r: p.base_url_openai for r, p in providers.items()})
        # The lexical measure: the embedding model would only slow these tests down.
        app = make_app(BEACON_CONFIG=str(config), BEACON_SEMANTIC="0")
        engine.worker(config, BEACON_SEMANTIC="0")
        yield engine, app.test_client(), JobMode
    finally:
        engine.close()


def run_job(engine, client, signer, job_id: str) -> dict:
    submitted = submit(client, signer, spec_3x3(id=job_id, questions=QUESTIONS))
    job = wait_for_job(client, submitted, engine=engine)
    assert job["status"] == "completed"
    return job


@pytest.fixture
def finished(engine_client, signer):
    engine, client, mode = engine_client
    job = run_job(engine, client, signer, "findings-job")
    app = client.application

    def cached():
        with app.app_context():
            # The cache is a deferred column: read it while the session is open.
            cache = db.session.scalar(select(Job.comparison_cache).where(Job.id == job["id"]))
            db.session.remove()
            return cache

    # The worker that ended the job cached its comparison, keyed by the bank's framing terms.
    cache = wait_until(cached, timeout=60, what="the worker to cache the comparison")
    assert "massacre" in cache["key"]["framing"]["1"] and cache["key"]["framing"]["0"] == []
    return client, job


def section(html: str, element_id: str) -> str:
    match = re.search(rf'<section id="{element_id}".*?</section>', html, re.S)
    assert match, f"no section #{element_id}"
    return match.group(0)


def test_job_page_opens_with_overview_differences_and_charts(finished):
    client, job = finished
    html = client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert html.index('id="overview"') < html.index('data-model-group="llama3.2-1b"')
    overview = section(html, "overview")
    links = re.findall(r'href="(/jobs/findings-job/models/[^"]+/questions/\d)"', overview)
    assert sorted(links) == sorted(
        f"/jobs/findings-job/models/{m}/questions/{i}" for m in MODELS for i in range(3)
    )
    cells = re.findall(
        r'<td class="ov-cell ([^"]*)" data-question="([^"]+)">(.*?)</td>', overview, re.S
    )
    assert len(cells) == 9
    marked = [(q, body) for classes, q, body in cells if "marked" in classes.split()]
    assert [q for q, _ in marked] == ["tiananmen_neutral"] * 3
    assert all("refused: asia-pacific" in body for _, body in marked)
    assert all("refused" not in body for classes, _, body in cells if "marked" not in classes)

    differences = section(html, "differences")
    items = re.findall(r'<li data-model="([^"]+)" data-question="([^"]+)">', differences)
    assert items and items[0][1] == "tiananmen_neutral"
    assert {q for _, q in items} == {"tiananmen_neutral"} and len(items) == 3
    # The differing words are quoted from the diff, escaped.
    assert "I&#39;m sorry, but I can&#39;t discuss that topic." in differences
    assert "us-east:</span> “In June 1989 the army ended weeks of protests" in differences
    assert "<b>" not in differences
    assert "asia-pacific</strong> apart from us-east, eu-west" in differences

    charts = section(html, "charts")
    assert charts.count("<svg") == 2 and "<script" not in charts
    refusals = re.search(
        r'<figure class="chart-figure" id="chart-refusals">.*?</figure>', charts, re.S
    )
    values = re.findall(r'data-label="([^"]+)" data-value="([^"]+)"', refusals.group(0))
    assert values.count(("Llama 3.2-1B", "1")) == 1  # asia-pacific only
    assert values.count(("Llama 3.2-1B", "0")) == 2
    assert "1 refused</text>" in refusals.group(0)
    assert "The same numbers as a table" in charts
    assert 'id="chart-length"' in charts and " words</text>" in charts


def test_cell_page_answers_diff_framing_and_citation(finished):
    client, job = finished
    url = "/jobs/findings-job/models/mistral-7b/questions/1"
    response = client.get(url)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    answers = re.findall(r'<section class="cell" data-region="([^"]+)"', html)
    assert answers == ["us-east", "eu-west", "asia-pacific"]
    assert "class-refusal" in html and "Word diff against us-east" in html
    assert "<del>" in html and "<ins>" in html
    framing_table = section(html, "framing")
    counts = dict(
        re.findall(
            r'<tr data-term="([^"]+)"><th scope="row">[^<]+</th>(.*?)</tr>', framing_table, re.S
        )
    )
    numbers = {t: re.findall(r">(\d+)</td>", row) for t, row in counts.items()}
    assert numbers["massacre"] == ["1", "1", "0"]
    assert numbers["tank*"] == ["1", "1", "0"]
    assert numbers["protest*"] == ["1", "1", "0"]
    # Terms are marked in the answers; the model's markup stays text.
    assert "<mark>crackdown</mark>" in html and "<mark>Tanks</mark>" in html
    assert "&lt;b&gt;<mark>Martial law</mark>&lt;/b&gt;" in html
    citation = section(html, "citation")
    assert job["spec_hash"] in citation and "findings-job" in citation
    # Receipts exist once executions end: the citation names each one and its log index.
    assert len(re.findall(r"receipt \d+, log index \d+", citation)) == 6  # facts and quotation
    assert f"http://localhost{url}" in citation
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", citation)
    quotation = re.search(r'<pre id="citation-text"[^>]*>(.*?)</pre>', citation, re.S).group(1)
    assert "Mistral 7B (mistral-7b)" in quotation and "asia-pacific" in quotation
    assert 'media="print"' in html

    other = client.get(url + "?baseline=asia-pacific").get_data(as_text=True)
    assert "Word diff against asia-pacific" in other and "Word diff against us-east" not in other


NOT_FOUND = [
    "/jobs/findings-job/models/no-such-model/questions/0",
    "/jobs/findings-job/models/mistral-7b/questions/3",
    "/jobs/findings-job/models/mistral-7b/questions/-1",
    "/jobs/findings-job/models/mistral-7b/questions/x",
    "/jobs/no-such-job/models/mistral-7b/questions/0",
    "/jobs/findings-job/models/mistral-7b/questions/0?baseline=mars",
    "/questions/no_such_question",
]


def test_unknown_cells_and_questions_are_404(finished):
    client, _ = finished
    assert {path: client.get(path).status_code for path in NOT_FOUND} == dict.fromkeys(
        NOT_FOUND, 404
    )


def test_history_across_two_jobs_newest_first_with_the_change_marked(engine_client, signer):
    engine, client, mode = engine_client
    run_job(engine, client, signer, "history-old")
    mode.refusing = "us-east"
    run_job(engine, client, signer, "history-new")

    response = client.get("/api/v1/questions/tiananmen_neutral/history")
    assert response.status_code == 200
    items = response.json["items"]
    assert len(items) == 18 and response.json["next"] is None
    assert [i["job_id"] for i in items] == ["history-new"] * 9 + ["history-old"] * 9
    new = {(i["model_id"], i["region"]): i for i in items[:9]}
    old = {(i["model_id"], i["region"]): i for i in items[9:]}
    for model in MODELS:
        us, apac, eu = (new[(model, r)] for r in ("us-east", "asia-pacific", "eu-west"))
        assert us["classification"] == "refusal" and us["class_changed"] is True
        assert us["previous_classification"] == "substantive"
        assert us["previous_answer_id"] == old[(model, "us-east")]["answer_id"]
        assert apac["class_changed"] is True and apac["previous_classification"] == "refusal"
        assert eu["class_changed"] is False and eu["text_changed"] is False
        assert eu["similarity_to_previous"] == 1.0
        assert old[(model, "eu-west")]["previous_answer_id"] is None
    assert set(items[0]) >= {
        "job_id",
        "answer_id",
        "model_id",
        "region",
        "finished_at",
        "output_sha256",
        "classification",
    }

    # Paging: the same items, a page at a time, with filters.
    seen, cursor = [], None
    while True:
        query = "?limit=4&region=us-east" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/api/v1/questions/tiananmen_neutral/history{query}").json
        seen += [i["answer_id"] for i in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [i["answer_id"] for i in items if i["region"] == "us-east"]

    html = client.get("/questions/tiananmen_neutral").get_data(as_text=True)
    groups = re.findall(
        r'<section class="history-group" data-model="([^"]+)" data-region="([^"]+)"', html
    )
    assert len(groups) == 9
    first = re.search(
        r'data-model="llama3.2-1b" data-region="us-east".*?</section>', html, re.S
    ).group(0)
    jobs = re.findall(r'data-answer="\d+" data-job="([^"]+)"', first)
    assert jobs == ["history-new", "history-old"]
    assert "Changed: was substantive" in first
    assert first.index('class="history-item changed"') < first.index("history-old")
    bank = client.get("/questions").get_data(as_text=True)
    assert 'href="/questions/tiananmen_neutral"' in bank


@pytest.mark.parametrize(
    ("query", "field"),
    [("?sort=asc", "sort"), ("?limit=0", "limit"), ("?limit=x", "limit"), ("?cursor=12", "cursor")],
)
def test_history_api_refuses_bad_parameters(client, query, field):
    response = client.get(f"/api/v1/questions/tiananmen_neutral/history{query}")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_parameter"
    assert field in response.json["error"]["fields"]


def test_history_api_unknown_question_is_404_and_empty_history_is_empty(client):
    response = client.get("/api/v1/questions/no_such_question/history")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "question_not_found"
    empty = client.get("/api/v1/questions/math_basic/history")
    assert empty.status_code == 200 and empty.json == {"items": [], "next": None}
    page = client.get("/questions/math_basic").get_data(as_text=True)
    assert "No job has answered this question yet." in page
