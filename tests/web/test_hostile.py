"""Hostile input in process: legacy signatures, trust before verification, provider URL
redaction, limits on the form and the login, production defaults, big jobs' answers, and the
comparison cached per baseline (docs/security.md). The same defences are exercised against
gunicorn in test_hostile_live.py."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import func, select

from portal import redact
from portal.compare import report
from portal.db import db
from portal.intake import signing
from portal.models import Job
from tests.support.apps import THREE_REGIONS, Signer, spec_3x3
from tests.support.jobs import FORM_3X3, echo, finish

SECRET_URL = "http://svc:PassW0rd%21@10.0.0.1:8080/v1?api_key=KEY123abc&org=ACME42"


def post(client, body: bytes | str):
    return client.post("/api/v1/jobs", data=body, content_type="application/json")


def fresh(**changes) -> dict:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    meta = {"models": ["llama3.2-1b"], "nonce": signing.generate_seed().hex(), "timestamp": now}
    spec = spec_3x3(metadata=meta, **changes)
    spec.pop("id", None)
    spec.pop("created_at", None)
    return spec


def with_legacy(app, on: bool = True):
    s = app.extensions["beacon"]
    intake = replace(s.config.intake, legacy_signatures=on)
    app.extensions["beacon"] = replace(s, config=replace(s.config, intake=intake))
    return app


def test_legacy_schemes_are_off_in_the_default_configuration(make_app, signer):
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS))
    assert app.extensions["beacon"].config.intake.legacy_signatures is False
    taken = dict(signer.sign(fresh()), id="taken-over")
    refused = post(app.test_client(), json.dumps(taken))
    assert refused.status_code == 401 and refused.json["error"]["code"] == "invalid_signature"


def test_with_legacy_on_an_added_id_is_dropped_not_believed(make_app, signer):
    app = with_legacy(make_app(BEACON_CONFIG=str(THREE_REGIONS)))
    signed = signer.sign(fresh(constraints={"regions": ["US", "EU"], "min_success_rate": 0.5}))
    added = dict(signed, id="taken-over", created_at="2020-01-01T00:00:00Z", note="")
    response = post(app.test_client(), json.dumps(added))
    assert response.status_code == 202, response.json
    job = response.json["job"]
    assert job["id"] != "taken-over" and job["signature_scheme"] == "legacy-c2"
    assert job["constraints"]["min_success_rate"] == 0.5
    original = post(app.test_client(), json.dumps(signed))
    # The same signed bytes: the very same job, whatever was added around them.
    assert original.status_code == 200 and original.json["job"]["id"] == job["id"]


def test_an_unknown_key_is_refused_before_any_signature_work(make_app, signer):
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS))
    stranger = Signer()
    body = stranger.sign(fresh())
    # A signature that could never verify: the refusal still names the key, not the signature.
    body["signature"] = base64.b64encode(bytes(64)).decode()
    response = post(app.test_client(), json.dumps(body))
    assert response.status_code == 403 and response.json["error"]["code"] == "untrusted_key"


def test_submissions_are_rate_limited_by_default(make_app):
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS))
    assert app.extensions["beacon"].config.intake.rate_limit == "60 per minute"
    client = app.test_client()
    statuses = [post(client, b"{}").status_code for _ in range(61)]
    assert statuses[:60] == [401] * 60 and statuses[60] == 429


def test_the_form_shares_the_submission_limit(make_app, tmp_path):
    config = tmp_path / "limited.toml"
    config.write_text(THREE_REGIONS.read_text() + '\n[intake]\nrate_limit = "1 per minute"\n')
    app = make_app(BEACON_CONFIG=str(config))
    client = app.test_client()
    assert client.post("/jobs/new", data=FORM_3X3).status_code == 303
    limited = client.post("/jobs/new", data=FORM_3X3)
    assert limited.status_code == 429 and "job submissions" in limited.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count(Job.pk))) == 1


def test_login_is_throttled(make_app):
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS), BEACON_ADMIN_TOKEN="s3cret")
    client = app.test_client()
    statuses = [client.post("/login", data={"token": "guess"}).status_code for _ in range(11)]
    assert statuses[:10] == [422] * 10 and statuses[10] == 429
    # Even the right token waits once the limit is reached.
    assert client.post("/login", data={"token": "s3cret"}).status_code == 429


def test_production_without_admin_token_closes_the_form(make_app):
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS), BEACON_ENV="production")
    client = app.test_client()
    assert client.get("/jobs/new").status_code == 403
    assert client.post("/jobs/new", data=FORM_3X3).status_code == 403
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_safe_url_and_scrub_hide_every_secret():
    assert redact.safe_url(SECRET_URL) == "http://10.0.0.1:8080/v1"
    message = (
        f"us-east: cannot connect to {SECRET_URL}/chat/completions: refused "
        "(url: /v1/chat/completions?api_key=KEY123abc&org=ACME42, auth svc:PassW0rd!)"
    )
    scrubbed = redact.scrub(message, SECRET_URL)
    for secret in ("PassW0rd", "KEY123abc", "ACME42", "svc:"):
        assert secret not in scrubbed
    assert "http://10.0.0.1:8080/v1/chat/completions" in scrubbed
    assert redact.safe_url("http://[::1]:99/x?k=v") == "http://[::1]:99/x"
    assert redact.safe_url("http://host:notaport/") == redact.HIDDEN


def test_big_jobs_page_their_answers(make_app, signer):
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS))
    client = app.test_client()
    questions = [f"Question number {i} of many?" for i in range(12)]
    spec = fresh(questions=questions, runs=2)
    spec["metadata"]["models"] = ["llama3.2-1b", "mistral-7b", "qwen2.5-1.5b"]
    response = post(client, signer.body(spec))
    assert response.status_code == 202, response.json
    job = response.json["job"]
    total = 3 * 3 * 12 * 2
    assert job["answers_page"]["total"] == total
    assert all("answers" not in e for e in job["executions"])
    seen, cursor = [], None
    while True:
        params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        page = client.get(job["answers_page"]["url"], query_string=params).json
        seen += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == total == len({a["id"] for a in seen})
    assert {a["region"] for a in seen} == {"us-east", "eu-west", "asia-pacific"}
    assert client.get("/api/v1/jobs/nope/answers").status_code == 404
    assert client.get(f"{job['answers_page']['url']}?cursor=x").status_code == 400
    small = post(client, signer.body(fresh(questions=questions[:1]))).json["job"]
    assert "answers_page" not in small and all("answers" in e for e in small["executions"])


def test_each_baseline_is_compared_once_then_read_back(make_app, signer):
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS))
    client = app.test_client()
    job_id = post(client, signer.body(fresh())).json["job"]["id"]
    finish(app, job_id, echo)
    first = {}
    for baseline in ("us-east", "eu-west", "asia-pacific"):
        response = client.get(f"/api/v1/jobs/{job_id}/comparison?baseline={baseline}")
        assert response.status_code == 200
        first[baseline] = response.json["comparison"]
    with app.app_context():
        cached = db.session.scalar(select(Job).where(Job.id == job_id)).comparison_cache
    assert cached["doc"]["baseline"] == "us-east"
    assert set(cached["baselines"]) == {"eu-west", "asia-pacific"}
    report._recent.clear()
    for baseline, doc in first.items():
        again = client.get(f"/api/v1/jobs/{job_id}/comparison?baseline={baseline}")
        assert again.json["comparison"] == doc
