"""Production logging: JSON lines (one per request with its id, one per execution state change),
no secret in any log line or page; and a production start without SECRET_KEY stops with a
message saying so."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess

import pytest
import requests

from portal.status import RunStatus
from tests.support.apps import THREE_REGIONS, spec_3x3
from tests.support.live_server import ROOT, free_port, procfile, shell_env, wait_until
from tests.support.production import release, start, web_env
from tests.support.workers import REGIONS, Engine, clean_env

pytestmark = pytest.mark.live

SECRET_KEY = "s3cret-key-" + os.urandom(12).hex()
ADMIN_TOKEN = "admin-t0ken-" + os.urandom(12).hex()
API_KEY = "sk-provider-" + os.urandom(12).hex()


def test_production_without_secret_key_stops_with_a_message(tmp_path):
    env = clean_env(BEACON_ENV="production", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    env.pop("SECRET_KEY")
    for name in ("release", "web", "worker"):
        line = procfile()[name]
        if name == "web":
            line = line.replace("${PORT:-8000}", str(free_port()))
        result = subprocess.run(
            ["bash", "-c", "exec " + line],
            cwd=ROOT,
            env=shell_env(env),
            capture_output=True,
            text=True,
            timeout=90,
        )
        output = result.stdout + result.stderr
        assert result.returncode != 0, (name, output)
        assert "SECRET_KEY: required when BEACON_ENV=production" in output, (name, output)
        # The refusal is a message, not a crash in our code. (gunicorn's arbiter may print its
        # own HaltServer traceback when a worker exits at boot, depending on timing.)
        assert 'File "' + str(ROOT / "portal") not in output, (name, output)
        if name != "web":
            assert "Traceback" not in output, (name, output)


def test_production_logs_are_json_lines_without_secrets(tmp_path, database_url, signer):
    engine = Engine(tmp_path, database_url)
    try:
        providers = engine.three_providers()
        seed = base64.b64encode(os.urandom(32)).decode()
        env = web_env(
            database_url,
            THREE_REGIONS,  # us-east's bearer token comes from US_EAST_API_KEY
            signer,
            BEACON_ENV="production",
            SECRET_KEY=SECRET_KEY,
            BEACON_ADMIN_TOKEN=ADMIN_TOKEN,
            BEACON_SIGNING_KEY=seed,
            US_EAST_API_KEY=API_KEY,
            **{REGIONS[r][1]: p.base_url_openai for r, p in providers.items()},
        )
        assert release(env).returncode == 0
        web = start(env, tmp_path / "web.log")
        url = web.url
        pages: list[str] = []
        sent_ids: list[str] = []

        def get(path: str, session=requests, **kwargs) -> requests.Response:
            request_id = f"test-{len(sent_ids)}"
            sent_ids.append(request_id)
            headers = {"X-Request-ID": request_id, **kwargs.pop("headers", {})}
            response = session.get(url + path, headers=headers, timeout=30, **kwargs)
            assert response.headers["X-Request-ID"] == request_id
            pages.append(response.text)
            return response

        created = requests.post(
            f"{url}/api/v1/jobs",
            data=signer.body(spec_3x3()),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert created.status_code == 202, created.text
        job_id = created.json()["job"]["id"]

        def ended():
            job = get(f"/api/v1/jobs/{job_id}").json()["job"]
            return job if job["status"] == "completed" else None

        job = wait_until(ended, 120, interval=0.5, what="the job to complete")
        assert providers["us-east"].count() == 9

        browser = requests.Session()
        form = get("/login?next=/jobs/new", session=browser)
        csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form.text).group(1)
        logged_in = browser.post(
            f"{url}/login?next=/jobs/new",
            data={"csrf_token": csrf, "token": ADMIN_TOKEN},
            timeout=30,
        )
        pages.append(logged_in.text)
        assert "New job" in get("/jobs/new", session=browser).text
        for path in (
            "/",
            f"/jobs/{job_id}",
            f"/executions/{job['executions'][0]['id']}",
            "/regions",
            "/questions",
            "/docs/api",
            "/api/v1/regions",
            "/api/v1/models",
            "/api/v1/openapi.json",
            f"/api/v1/jobs/{job_id}/comparison",
            "/metrics",
            "/ready",
            "/health",
            "/no/such/page",
            f"/api/v1/jobs?cursor=x&token={ADMIN_TOKEN}",
        ):
            get(path)
        retried = requests.post(
            f"{url}/api/v1/jobs/{job_id}/retry",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        pages.append(retried.text)
        assert retried.status_code == 409  # nothing failed: but the token was checked
        web.stop(timeout=30)
        log = web.log()

        for secret in (SECRET_KEY, ADMIN_TOKEN, API_KEY, seed, base64.b64decode(seed).hex()):
            assert secret not in log, "a secret reached the log"
            for page in pages:
                assert secret not in page, "a secret reached a page"

        records = []
        for line in log.splitlines():
            if line.strip():
                records.append(json.loads(line))  # every line is one JSON object
        requests_logged = [r for r in records if r.get("event") == "request"]
        by_id = {r["request_id"]: r for r in requests_logged}
        for request_id in sent_ids:
            record = by_id[request_id]
            assert record["method"] == "GET" and record["path"].startswith("/")
            assert isinstance(record["status"], int) and record["duration_ms"] >= 0
        assert by_id[sent_ids[-1]]["path"] == "/api/v1/jobs"  # never the query string
        states = [r for r in records if r.get("event") == "execution"]
        completed = {(r["model"], r["region"]) for r in states if r["status"] == "completed"}
        assert len(completed) == 9
        assert {r["job"] for r in states} == {job_id}
        assert {r["status"] for r in states} == {RunStatus.RUNNING, RunStatus.COMPLETED}
    finally:
        engine.close()
