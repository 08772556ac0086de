"""The HTML pages: every page passes the HTML check, the form goes through intake, fragments
for htmx, the job page's groups and comparison, escaping of model output, CSRF, admin login."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import event, func, select

from portal.db import db
from portal.models import Answer, Execution, Job
from portal.web.pages import htmx
from tests.support.apps import THREE_REGIONS
from tests.support.html_check import assert_valid_page, problems
from tests.support.jobs import (
    FORM_3X3,
    MODELS,
    QUESTIONS,
    REGIONS,
    echo,
    finish,
    groups_of,
    page,
    submit_api,
    submit_form,
)

HX = {"HX-Request": "true"}
XSS = "<script>alert(1)</script>"


@pytest.fixture
def app(make_app):
    return make_app(BEACON_CONFIG=str(THREE_REGIONS))


# --- the HTML check itself ------------------------------------------------------------------


def test_html_check_finds_each_problem():
    bad = (
        "<html><body><h1>a</h1><h1>b</h1><p id=x></p><p id=x></p>"
        "<input name=q><select name=s></select><div></body></html>"
    )
    found = "\n".join(problems(bad))
    for expected in (
        "2 <h1>",
        "duplicate id 'x'",
        "name='q'> has no label",
        "name='s'> has no label",
        "no <!doctype html>",
        "<html> has no lang",
    ):
        assert expected in found
    good = (
        '<!doctype html><html lang="en"><body><h1>t</h1><label for="q">Q</label>'
        '<input id="q" name="q"><label>W <input name="w"></label>'
        '<input type="hidden" name="h"></body></html>'
    )
    assert problems(good) == []


# --- every page passes the check --------------------------------------------------------------


def test_every_page_passes_the_html_check(make_app, client, app, signer):
    job_id = submit_api(client, signer)
    ended_id = submit_form(client)
    finish(app, ended_id, echo)
    with app.app_context():
        execution_id = db.session.scalar(select(Execution.id).where(Execution.job_id == job_id))
    paths = [
        "/",
        "/?before=1000",
        "/jobs/new",
        "/questions",
        "/docs/api",
        f"/jobs/{job_id}",
        f"/jobs/{ended_id}",
        f"/jobs/{ended_id}?differs=1",
        f"/jobs/{ended_id}?baseline=eu-west",
        f"/executions/{execution_id}",
    ]
    for path in paths:
        assert_valid_page(page(client, path))
    assert_valid_page(page(client, "/jobs/nope", 404))
    assert_valid_page(page(client, "/executions/99999", 404))
    assert_valid_page(page(client, "/no/such/page", 404))
    invalid = client.post("/jobs/new", data={"models": MODELS})
    assert invalid.status_code == 422
    assert_valid_page(invalid.get_data(as_text=True))
    # Fragments are checked too: unique ids, labelled controls, balanced tags.
    assert_valid_page(page(client, f"/jobs/{job_id}", headers=HX), fragment=True)
    assert_valid_page(page(client, f"/jobs/{job_id}/row", headers=HX), fragment=True)

    guarded = make_app(BEACON_CONFIG=str(THREE_REGIONS), BEACON_ADMIN_TOKEN="s3cret")
    assert_valid_page(page(guarded.test_client(), "/login?next=/jobs/new"))


def test_error_pages_422_and_500_share_the_layout(app):
    from portal.web.errors import render_error

    @app.get("/boom")
    def boom():
        raise RuntimeError("a bug")

    response = app.test_client().get("/boom")
    html = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something failed on the server" in html and "a bug" not in html
    assert_valid_page(html)
    with app.test_request_context("/jobs/x"):
        body, status = render_error(422, "the spec named no question")
    assert status == 422 and "the spec named no question" in body
    assert_valid_page(body)


# --- layout, htmx and the library ------------------------------------------------------------


def test_layout_has_navigation_version_and_csrf_headers(client, app):
    html = page(client, "/")
    for link in (
        'href="/"',
        'href="/jobs/new"',
        'href="/questions"',
        'href="/docs/api"',
        'href="/api/v1/openapi.json"',
    ):
        assert link in html
    assert f"Beacon {app.config['BEACON_VERSION']}" in html
    assert 'hx-headers="{&#34;X-CSRFToken&#34;: &#34;' in html
    assert "beacon.css" in html and "unpkg" not in html and "cdn" not in html.lower()


def test_htmx_is_served_from_the_package_with_a_long_cache(client):
    html = page(client, "/")
    src = re.search(r'<script src="([^"]+)"', html).group(1)
    assert src.startswith("/static-lib/htmx.min.js?v=")
    with client.get(src) as response:
        assert response.status_code == 200
        assert response.mimetype == "text/javascript"
        assert response.cache_control.max_age == htmx.ONE_YEAR_S
        body = response.get_data(as_text=True)
    assert body.startswith("var htmx") and 'version:"2.' in body
    assert htmx.library_path().read_text("utf-8") == body


def test_htmx_requests_get_fragments_and_responses_vary(client, signer):
    job_id = submit_api(client, signer)
    full = client.get(f"/jobs/{job_id}")
    fragment = client.get(f"/jobs/{job_id}", headers=HX)
    for response in (full, fragment):
        assert "HX-Request" in response.headers["Vary"]
    assert "<html" in full.get_data(as_text=True)
    text = fragment.get_data(as_text=True)
    assert "<html" not in text and text.lstrip().startswith('<section id="job-live"')
    # The fragment is exactly what the full page includes.
    assert text.strip() in full.get_data(as_text=True)
    for header in ("HX-Boosted", "HX-History-Restore-Request"):
        whole = client.get(f"/jobs/{job_id}", headers={**HX, header: "true"})
        assert "<html" in whole.get_data(as_text=True)
    missing = client.get("/jobs/none", headers=HX)
    assert missing.status_code == 404 and "<html" not in missing.get_data(as_text=True)
    assert "Not found" in missing.get_data(as_text=True)


# --- the job list ------------------------------------------------------------------------------


def test_job_list_newest_first_with_progress_and_row_polling(client, app, signer):
    first = submit_api(client, signer)
    second = submit_form(client)
    finish(app, first, echo)
    html = page(client, "/")
    assert html.index(second) < html.index(first)
    rows = re.findall(r"<tr data-job=\"([^\"]+)\".*?</tr>", html, re.S)
    assert rows == [second, first]
    assert "3 × 3" in html
    assert "0 of 27" in html and "27 of 27" in html
    running_row = re.search(rf'<tr data-job="{second}"[^>]*>', html).group(0)
    ended_row = re.search(rf'<tr data-job="{first}"[^>]*>', html).group(0)
    assert 'hx-trigger="every 2s"' in running_row and f"/jobs/{second}/row" in running_row
    assert "hx-trigger" not in ended_row
    assert client.get(f"/jobs/{second}/row", headers=HX).status_code == 200
    ended = client.get(f"/jobs/{first}/row", headers=HX)
    assert ended.status_code == 286 and "completed" in ended.get_data(as_text=True)
    plain = client.get(f"/jobs/{first}/row")
    assert plain.status_code == 303 and plain.headers["Location"] == f"/jobs/{first}"


def test_job_list_pages_by_cursor(client):
    for index in range(23):
        submit_form(client, {**FORM_3X3, "models": [MODELS[index % 3]], "regions": ["us-east"]})
    first = page(client, "/")
    assert first.count("<tr data-job=") == 20
    older = re.search(r'href="(/\?before=\d+)"', first).group(1)
    second = page(client, older)
    assert second.count("<tr data-job=") == 3
    assert not set(re.findall(r'data-job="([^"]+)"', first)) & set(
        re.findall(r'data-job="([^"]+)"', second)
    )
    assert "Older jobs" not in second and "Newest jobs" in second


# --- the form ----------------------------------------------------------------------------------


def test_form_defaults_to_every_model_and_region(client):
    html = page(client, "/jobs/new")
    for value in MODELS + REGIONS:
        assert re.search(
            rf'<input checked id="\w+-\d" name="\w+" type="checkbox" value="{value}"', html
        ), value
    for question in QUESTIONS:
        assert f'value="{question}"' in html
    assert "<legend>Control</legend>" in html and "<legend>Bias detection</legend>" in html


def test_form_submission_signs_with_the_portal_key_and_uses_intake(client, app):
    response = client.post("/jobs/new", data={**FORM_3X3, "runs": "2"})
    assert response.status_code == 303
    job_id = response.headers["Location"].rsplit("/", 1)[-1]
    with app.app_context():
        from portal import settings

        job = db.session.scalar(select(Job).where(Job.id == job_id))
        spec = json.loads(job.spec_raw)
        assert job.source == "form"
        assert job.public_key == settings.current().portal_public_key
        assert job.signature_scheme == "beacon-jcs-v1"
        assert job.models == MODELS and job.regions == REGIONS and job.runs == 2
        assert [q["id"] for q in job.questions] == QUESTIONS
        assert len(job.executions) == 9
        assert len(spec["metadata"]["nonce"]) == 32 and spec["metadata"]["timestamp"].endswith("Z")
    second = submit_form(client)
    with app.app_context():
        spec2 = json.loads(db.session.scalar(select(Job.spec_raw).where(Job.id == second)))
    assert spec2["metadata"]["nonce"] != spec["metadata"]["nonce"]


def test_form_with_htmx_answers_with_hx_redirect(client):
    response = client.post("/jobs/new", data=FORM_3X3, headers=HX)
    assert response.status_code == 200
    assert response.headers["HX-Redirect"].startswith("/jobs/job-")


def test_typed_prompt_is_sent_as_text(client, app):
    job_id = submit_form(
        client,
        {
            "prompt": "What is the capital of Australia?",
            "models": ["mistral-7b"],
            "regions": ["eu-west"],
        },
    )
    with app.app_context():
        job = db.session.scalar(select(Job).where(Job.id == job_id))
        [question] = job.questions
        assert (question["index"], question["id"], question["prompt"]) == (
            0,
            None,
            "What is the capital of Australia?",
        )
        # A typed prompt is asked as written: its language is undetermined.
        assert [a["language"] for a in question["languages"]] == ["und"]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"models": MODELS, "regions": REGIONS}, "prompt", "Pick a question"),
        ({**FORM_3X3, "models": []}, "models", "at least one model"),
        ({**FORM_3X3, "regions": []}, "regions", "at least one region"),
        ({**FORM_3X3, "models": ["gpt-9"]}, "models", "not a valid choice"),
        ({**FORM_3X3, "runs": "11"}, "runs", "between 1 and 10"),
        ({**FORM_3X3, "runs": "many"}, "runs", "Not a valid integer"),
        ({**FORM_3X3, "questions": [], "prompt": "Hello"}, "prompt", "at least two words"),
    ],
)
def test_invalid_form_is_422_with_the_message_by_its_field(client, app, data, field, message):
    response = client.post("/jobs/new", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    errors = re.search(rf'<ul class="field-errors" id="{field}-error">(.*?)</ul>', html, re.S)
    assert errors and message in errors.group(1), html
    assert "The job was not submitted" in html
    with app.app_context():
        assert db.session.scalar(select(func.count(Job.pk))) == 0
    fragment = client.post("/jobs/new", data=data, headers=HX)
    assert fragment.status_code == 422
    assert fragment.get_data(as_text=True).lstrip().startswith('<form id="job-form"')


def test_overlong_prompt_is_refused_by_its_field(client):
    response = client.post("/jobs/new", data={**FORM_3X3, "prompt": "word " * 1700})
    assert response.status_code == 422
    assert re.search(
        r'id="prompt-error">.*?At most 8000 characters', response.get_data(as_text=True), re.S
    )


def test_csrf_is_required_by_field_or_header(make_app):
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS), WTF_CSRF_ENABLED=True)
    client = app.test_client()
    assert client.post("/jobs/new", data=FORM_3X3).status_code == 400
    html = page(client, "/jobs/new")
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    header_token = json.loads(
        re.search(r'hx-headers="([^"]+)"', html).group(1).replace("&#34;", '"')
    )["X-CSRFToken"]
    assert client.post("/jobs/new", data={**FORM_3X3, "csrf_token": token}).status_code == 303
    by_header = client.post("/jobs/new", data=FORM_3X3, headers={**HX, "X-CSRFToken": header_token})
    assert by_header.status_code == 200 and "HX-Redirect" in by_header.headers
    with app.app_context():
        assert db.session.scalar(select(func.count(Job.pk))) == 2


def test_api_submission_needs_no_csrf_token(make_app, signer):
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS), WTF_CSRF_ENABLED=True)
    assert submit_api(app.test_client(), signer)


# --- admin token ---------------------------------------------------------------------------


def test_admin_token_is_asked_once_per_session(make_app):
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS), BEACON_ADMIN_TOKEN="s3cret")
    client = app.test_client()
    response = client.get("/jobs/new")
    assert response.status_code == 303 and response.headers["Location"].startswith("/login?next=")
    assert client.post("/jobs/new", data=FORM_3X3).status_code == 303
    with app.app_context():
        assert db.session.scalar(select(func.count(Job.pk))) == 0
    wrong = client.post("/login?next=/jobs/new", data={"token": "guess"})
    assert wrong.status_code == 422 and "not the admin token" in wrong.get_data(as_text=True)
    right = client.post("/login?next=/jobs/new", data={"token": "s3cret"})
    assert right.status_code == 303 and right.headers["Location"] == "/jobs/new"
    assert client.get("/jobs/new").status_code == 200
    assert submit_form(client)
    outside = client.post("/login?next=https://evil.example/", data={"token": "s3cret"})
    assert outside.headers["Location"] == "/"
    client.post("/logout")
    assert client.get("/jobs/new").status_code == 303


def test_cancel_and_retry_buttons_need_the_admin_session(make_app):
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS), BEACON_ADMIN_TOKEN="s3cret")
    client = app.test_client()
    client.post("/login", data={"token": "s3cret"})
    job_id = submit_form(client)
    assert "Cancel job" in page(client, f"/jobs/{job_id}")
    anonymous = app.test_client()
    assert "Cancel job" not in page(anonymous, f"/jobs/{job_id}")
    refused = anonymous.post(f"/jobs/{job_id}/cancel")
    assert refused.status_code == 303 and "/login" in refused.headers["Location"]

    cancelled = client.post(f"/jobs/{job_id}/cancel")
    assert cancelled.status_code == 303
    with app.app_context():
        job = db.session.scalar(select(Job).where(Job.id == job_id))
        assert job.status == "cancelled"
        assert {a.status for e in job.executions for a in e.answers} == {"cancelled"}
    html = page(client, f"/jobs/{job_id}")
    assert "Cancel job" not in html and "cancelled" in html


def test_retry_requeues_failed_answers(make_app):
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS), BEACON_ADMIN_TOKEN="s3cret")
    client = app.test_client()
    client.post("/login", data={"token": "s3cret"})
    job_id = submit_form(client, {**FORM_3X3, "regions": ["us-east", "eu-west"]})

    def flaky(model, region, question):
        return RuntimeError("the provider answered 500") if region == "eu-west" else "fine"

    finish(app, job_id, flaky, status="partial")
    html = page(client, f"/jobs/{job_id}")
    assert "Retry failed answers" in html and "the provider answered 500" in html
    assert client.post(f"/jobs/{job_id}/retry").status_code == 303
    with app.app_context():
        job = db.session.scalar(select(Job).where(Job.id == job_id))
        assert job.status == "queued"
        statuses = [a.status for e in job.executions if e.region == "eu-west" for a in e.answers]
        assert set(statuses) == {"queued"}


# --- the job page --------------------------------------------------------------------------


def test_job_page_groups_models_in_spec_order_with_their_regions(client, signer):
    order = ["qwen2.5-1.5b", "llama3.2-1b", "mistral-7b"]
    job_id = submit_api(client, signer, metadata={"models": order})
    html = page(client, f"/jobs/{job_id}")
    assert groups_of(html) == [(model, REGIONS) for model in order]
    assert "🦙 Llama 3.2-1B" in re.sub(r"<[^>]+>", "", html).replace("  ", " ")
    heading = re.search(r'<h2 id="model-llama3.2-1b">(.*?)</h2>', html, re.S).group(1)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", heading)).strip()
    assert text == "🦙 Llama 3.2-1B (us-east, eu-west, asia-pacific)"
    for needle in (
        "🌟",
        "Mistral 7B",
        "🔮",
        "Qwen 2.5-1.5B",
        "beacon-jcs-v1",
        "test",
        f'href="/api/v1/jobs/{job_id}"',
    ):
        assert needle in html


def test_job_page_header_and_live_polling_until_the_end(client, app, signer):
    job_id = submit_api(client, signer)
    with app.app_context():
        job = db.session.scalar(select(Job).where(Job.id == job_id))
        spec_hash = job.spec_hash
    html = page(client, f"/jobs/{job_id}")
    assert spec_hash in html and 'data-done="0" data-total="27"' in html
    live = re.search(r'<section id="job-live"[^>]*>', html).group(0)
    assert 'hx-trigger="every 2s"' in live and f'hx-get="/jobs/{job_id}"' in live
    assert f'href="/jobs/{job_id}"' in html  # the reload link for browsers without JavaScript
    assert client.get(f"/jobs/{job_id}", headers=HX).status_code == 200

    finish(app, job_id, echo)
    ended = client.get(f"/jobs/{job_id}", headers=HX)
    assert ended.status_code == 286
    text = ended.get_data(as_text=True)
    assert "hx-trigger" not in text and 'data-done="27" data-total="27"' in text
    assert client.get(f"/jobs/{job_id}").status_code == 200


def test_live_poll_keeps_the_filter(client, signer):
    job_id = submit_api(client, signer)
    html = page(client, f"/jobs/{job_id}?differs=1&baseline=eu-west")
    live = re.search(r'<section id="job-live"[^>]*>', html).group(0)
    assert "differs=1" in live and "baseline=eu-west" in live


def test_model_output_is_escaped_everywhere(client, app, signer):
    job_id = submit_api(client, signer)
    finish(app, job_id, lambda m, r, q: XSS if r == "eu-west" else "A plain answer here.")
    with app.app_context():
        execution_id = db.session.scalar(
            select(Execution.id).where(Execution.job_id == job_id, Execution.region == "eu-west")
        )
    for path in (f"/jobs/{job_id}", f"/executions/{execution_id}"):
        html = page(client, path)
        assert XSS not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_long_output_is_folded_in_details(client, app, signer):
    job_id = submit_api(client, signer)
    long_text = "A long answer. " * 200
    finish(app, job_id, lambda m, r, q: long_text)
    html = page(client, f"/jobs/{job_id}")
    assert f"Show all ({len(long_text)} characters)" in html
    assert re.search(r"<details class=\"fold\">\s*<summary>", html)


def test_comparison_heat_map_refusals_and_word_diff(client, app, signer):
    job_id = submit_api(client, signer)

    def respond(model, region, question):
        if question == "tiananmen_neutral" and region == "asia-pacific":
            return "I'm sorry, but I can't discuss that topic."
        if question == "geography_basic":
            return {
                "us-east": "Paris is the capital of France.",
                "eu-west": "Paris is the capital city of France.",
                "asia-pacific": "The capital of France is Paris.",
            }[region]
        return "I am a helpful assistant that answers questions."

    finish(app, job_id, respond)
    html = page(client, f"/jobs/{job_id}")
    assert html.count('<table class="heatmap">') == 9
    assert "<caption>Similarity between regions" in html
    assert '<th scope="row">us-east</th>' in html
    assert re.search(r'<span class="class class-refusal">asia-pacific</span>', html)
    assert "<ins>" in html and "<del>" in html
    assert "Word diff against us-east" in html
    against_eu = page(client, f"/jobs/{job_id}?baseline=eu-west")
    assert "Word diff against eu-west" in against_eu


def test_differs_filter_shows_only_questions_whose_regions_differ(client, app, signer):
    job_id = submit_api(client, signer)

    def respond(model, region, question):
        if question == "tiananmen_neutral" and region == "asia-pacific":
            return "I'm sorry, but I can't discuss that topic."
        return f"The same long substantive answer about {question} for everyone."

    finish(app, job_id, respond)
    every = page(client, f"/jobs/{job_id}")
    only = page(client, f"/jobs/{job_id}?differs=1")
    assert every.count('<article class="question') == 9
    assert only.count('<article class="question') == 3
    assert "<code>identity_basic</code>" not in only and "tiananmen_neutral" in only
    assert len(groups_of(only)) == 3
    assert 'id="differs" name="differs" value="1" checked' in only


def test_unknown_baseline_is_404(client, signer):
    job_id = submit_api(client, signer)
    assert client.get(f"/jobs/{job_id}?baseline=mars").status_code == 404


def test_all_local_regions_are_said_to_be_this_machine(make_app):
    client = make_app().test_client()
    assert "These regions are this machine" in page(client, "/jobs/new")
    job_id = submit_form(
        client,
        {
            "questions": ["identity_basic"],
            "models": ["smollm2-135m"],
            "regions": ["us-east", "eu-west"],
        },
    )
    assert "These regions are this machine" in page(client, f"/jobs/{job_id}")
    remote = make_app(BEACON_CONFIG=str(THREE_REGIONS)).test_client()
    assert "These regions are this machine" not in page(remote, "/jobs/new")
    job_id = submit_form(remote)
    assert "These regions are this machine" not in page(remote, f"/jobs/{job_id}")


def test_execution_page_shows_answers_and_timings(client, app, signer):
    job_id = submit_api(client, signer)
    finish(app, job_id, echo)
    with app.app_context():
        execution = db.session.scalar(
            select(Execution).where(Execution.job_id == job_id, Execution.region == "eu-west")
        )
        execution_id, model = execution.id, execution.model_name
    html = page(client, f"/executions/{execution_id}")
    assert f"{model} in EU West" in html
    assert html.count('<article class="answer-full">') == 3
    assert "300 ms" in html and f'href="/jobs/{job_id}"' in html


def test_finished_job_page_uses_few_queries(client, app, signer):
    job_id = submit_api(client, signer)
    finish(app, job_id, echo)
    page(client, f"/jobs/{job_id}")  # computes and caches the comparison
    statements = []
    with app.app_context():
        engine = db.engine

        def count(*args):
            statements.append(args[2])

        event.listen(engine, "before_cursor_execute", count)
        try:
            page(client, f"/jobs/{job_id}")
        finally:
            event.remove(engine, "before_cursor_execute", count)
    # A constant number, whatever the job's size: the job, its executions, answers and their
    # judgements, the counts, the cached comparison, the judge's summary, the log's head and
    # the job's changes since earlier runs (docs/watching.md).
    assert len(statements) <= 9, statements


def test_answer_rows_exist_for_every_cell(client, app, signer):
    job_id = submit_api(client, signer)
    with app.app_context():
        total = db.session.scalar(
            select(func.count(Answer.id)).join(Execution).where(Execution.job_id == job_id)
        )
    html = page(client, f"/jobs/{job_id}")
    assert total == 27 and html.count('<div class="answer">') == 27
