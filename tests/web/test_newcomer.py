"""A newcomer's first fifteen minutes (issue 9), in process: the generated SECRET_KEY is kept,
an oversized chunked body is 413, unknown query parameters are refused and region filters take
aliases, /jobs lists jobs, the form starts useful, agreeing questions fold, the execution page,
and the commands and documents a newcomer follows say the same thing."""

from __future__ import annotations

import io
import json
import re
import subprocess
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from portal import create_app, instance
from portal.config import ConfigError
from portal.db import db
from portal.models import Execution
from portal.settings import ENV_NAMES
from portal.web import params
from tests.support.apps import ROOT, THREE_REGIONS, spec_3x3
from tests.support.jobs import finish, page, submit_api, submit_form

LIMIT = 1024 * 1024  # max_body_bytes of both configurations


# --- SECRET_KEY -----------------------------------------------------------------------------------


def app_without_secret_key(folder: Path, database_url: str, **overrides):
    """Builds an app as a bare environment would: no SECRET_KEY anywhere."""
    config = {name: "" for name in ENV_NAMES if name != "SECRET_KEY"}
    config.update(TESTING=True, INSTANCE_PATH=str(folder), DATABASE_URL=database_url)
    return create_app({**config, **overrides})


def test_generated_secret_key_is_kept_in_the_instance_folder(tmp_path, database_url, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    folder = tmp_path / "instance"
    first = app_without_secret_key(folder, database_url)
    second = app_without_secret_key(folder, database_url)
    path = folder / instance.SECRET_KEY_FILE
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"] == path.read_text()
    assert len(first.config["SECRET_KEY"]) == 64
    assert path.stat().st_mode & 0o777 == 0o600
    elsewhere = app_without_secret_key(tmp_path / "other", database_url)
    assert elsewhere.config["SECRET_KEY"] != first.config["SECRET_KEY"]
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        app_without_secret_key(tmp_path / "prod", database_url, BEACON_ENV="production")
    assert not (tmp_path / "prod" / instance.SECRET_KEY_FILE).exists()


def test_racing_processes_all_read_the_one_secret_written(tmp_path):
    path = tmp_path / "instance" / "secret"
    made, seen = iter(range(1000)), []
    barrier = threading.Barrier(8)

    def race():
        barrier.wait(timeout=10)
        seen.append(instance.read_or_create(path, lambda: f"value-{next(made)}"))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(seen) == 8 and len(set(seen)) == 1 and seen[0] == path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["secret"]  # no temporary file left


# --- oversized chunked bodies ---------------------------------------------------------------------


def post_chunked(client, body: bytes):
    """Posts `body` as a server that de-chunks it hands it to the app: no Content-Length."""
    return client.post(
        "/api/v1/jobs",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_oversized_chunked_body_is_413_not_invalid_json(client3):
    body = b'{"version": "v1", "questions": ["' + b"a" * (2_600_000) + b'"]}'
    response = post_chunked(client3, body)
    assert response.status_code == 413, response.json
    assert response.json["error"]["code"] == "too_large"
    exactly_over = post_chunked(client3, b" " * LIMIT + b"{}")
    assert exactly_over.status_code == 413


def test_chunked_body_under_the_limit_is_read_whole(client3, signer):
    body = signer.body(spec_3x3())
    padded = body[:-1] + b" " * (LIMIT - len(body)) + body[-1:]  # exactly the limit
    response = post_chunked(client3, padded)
    assert response.status_code == 202, response.json


# --- query parameters -----------------------------------------------------------------------------


def endpoint_paths(app, job_id: str) -> dict[str, str]:
    """Returns a path to every endpoint that checks its query, built from its own URL rule."""
    from flask import url_for

    sample = {"job_id": job_id, "model_id": "mistral-7b", "index": 0}
    sample["question_id"] = "identity_basic"
    rules = {rule.endpoint: rule for rule in app.url_map.iter_rules()}
    with app.test_request_context():
        return {
            endpoint: url_for(
                endpoint, **{name: sample[name] for name in rules[endpoint].arguments}
            )
            for endpoint in params.ACCEPTED
        }


def test_every_list_endpoint_is_checked(app3):
    listing = {
        rule.endpoint
        for rule in app3.url_map.iter_rules()
        if "GET" in rule.methods and rule.endpoint.split(".")[-1].startswith("list_")
    }
    assert listing <= set(params.ACCEPTED), listing - set(params.ACCEPTED)


def test_unknown_query_parameter_is_refused_on_every_list_endpoint(client3, app3, signer):
    job_id = submit_api(client3, signer)
    finish(app3, job_id, lambda m, r, q: f"{r} says {q}")
    paths = endpoint_paths(app3, job_id)
    assert {"api.list_executions", "pages.list_jobs", "pages.job_detail"} <= set(paths)
    # The proofs need their index and sizes: bare, they are refused (400), not listed.
    needs_arguments = {"api.get_inclusion_proof", "api.get_consistency_proof"}
    for endpoint, path in paths.items():
        accepted = params.ACCEPTED[endpoint]
        if endpoint not in needs_arguments:
            assert client3.get(path).status_code == 200, path
        response = client3.get(f"{path}?colour=blue")
        assert response.status_code == 400, path
        if path.startswith("/api/"):
            error = response.json["error"]
            assert error["code"] == "invalid_parameter"
            assert error["fields"] == {"colour": "unknown parameter"}
            assert "'colour'" in error["message"]
        else:
            assert "unknown query parameter &#39;colour&#39;" in response.get_data(as_text=True)
        if accepted and endpoint not in needs_arguments:
            assert client3.get(f"{path}?{accepted[0]}=").status_code in (200, 400), path


def test_misspelt_filter_is_named_with_the_right_one(client3, signer):
    job_id = submit_api(client3, signer)
    response = client3.get(f"/api/v1/executions?job={job_id}")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_parameter"
    assert response.json["error"]["fields"] == {"job": "unknown parameter"}
    assert "did you mean 'job_id'" in response.json["error"]["message"]
    page_response = client3.get(f"/jobs/{job_id}?diff=1")
    assert page_response.status_code == 400
    assert "did you mean &#39;differs&#39;" in page_response.get_data(as_text=True)
    assert client3.get("/?page=2").status_code == 400


def test_region_filters_resolve_aliases(client3, app3, signer):
    job_id = submit_api(client3, signer)
    by_id = client3.get(f"/api/v1/executions?job_id={job_id}&region=eu-west").json["items"]
    assert len(by_id) == 3 and {e["region"] for e in by_id} == {"eu-west"}
    for alias in ("EU", "eu", "Europe"):
        items = client3.get(f"/api/v1/executions?job_id={job_id}&region={alias}").json["items"]
        assert items == by_id, alias
    assert client3.get("/api/v1/executions?region=mars").json["items"] == []
    finish(app3, job_id, lambda m, r, q: f"{r} answers {q} in its own words")
    comparison = client3.get(f"/api/v1/jobs/{job_id}/comparison?baseline=EU").json["comparison"]
    assert comparison["baseline"] == "eu-west"
    assert "Word diff against eu-west" in page(client3, f"/jobs/{job_id}?baseline=EU")


# --- /jobs, the form ------------------------------------------------------------------------------


def test_jobs_is_the_job_list(client3, signer):
    job_id = submit_api(client3, signer)
    html = page(client3, "/jobs")
    assert f'data-job="{job_id}"' in html and "<h1>Jobs</h1>" in html
    assert page(client3, "/jobs", headers={"HX-Request": "true"}).startswith('<div id="job-table">')


def test_untouched_form_submits_the_control_questions(make_app):
    client = make_app().test_client()
    html = page(client, "/jobs/new")

    def checked(name: str) -> list[str]:
        found = rf'<input checked id="{name}-\d+" name="{name}" type="checkbox" value="([^"]+)"'
        return re.findall(found, html)

    assert checked("questions") == ["identity_basic", "math_basic", "geography_basic"]
    assert "Pick at least one question or type a prompt" in html
    data = {name: checked(name) for name in ("questions", "models", "regions")}
    job_id = submit_form(client, data)
    job = client.get(f"/api/v1/jobs/{job_id}").json["job"]
    assert [q["id"] for q in job["questions"]] == data["questions"]
    assert len(job["executions"]) == 3


def test_this_machine_is_said_once_and_categories_read_alike(make_app):
    client = make_app().test_client()
    form = page(client, "/jobs/new")
    for name in ("US East", "EU West", "Asia-Pacific"):
        assert form.count(f"{name} (this machine)") == 1
    assert form.count("(this machine)") == 3
    bank = page(client, "/questions")
    for shown in ("Control", "Bias detection", "Cultural perspective"):
        assert f"<legend>{shown}</legend>" in form
        assert re.search(rf"<h2 id=\"category-\d\">{shown}</h2>", bank)
    job_id = submit_form(
        client,
        {"questions": ["identity_basic"], "models": ["smollm2-135m"], "regions": ["eu-west"]},
    )
    with client.application.app_context():
        execution_id = db.session.scalar(select(Execution.id).where(Execution.job_id == job_id))
    assert page(client, f"/executions/{execution_id}").count("this machine)") == 1


# --- the job page folds agreeing questions --------------------------------------------------------


def agreeing_but_tiananmen(model, region, question):
    if question == "tiananmen_neutral":
        if region == "asia-pacific":
            return "I'm sorry, but I can't discuss that topic."
        return f"In June 1989 the army cleared the square; {region} tells it its own way."
    return f"The same long substantive answer about {question} from {model} for everyone."


def test_agreeing_questions_fold_to_one_line_and_differences_open(client3, app3, signer):
    job_id = submit_api(client3, signer)
    finish(app3, job_id, agreeing_but_tiananmen)
    html = page(client3, f"/jobs/{job_id}")
    # 3 models x 2 agreeing questions fold; the third question differs in every model.
    assert html.count('<article class="question agrees">') == 6
    assert html.count("= all 3 regions agree, similarity 1.00</span>") == 6
    assert html.count('<details class="agree-box">') == 6
    assert html.count('<article class="question differs">') == 3
    # The word diff is open where regions differ: eu-west and asia-pacific against us-east.
    assert html.count('<details class="diff-box" open>') == 6
    # Folded questions keep their answers, heat map and all, one click away.
    assert html.count('<div class="answer">') == 27
    assert html.count('<table class="heatmap">') == 9
    assert "this machine's load" not in html  # remote regions: latency is the network's too


def test_local_job_page_says_latency_is_this_machines_load(make_app):
    client = make_app().test_client()
    job_id = submit_form(
        client,
        {"questions": ["identity_basic"], "models": ["smollm2-135m"], "regions": ["us-east"]},
    )
    html = page(client, f"/jobs/{job_id}")
    assert "Latency differences here are this machine's load" in html and "not geography" in html


# --- the execution page ---------------------------------------------------------------------------


def test_execution_page_is_a_grid_with_links_to_the_other_regions(client3, app3, signer):
    job_id = submit_api(client3, signer)
    finish(app3, job_id, agreeing_but_tiananmen)
    with app3.app_context():
        executions = db.session.scalars(
            select(Execution).where(Execution.job_id == job_id, Execution.model_id == "mistral-7b")
        ).all()
        ids = {e.region: e.id for e in executions}
        configured = executions[0].provider_model
        # eu-west's provider reports its own name for the model on every answer; us-east's
        # answers report two different names.
        for execution in executions:
            for index, answer in enumerate(execution.answers):
                if execution.region == "eu-west":
                    answer.provider_model = "mistral-7b-instruct.Q4.gguf"
                elif execution.region == "us-east":
                    answer.provider_model = f"mistral-build-{index % 2}"
        db.session.commit()
    html = page(client3, f"/executions/{ids['eu-west']}")
    nav = re.search(r'<nav class="sibling-regions".*?</nav>', html, re.S).group(0)
    assert f'href="/executions/{ids["us-east"]}"' in nav
    assert f'href="/executions/{ids["asia-pacific"]}"' in nav
    assert f'href="/executions/{ids["eu-west"]}"' not in nav and 'aria-current="page"' in nav
    assert html.count('<article class="answer-full">') == 3
    assert html.count('<dl class="answer-grid">') == 3
    # One name for the model: the provider's own when all answers agree on it.
    assert "sent as" not in html and "Provider model" not in html
    assert html.count("mistral-7b-instruct.Q4.gguf") == 1 and configured not in html
    mixed = page(client3, f"/executions/{ids['us-east']}")
    assert f"served as <code>{configured}</code>" in mixed
    assert mixed.count("mistral-build-0") == 2 and mixed.count("mistral-build-1") == 1


# --- commands and documents -----------------------------------------------------------------------


def test_verify_says_whose_trust_list_it_checked(make_app, tmp_path, signer):
    signed = tmp_path / "signed.json"
    signed.write_bytes(signer.body(spec_3x3()))
    trusting = make_app(BEACON_CONFIG=str(THREE_REGIONS)).test_cli_runner()
    result = trusting.invoke(args=["beacon", "verify", str(signed)])
    assert result.exit_code == 0, result.output
    assert "trust list checked: this shell's BEACON_TRUSTED_KEYS (test (" in result.output
    assert "portal_signing_key" in result.output and "is trusted here (kid test)" in result.output
    other = make_app(BEACON_TRUSTED_KEYS="").test_cli_runner()
    refused = other.invoke(args=["beacon", "verify", str(signed)])
    assert refused.exit_code == 3
    assert "this shell's BEACON_TRUSTED_KEYS (empty)" in refused.output
    assert "give both shells the same value" in refused.output


def test_sign_warns_on_stderr_when_it_uses_the_portal_key(make_app, monkeypatch):
    monkeypatch.delenv("BEACON_USER_KEY", raising=False)
    app = make_app()
    spec = ROOT / "scripts" / "3-model-verification-job.json"
    result = app.test_cli_runner().invoke(args=["beacon", "sign", str(spec)])
    assert result.exit_code == 0
    assert "signing with this portal's own key" in result.stderr
    assert json.loads(result.stdout)["public_key"] == app.extensions["beacon"].portal_public_key


def test_untrusted_key_message_says_how_to_trust_it(make_app):
    from tests.support.apps import Signer

    stranger = Signer()
    response = (
        make_app(BEACON_CONFIG=str(THREE_REGIONS))
        .test_client()
        .post("/api/v1/jobs", data=stranger.body(spec_3x3()), content_type="application/json")
    )
    assert response.status_code == 403
    message = response.json["error"]["message"]
    assert f'"public_key": "{stranger.public_key}"' in message
    assert "BEACON_TRUSTED_KEYS" in message and "restart" in message


def test_readme_and_api_docs_agree_with_each_other():
    readme = (ROOT / "README.md").read_text("utf-8")
    assert set(re.findall(r"--app (\w+)", readme)) == {"wsgi"}
    walkthrough = readme.split("## Sign and submit a job", 1)[1].split("\n## ", 1)[0]
    shells = re.findall(r"```sh\n(.*?)```", walkthrough, re.S)
    assert len(shells) == 2 and all("source beacon-keys.sh" in shell for shell in shells)
    assert "--data-binary @signed.json" in shells[1] and "--data " not in walkthrough
    assert re.search(r"first `serve.sh`.*about 6 minutes\s+on 2 cores", readme, re.S)
    api = (ROOT / "docs" / "api.md").read_text("utf-8")
    assert "`GET /api/v1/jobs/<id>/comparison" in api and "/comparison.csv" in api
    assert "--data-binary" in api
    for name in ("job-collapsed-desktop.png", "execution-desktop.png"):
        assert f"docs/screenshots/{name}" in readme
        assert (ROOT / "docs" / "screenshots" / name).stat().st_size > 10_000


def test_api_page_uses_data_binary(client3):
    html = page(client3, "/docs/api")
    assert "--data-binary @signed-job.json" in html and "--data @" not in html


def test_install_shows_one_line_per_build_step(tmp_path):
    ninja = (
        "  Running command Building wheel for llama-cpp-python (pyproject.toml)\n"
        "  [1/3] /usr/bin/cc -O3 -o ggml.c.o -c /tmp/pip/vendor/llama.cpp/ggml/src/ggml.c\n"
        "  -- noise\n"
        "  [2/3] /usr/bin/g++ -O3 -c /tmp/pip/vendor/llama.cpp/src/llama-model.cpp -o x.o\n"
        "  [3/3] : && /usr/bin/g++ -shared -o bin/libllama.so x.o && :\n"
    )
    script = (
        'source <(sed -n "/^build_progress()/,/^}/p" scripts/install.sh)\n'
        f'build_progress "{tmp_path / "build.log"}"\n'
    )
    shown = subprocess.run(
        ["bash", "-c", script], input=ninja, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "  llama.cpp build [1/3] ggml.c",
        "  llama.cpp build [2/3] llama-model.cpp",
        "  llama.cpp build [3/3] (linking)",
    ]
    assert (tmp_path / "build.log").read_text() == ninja
    install = (ROOT / "scripts" / "install.sh").read_text("utf-8")
    assert "pip install -v" in install and "about 6 minutes" in install
