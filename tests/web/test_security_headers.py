"""Security headers on every kind of response: pages, fragments, errors, JSON, text, static
files. HSTS only in production, and only over HTTPS (Railway's proxy says so)."""

from __future__ import annotations

import pytest

from tests.support.apps import THREE_REGIONS, spec_3x3

CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "frame-ancestors": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
}


def csp(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())


@pytest.fixture
def client(make_app):
    return make_app(BEACON_CONFIG=str(THREE_REGIONS)).test_client()


@pytest.fixture
def job_id(client, signer):
    response = client.post(
        "/api/v1/jobs", data=signer.body(spec_3x3()), content_type="application/json"
    )
    assert response.status_code == 202, response.json
    return response.json["job"]["id"]


def every_kind(client, job_id) -> dict[str, object]:
    execution_id = client.get(f"/api/v1/jobs/{job_id}").json["job"]["executions"][0]["id"]
    htmx = {"HX-Request": "true"}
    return {
        "job list": client.get("/"),
        "job list fragment": client.get("/", headers=htmx),
        "form": client.get("/jobs/new"),
        "job page": client.get(f"/jobs/{job_id}"),
        "job live fragment": client.get(f"/jobs/{job_id}", headers=htmx),
        "job row": client.get(f"/jobs/{job_id}/row", headers=htmx),
        "execution page": client.get(f"/executions/{execution_id}"),
        "questions": client.get("/questions"),
        "regions": client.get("/regions"),
        "api docs": client.get("/docs/api"),
        "404 page": client.get("/no/such/page"),
        "API JSON": client.get(f"/api/v1/jobs/{job_id}"),
        "API error": client.get("/api/v1/jobs/nope"),
        "API 405": client.delete("/api/v1/jobs"),
        "health": client.get("/health"),
        "ready": client.get("/ready"),
        "metrics": client.get("/metrics"),
        "stylesheet": read(client.get("/static/beacon.css")),
        "htmx": read(client.get("/static-lib/htmx.min.js")),
    }


def read(response):
    """Reads a file response and closes its file."""
    response.get_data()
    response.close()
    return response


def test_every_response_kind_carries_the_headers(client, job_id, make_app):
    responses = every_kind(client, job_id)
    # The login page exists when an admin token is set.
    guarded = make_app(BEACON_CONFIG=str(THREE_REGIONS), BEACON_ADMIN_TOKEN="t0ken-for-login")
    responses["login"] = guarded.test_client().get("/login")
    expected_status = {"404 page": 404, "API error": 404, "API 405": 405, "ready": 503}
    for kind, response in responses.items():
        assert response.status_code == expected_status.get(kind, 200), (kind, response.status)
        policy = csp(response)
        for directive, value in CSP.items():
            assert policy.get(directive) == value, (kind, directive, policy)
        assert "'unsafe-inline'" not in policy["script-src"]
        assert "'unsafe-eval'" not in policy["script-src"]
        assert response.headers["X-Content-Type-Options"] == "nosniff", kind
        assert response.headers["X-Frame-Options"] == "DENY", kind
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin", kind
        assert "Strict-Transport-Security" not in response.headers, kind
        assert response.headers["X-Request-ID"], kind


def test_pages_have_no_inline_script_or_handler(client, job_id):
    for kind, response in every_kind(client, job_id).items():
        if not response.content_type.startswith("text/html"):
            continue
        html = response.get_data(as_text=True)
        assert "<script>" not in html and "<script " not in html.replace('<script src="', ""), kind
        for handler in (" onclick=", " onload=", " onsubmit=", " onchange=", "javascript:"):
            assert handler not in html.lower(), (kind, handler)


def test_hsts_in_production_over_https_only(make_app):
    app = make_app(BEACON_ENV="production")
    client = app.test_client()
    plain = client.get("/health")
    assert "Strict-Transport-Security" not in plain.headers
    # Behind Railway's proxy the request arrives as http with X-Forwarded-Proto: https.
    secure = client.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert csp(secure)["frame-ancestors"] == "'none'"
    development = make_app().test_client().get("/", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in development.headers


def test_request_id_is_kept_when_sane_and_replaced_otherwise(client):
    given = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    hostile = client.get("/health", headers={"X-Request-ID": "bad id <x>"})
    assert hostile.headers["X-Request-ID"] != "bad id <x>"
    assert len(hostile.headers["X-Request-ID"]) == 32
