"""The JSON API: submission, idempotency, refusals, listings and the OpenAPI document."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.models import Answer, Execution, Job, UsedNonce
from portal.status import RUN_STATUSES
from tests.support.apps import SHARED, THREE_REGIONS, Signer, spec_3x3


def post(client, body: bytes | str, content_type="application/json"):
    return client.post("/api/v1/jobs", data=body, content_type=content_type)


def row_counts(app) -> tuple[int, int, int, int]:
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(model))
            for model in (Job, Execution, Answer, UsedNonce)
        )


def test_signed_spec_is_accepted_then_idempotent(client3, app3, signer):
    body = signer.body(spec_3x3(metadata={"models": ["llama3.2-1b"], "nonce": "n1"}))
    first = post(client3, body)
    assert first.status_code == 202, first.json
    job = first.json["job"]
    assert first.json["idempotent"] is False
    assert first.headers["Location"].endswith(f"/api/v1/jobs/{job['id']}")
    assert job["signature_scheme"] == "beacon-jcs-v1"
    before = row_counts(app3)
    again = post(client3, body)
    assert again.status_code == 200
    assert again.json["idempotent"] is True
    assert again.json["job"]["id"] == job["id"]
    assert row_counts(app3) == before


def test_three_by_three_yields_nine_executions(client3, app3, signer):
    response = post(client3, signer.body(spec_3x3()))
    assert response.status_code == 202, response.json
    job = response.json["job"]
    pairs = [(e["model_id"], e["model_name"], e["region"]) for e in job["executions"]]
    assert len(pairs) == 9 and len({(m, r) for m, _, r in pairs}) == 9
    names = {
        "llama3.2-1b": "Llama 3.2-1B",
        "mistral-7b": "Mistral 7B",
        "qwen2.5-1.5b": "Qwen 2.5-1.5B",
    }
    assert all(names[m] == n for m, n, _ in pairs)
    assert [p[0] for p in pairs[:3]] == ["llama3.2-1b"] * 3
    assert [p[2] for p in pairs[:3]] == ["us-east", "eu-west", "asia-pacific"]
    assert job["counts"] == {"total": 27, **{s: 27 if s == "queued" else 0 for s in RUN_STATUSES}}
    assert all(len(e["answers"]) == 3 and e["status"] == "queued" for e in job["executions"])
    with app3.app_context():
        rows = db.session.execute(
            select(Execution.model_id, Execution.region).where(Execution.job_id == job["id"])
        ).all()
    assert sorted(rows) == sorted((m, r) for m, _, r in pairs)
    listed = client3.get(f"/api/v1/executions?job_id={job['id']}").json["items"]
    assert {(e["model_id"], e["region"]) for e in listed} == {(m, r) for m, _, r in pairs}
    by_job = client3.get(f"/api/v1/executions/job/{job['id']}").json["items"]
    assert all(e["model_id"] and e["model_name"] and e["region"] for e in by_job)
    one = client3.get(f"/api/v1/executions/{by_job[4]['id']}").json["execution"]
    assert (one["model_id"], one["region"]) == ("mistral-7b", "eu-west")
    filtered = client3.get("/api/v1/executions?model_id=qwen2.5-1.5b&region=us-east").json
    assert [(e["model_id"], e["region"]) for e in filtered["items"]] == [
        ("qwen2.5-1.5b", "us-east")
    ]


@pytest.mark.parametrize(
    "models",
    [
        ["llama3.2-1b", "mistral-7b"],
        [{"id": "llama3.2-1b"}, {"id": "mistral-7b", "name": "whatever"}],
        ["llama3.2-1b", {"id": "mistral-7b"}, "llama3.2-1b", {"id": "mistral-7b"}],
    ],
)
def test_model_forms_normalize_the_same(client3, signer, models):
    response = post(client3, signer.body(spec_3x3(metadata={"models": models})))
    assert response.status_code == 202, response.json
    job = response.json["job"]
    assert job["models"] == ["llama3.2-1b", "mistral-7b"]
    assert len(job["executions"]) == 6


def test_top_level_models_and_default_model(client3, signer):
    spec = spec_3x3(models=["qwen2.5-1.5b"], metadata={})
    assert post(client3, signer.body(spec)).json["job"]["models"] == ["qwen2.5-1.5b"]
    spec = spec_3x3(metadata={}, questions=["math_basic"])
    assert post(client3, signer.body(spec)).json["job"]["models"] == ["llama3.2-1b"]


@pytest.mark.parametrize(
    ("change", "code", "culprit"),
    [
        ({"metadata": {"models": ["gpt-9"]}}, "unknown_model", "gpt-9"),
        ({"constraints": {"regions": ["us-east", "mars-north"]}}, "unknown_region", "mars-north"),
        (
            {"questions": ["identity_basic", "no_such_question"]},
            "unknown_question",
            "no_such_question",
        ),
    ],
)
def test_unknown_names_are_refused(client3, app3, signer, change, code, culprit):
    response = post(client3, signer.body(spec_3x3(**change)))
    assert response.status_code == 400
    assert response.json["error"]["code"] == code
    assert culprit in response.json["error"]["message"]
    assert culprit in json.dumps(response.json["error"]["fields"])
    assert row_counts(app3) == (0, 0, 0, 0)


def test_aliases_resolve_and_prompts_pass_through(client3, signer):
    spec = spec_3x3(
        constraints={"regions": ["US", "eu-WEST", "asia"]},
        questions=["What is the tallest mountain?", "math_basic"],
    )
    job = post(client3, signer.body(spec)).json["job"]
    assert job["regions"] == ["us-east", "eu-west", "asia-pacific"]
    version = hashlib.sha256(b"What is the tallest mountain?").hexdigest()[:12]
    assert job["questions"][0] == {
        "index": 0,
        "id": None,
        "prompt": "What is the tallest mountain?",
        "language": "und",
        "version": version,
        "languages": [
            {"language": "und", "prompt": "What is the tallest mountain?", "version": version}
        ],
    }
    assert job["questions"][1]["id"] == "math_basic"
    assert job["questions"][1]["language"] == "en"
    answers = [a for e in job["executions"] for a in e["answers"]]
    assert {(a["language"], a["question_version"]) for a in answers} == {
        (q["language"], q["version"]) for q in job["questions"]
    }


def test_no_questions_uses_input_prompt_and_none_is_refused(client3, signer):
    spec = spec_3x3(questions=[])
    job = post(client3, signer.body(spec)).json["job"]
    assert [q["prompt"] for q in job["questions"]] == ["Who are you?"]
    spec = spec_3x3(questions=[], benchmark={"name": "x"})
    response = post(client3, signer.body(spec))
    assert response.status_code == 400 and response.json["error"]["code"] == "no_prompt"


def fresh_meta(**extra) -> dict:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {"models": ["llama3.2-1b"], "nonce": "nonce-1", "timestamp": now, **extra}


def mutated(signer: Signer, **changes) -> bytes:
    signed = signer.sign(spec_3x3(metadata=fresh_meta()))
    signed.update(changes)
    return json.dumps(signed).encode()


BAD_INPUTS = {
    "malformed JSON": (b'{"id": "x",', 400, "invalid_json"),
    "non-object body": (b"[1, 2, 3]", 400, "not_object"),
    "wrong types": (None, 400, "invalid_field"),
    "missing signature": (None, 401, "missing_signature"),
    "bad base64": (None, 400, "malformed_signature"),
    "31-byte key": (None, 400, "malformed_signature"),
    "tampered field": (None, 401, "invalid_signature"),
    "untrusted key": (None, 403, "untrusted_key"),
    "duplicate keys": (b'{"id": "a", "id": "b"}', 400, "invalid_json"),
}


def bad_body(case: str, signer: Signer) -> bytes:
    body, _, _ = BAD_INPUTS[case]
    if body is not None:
        return body
    if case == "wrong types":
        return signer.body(spec_3x3(questions="identity_basic", runs="3"))
    if case == "missing signature":
        signed = signer.sign(spec_3x3())
        del signed["signature"]
        return json.dumps(signed).encode()
    if case == "bad base64":
        return mutated(signer, signature="not*base64!")
    if case == "31-byte key":
        import base64

        return mutated(signer, public_key=base64.b64encode(b"k" * 31).decode())
    if case == "tampered field":
        signed = signer.sign(spec_3x3(metadata=fresh_meta()))
        signed["questions"] = ["math_basic"]
        return json.dumps(signed).encode()
    if case == "untrusted key":
        return Signer().body(spec_3x3(metadata=fresh_meta()))
    raise AssertionError(case)


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_and_writes_nothing(client3, app3, signer, case):
    _, status, code = BAD_INPUTS[case]
    response = post(client3, bad_body(case, signer))
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]
    assert row_counts(app3) == (0, 0, 0, 0)


def test_body_over_the_limit_is_413(client3, app3):
    response = post(client3, b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}')
    assert response.status_code == 413
    assert response.json["error"]["code"] == "too_large"
    assert row_counts(app3) == (0, 0, 0, 0)


def test_wrong_content_type_is_415(client3, signer):
    response = post(client3, signer.body(spec_3x3()), content_type="text/plain")
    assert response.status_code == 415 and response.json["error"]["code"] == "not_json"


def test_revoked_and_expired_keys(make_app, signer):
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    for entry, code in [
        (signer.trusted_entry(status="revoked"), "revoked_key"),
        (signer.trusted_entry(not_after=past), "expired_key"),
    ]:
        app = make_app(BEACON_CONFIG=str(THREE_REGIONS), BEACON_TRUSTED_KEYS=json.dumps([entry]))
        response = post(app.test_client(), signer.body(spec_3x3(metadata=fresh_meta())))
        assert response.status_code == 403 and response.json["error"]["code"] == code
        assert row_counts(app) == (0, 0, 0, 0)


def test_reused_nonce_is_409_and_writes_nothing(client3, app3, signer):
    first = signer.body(spec_3x3(metadata=fresh_meta()))
    assert post(client3, first).status_code == 202
    before = row_counts(app3)
    other = signer.body(spec_3x3(metadata=fresh_meta(), questions=["math_basic"]))
    response = post(client3, other)
    assert response.status_code == 409 and response.json["error"]["code"] == "nonce_reused"
    assert row_counts(app3) == before


def test_stale_timestamp_is_400(client3, app3, signer):
    old = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    response = post(client3, signer.body(spec_3x3(metadata=fresh_meta(timestamp=old))))
    assert response.status_code == 400 and response.json["error"]["code"] == "stale_timestamp"
    assert row_counts(app3) == (0, 0, 0, 0)


def test_different_spec_under_same_id_is_409(client3, app3, signer):
    assert post(client3, signer.body(spec_3x3(id="fixed-id"))).status_code == 202
    before = row_counts(app3)
    response = post(client3, signer.body(spec_3x3(id="fixed-id", questions=["math_basic"])))
    assert response.status_code == 409 and response.json["error"]["code"] == "id_conflict"
    assert row_counts(app3) == before


COMPAT_OUTCOMES = {
    "3-model-verification-job.signed.json": (202, "legacy-c1", 9),
    "first-live-job.signed.json": (400, "no_prompt", None),
    "jobspec-who-are-you.signed.json": (202, "legacy-c0", 3),
    "minimal.jobspec.signed.json": (202, "legacy-c0", 3),
    "portal-jobspec.signed.json": (202, "legacy-c2", 6),
    "portal-sorted-keys.signed.json": (202, "beacon-jcs-v1", 3),
    "invalid-signature.json": (400, "malformed_signature", None),
}


@pytest.mark.parametrize("name", sorted(COMPAT_OUTCOMES))
def test_compat_files_behave_as_their_readme_says(make_app, name):
    raw = (SHARED / "compat" / name).read_bytes()
    public_key = json.loads(raw).get("public_key") or json.loads(raw)["jobspec"]["public_key"]
    trusted = (
        json.dumps([{"kid": "compat", "public_key": public_key, "status": "active"}])
        if len(public_key) == 44
        else ""
    )
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS), BEACON_TRUSTED_KEYS=trusted)
    # The original runner's forms are off by default: a migrating operator turns them on.
    app.extensions["beacon"] = _legacy_on(_without_timestamp_window(app.extensions["beacon"]))
    response = post(app.test_client(), raw)
    status, scheme_or_code, executions = COMPAT_OUTCOMES[name]
    assert response.status_code == status, response.json
    if status == 202:
        job = response.json["job"]
        assert job["signature_scheme"] == scheme_or_code
        assert len(job["executions"]) == executions
        assert all(e["model_id"] and e["model_name"] and e["region"] for e in job["executions"])
        assert post(app.test_client(), raw).json["idempotent"] is True
    else:
        assert response.json["error"]["code"] == scheme_or_code
        assert row_counts(app) == (0, 0, 0, 0)


def _without_timestamp_window(settings):
    """The compat files were signed in 2025: their timestamps are outside any live window."""
    from dataclasses import replace

    config = settings.config
    intake = replace(config.intake, timestamp_window_s=0)
    return replace(settings, config=replace(config, intake=intake))


def _legacy_on(settings):
    from dataclasses import replace

    config = settings.config
    intake = replace(config.intake, legacy_signatures=True)
    return replace(settings, config=replace(config, intake=intake))


def test_legacy_off_refuses_legacy_files(make_app):
    raw = (SHARED / "compat" / "minimal.jobspec.signed.json").read_bytes()
    key = json.loads(raw)["public_key"]
    app = make_app(
        BEACON_CONFIG=str(THREE_REGIONS),
        BEACON_TRUSTED_KEYS=json.dumps([{"kid": "c", "public_key": key, "status": "active"}]),
    )
    s = _without_timestamp_window(app.extensions["beacon"])
    from dataclasses import replace

    app.extensions["beacon"] = replace(
        s, config=replace(s.config, intake=replace(s.config.intake, legacy_signatures=False))
    )
    response = post(app.test_client(), raw)
    assert response.status_code == 401 and response.json["error"]["code"] == "invalid_signature"


def test_job_listing_pages_and_filters(client3, signer):
    ids = []
    for i in range(5):
        spec = spec_3x3(questions=[f"Question number {i} please?"], metadata={})
        ids.append(post(client3, signer.body(spec)).json["job"]["id"])
    page1 = client3.get("/api/v1/jobs?limit=2").json
    assert [j["id"] for j in page1["items"]] == ids[::-1][:2]
    page2 = client3.get(f"/api/v1/jobs?limit=2&cursor={page1['next']}").json
    assert [j["id"] for j in page2["items"]] == ids[::-1][2:4]
    assert (
        client3.get("/api/v1/jobs?status=queued&limit=200").json["items"][0]["counts"]["total"] == 3
    )
    assert client3.get("/api/v1/jobs?status=completed").json["items"] == []
    assert client3.get("/api/v1/jobs?status=bogus").status_code == 400
    assert client3.get("/api/v1/jobs?limit=0").json["error"]["code"] == "invalid_parameter"
    assert client3.get("/api/v1/jobs/nope").json["error"]["code"] == "job_not_found"
    assert client3.get("/api/v1/executions/999999").status_code == 404


def test_catalogue_and_health(client3):
    assert [m["id"] for m in client3.get("/api/v1/models").json["items"]] == [
        "llama3.2-1b",
        "mistral-7b",
        "qwen2.5-1.5b",
    ]
    regions = client3.get("/api/v1/regions").json["items"]
    assert regions[0]["id"] == "us-east" and "US" in regions[0]["aliases"]
    assert "api_key_env" not in regions[0] and "base_url" not in regions[0]
    questions = {q["id"] for q in client3.get("/api/v1/questions").json["items"]}
    assert {"identity_basic", "tiananmen_neutral", "greatest_leader"} <= questions
    health = client3.get("/health")
    assert health.status_code == 200 and health.json["database"] == "ok"


def test_unknown_api_path_is_json_404(client3):
    response = client3.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"


def test_submissions_over_the_rate_limit_get_429(make_app, signer, tmp_path):
    config = tmp_path / "limited.toml"
    config.write_text(THREE_REGIONS.read_text() + '\n[intake]\nrate_limit = "3 per minute"\n')
    app = make_app(BEACON_CONFIG=str(config))
    client = app.test_client()
    assert post(client, signer.body(spec_3x3(id="one"))).status_code == 202
    assert post(client, b"{not json").status_code == 400
    assert post(client, signer.body(spec_3x3(id="two"))).status_code == 202
    before = row_counts(app)
    refused = post(client, signer.body(spec_3x3(id="three")))
    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert row_counts(app) == before
    other = client.post(
        "/api/v1/jobs",
        data=signer.body(spec_3x3(id="four")),
        content_type="application/json",
        environ_base={"REMOTE_ADDR": "10.9.9.9"},
    )
    assert other.status_code == 202, "the limit is per client address"


def test_production_reads_the_client_address_through_one_proxy(make_app, signer, tmp_path):
    config = tmp_path / "limited.toml"
    config.write_text(THREE_REGIONS.read_text() + '\n[intake]\nrate_limit = "1 per minute"\n')
    app = make_app(BEACON_CONFIG=str(config), BEACON_ENV="production")
    client = app.test_client()

    def from_client(address: str, job_id: str):
        return client.post(
            "/api/v1/jobs",
            data=signer.body(spec_3x3(id=job_id)),
            content_type="application/json",
            headers={"X-Forwarded-For": address},
        )

    assert from_client("203.0.113.1", "a").status_code == 202
    assert from_client("203.0.113.1", "b").status_code == 429
    assert from_client("203.0.113.2", "c").status_code == 202
