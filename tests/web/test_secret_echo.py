"""Issue 20, item 2: a provider that echoes the key it was sent must not show that key to anyone.

A gateway answering 401 with `{"error": {"message": "invalid credentials: Bearer sk-..."}}` put
a region's `api_key_env` key on a dozen pages and endpoints: only secrets inside `base_url` were
scrubbed. Here three loopback gateways echo the Authorization header they receive, in the three
shapes an error takes (a 401's message, a message long enough to be clipped in the middle of
the key, an `error` object in a 200), a fourth quotes the admin token and SECRET_KEY, and every
page and endpoint the issue lists, the stored rows and the log are searched for any 12
characters in a row of any of those secrets.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

# The one place this file names the portal's tables (they may move with the wings).
from portal.db import db
from portal.models import Answer, Execution
from tests.support.inline import run_inline
from tests.support.specs import job_spec

QUESTION = "identity_basic"
MODEL = "llama3.2-1b"
KEY_ENV = {
    "us-east": "ECHO_TEST_US_EAST_KEY",
    "eu-west": "ECHO_TEST_EU_WEST_KEY",
    "asia-pacific": "ECHO_TEST_ASIA_KEY",
}
# How each region's gateway answers: the path of its base_url says. The fourth region's gateway
# quotes text that equals the portal's own secrets (an operator who reused one as a key).
SHAPE = {
    "us-east": "echo401",
    "eu-west": "clip401",
    "asia-pacific": "error200",
    "me-south": "quote",
}
WINDOW = 12


class _EchoGateway(BaseHTTPRequestHandler):
    """Answers every chat call with an error quoting the bearer token it was sent."""

    protocol_version = "HTTP/1.1"
    quoted = ""

    def log_message(self, format, *args):  # noqa: A002 - signature set by the base class
        """Keeps request lines out of the test output."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization", "")
        shape = self.path.strip("/").split("/")[0]
        status, doc = 401, {"error": {"message": f"invalid credentials: {auth}"}}
        if shape == "clip401":
            # The portal clips a provider's message at 300 characters: here the cut falls in
            # the middle of the key, so scrubbing the clipped text for the whole key finds none.
            doc = {"error": {"message": "x" * 250 + f" rejected {auth}", "type": "auth"}}
        elif shape == "quote":
            status, doc = 403, {"error": {"message": f"forbidden: {self.quoted}"}}
        elif shape == "error200":
            status = 200
            doc = {"error": {"message": f"no credit left on {auth}", "code": "quota"}}
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def gateway():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoGateway)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def write_config(path, gateway_url: str):
    lines = [
        "[execution]",
        "call_timeout_s = 5",
        "job_timeout_s = 120",
        "max_attempts = 1",
        "lease_s = 5",
    ]
    for region, shape in SHAPE.items():
        lines += [
            "",
            f"[regions.{region}]",
            f'name = "{region}"',
            'provider = "openai"',
            f'base_url = "{gateway_url}/{shape}/v1"',
        ]
        if region in KEY_ENV:
            lines.append(f'api_key_env = "{KEY_ENV[region]}"')
    lines += ["", f'[models."{MODEL}"]', 'name = "Llama"', 'provider_model = "llama3.2:1b"']
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def leaks(text: str, keys: dict[str, str]) -> list[str]:
    """Returns the regions of which `text` shows any WINDOW characters of the key in a row."""
    grams = {text[i : i + WINDOW] for i in range(len(text) - WINDOW + 1)}
    return [
        region
        for region, key in keys.items()
        if any(key[i : i + WINDOW] in grams for i in range(len(key) - WINDOW + 1))
    ]


def test_a_key_echoed_by_a_provider_is_on_no_page_endpoint_row_or_log(
    make_app, signer, tmp_path, gateway, monkeypatch, caplog
):
    keys = {region: f"sk-{secrets.token_hex(24)}" for region in KEY_ENV}
    for region, env in KEY_ENV.items():
        monkeypatch.setenv(env, keys[region])
    keys["BEACON_ADMIN_TOKEN"] = f"admin-{secrets.token_hex(16)}"
    keys["SECRET_KEY"] = f"session-{secrets.token_hex(16)}"
    monkeypatch.setattr(
        _EchoGateway, "quoted", f"{keys['BEACON_ADMIN_TOKEN']} / {keys['SECRET_KEY']}"
    )
    config = write_config(tmp_path / "echo.toml", gateway)
    app = make_app(
        BEACON_CONFIG=str(config),
        BEACON_SEMANTIC="0",
        BEACON_ADMIN_TOKEN=keys["BEACON_ADMIN_TOKEN"],
        SECRET_KEY=keys["SECRET_KEY"],
    )
    client = app.test_client()
    spec = job_spec([MODEL], list(SHAPE), [QUESTION], job_id="echoed-key")
    with caplog.at_level(logging.DEBUG):
        response = client.post(
            "/api/v1/jobs", data=signer.body(spec), content_type="application/json"
        )
        assert response.status_code == 202, response.json
        run_inline(app)
        job = client.get("/api/v1/jobs/echoed-key").json["job"]
        assert job["status"] == "failed", job
        executions = {e["region"]: e for e in job["executions"]}
        # The errors still say what went wrong, and where the key comes from.
        us_east = executions["us-east"]["answers"][0]["error"]
        assert "HTTP 401" in us_east and KEY_ENV["us-east"] in us_east, us_east

        ids = [e["id"] for e in job["executions"]]
        paths = [
            "/jobs/echoed-key",
            f"/jobs/echoed-key/models/{MODEL}/questions/0",
            f"/questions/{QUESTION}",
            f"/api/v1/questions/{QUESTION}/history",
            "/api/v1/jobs/echoed-key",
            "/api/v1/jobs/echoed-key/answers",
            "/api/v1/jobs/echoed-key/comparison",
            "/api/v1/jobs/echoed-key/comparison.csv",
            "/api/v1/jobs/echoed-key/evidence",
            "/api/v1/executions?job_id=echoed-key",
            "/api/v1/executions/job/echoed-key",
            "/api/v1/jobs",
            "/",
            "/regions",
            "/api/v1/regions",
            "/api/v1/log/entries",
            "/api/v1/openapi.json",
            *(f"/executions/{i}" for i in ids),
            *(f"/api/v1/executions/{i}" for i in ids),
            *(f"/api/v1/executions/{i}/receipt" for i in ids),
        ]
        shown = {}
        for path in paths:
            page = client.get(path)
            assert page.status_code == 200, (path, page.status_code)
            shown[path] = page.get_data(as_text=True)
        row = client.get("/jobs/echoed-key/row", headers={"HX-Request": "true"})
        assert row.status_code in (200, 286), row.status_code
        shown["/jobs/echoed-key/row"] = row.get_data(as_text=True)

    found = {path: leaks(text, keys) for path, text in shown.items() if leaks(text, keys)}
    # Today every region's key is on every one of them but the lists and the log.
    assert not found, f"a secret echoed by a provider is shown on (path: whose secret) {found}"
    with app.app_context():
        stored = [
            *db.session.scalars(select(Answer.error)),
            *db.session.scalars(select(Execution.error)),
        ]
        db.session.rollback()
    assert not [e for e in stored if e and leaks(e, keys)], f"stored: {stored}"
    assert not leaks(caplog.text, keys)
