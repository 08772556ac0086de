"""The Procfile's processes, for real: release migrates, web serves and runs the engine, and the
launch checklist (scripts/verify_deployment.py) passes, or fails when a region is broken."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests
from sqlalchemy import create_engine, text

from portal.config import load_config
from portal.settings import database_url as sqlalchemy_url
from tests.support.apps import THREE_REGIONS, spec_3x3
from tests.support.live_server import ROOT, LiveServer, free_port, procfile, shell_env, start_web
from tests.support.workers import REGIONS, Engine, clean_env, wait_until

pytestmark = pytest.mark.live


@pytest.fixture
def deployment(tmp_path, database_url, signer):
    """Starts the Procfile's processes on demand; stops everything at teardown."""
    engine = Engine(tmp_path, database_url)
    webs: list[LiveServer] = []

    def start(base_urls: dict[str, str], **extra: str) -> LiveServer:
        env = clean_env(
            DATABASE_URL=database_url,
            BEACON_CONFIG=str(THREE_REGIONS),
            BEACON_TRUSTED_KEYS=json.dumps([signer.trusted_entry()]),
            WEB_CONCURRENCY="2",
            **{REGIONS[region][1]: url for region, url in base_urls.items()},
            **extra,
        )
        release = subprocess.run(
            ["bash", "-c", procfile()["release"]],
            cwd=ROOT,
            env=shell_env(env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert release.returncode == 0, release.stdout + release.stderr
        web = start_web(env, tmp_path / f"web-{len(webs)}.log")
        webs.append(web)
        web.wait_ready(timeout=60, interval=0.2)
        return web

    start.engine = engine
    yield start
    for web in webs:
        web.stop(timeout=30)
    engine.close()


def run_checklist(url: str, signer) -> subprocess.CompletedProcess:
    env = clean_env(BEACON_USER_KEY=signer.seed_b64)
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "verify_deployment.py"), url, "--timeout", "90"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )


def test_procfile_lines():
    lines = procfile()
    assert lines["web"] == (
        "gunicorn wsgi:app -k gevent -c gunicorn.conf.py --bind 0.0.0.0:${PORT:-8000}"
    )
    assert "--preload" not in lines["web"]
    assert lines["release"] == "flask --app wsgi db upgrade"
    # A dispatcher-only process, for deployments that scale workers apart from the web.
    assert lines["worker"] == "flask --app wsgi beacon worker"


@pytest.mark.slow
def test_checklist_passes_against_the_procfile_web_process(deployment, signer):
    providers = deployment.engine.three_providers()
    web = deployment({r: p.base_url_openai for r, p in providers.items()})

    result = run_checklist(web.url, signer)

    assert result.returncode == 0, result.stdout + result.stderr + web.log()
    lines = [line for line in result.stdout.splitlines() if line[:4] in ("PASS", "FAIL")]
    assert not [line for line in lines if line.startswith("FAIL")], result.stdout
    for check in (
        "9 executions",
        "the right model_id on each execution",
        "9 distinct (model_id, region)",
        "model_id in GET /api/v1/executions",
        "model_id in GET /api/v1/executions/job/",
        "job ended completed",
        "job page shows 3 model groups of 3 regions",
    ):
        assert any(line.startswith(f"PASS {check}") for line in lines), (check, result.stdout)
    assert sum(p.count() for p in providers.values()) == 27


@pytest.mark.slow
def test_checklist_fails_when_one_region_is_misconfigured(deployment, signer):
    providers = deployment.engine.three_providers()
    urls = {r: p.base_url_openai for r, p in providers.items()}
    urls["eu-west"] = f"http://127.0.0.1:{free_port()}/v1"
    web = deployment(urls)

    result = run_checklist(web.url, signer)

    assert result.returncode == 1, result.stdout + result.stderr + web.log()
    assert "FAIL job ended completed: partial" in result.stdout
    assert "connection refused" in result.stdout
    assert "PASS 9 distinct (model_id, region)" in result.stdout
    assert providers["eu-west"].count() == 0


@pytest.mark.slow
def test_dispatcher_can_be_turned_off_in_the_web_process(deployment, signer, database_url):
    provider = deployment.engine.provider("only")
    urls = dict.fromkeys(REGIONS, provider.base_url_openai)
    web = deployment(urls, BEACON_DISPATCHER="0")
    response = requests.post(
        f"{web.url}/api/v1/jobs",
        data=signer.body(spec_3x3()),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job"]["id"]

    def job_status():
        return requests.get(f"{web.url}/api/v1/jobs/{job_id}", timeout=5).json()["job"]["status"]

    time.sleep(2.0)
    assert job_status() == "queued" and provider.count() == 0
    worker = deployment.engine.worker(
        THREE_REGIONS,
        **{var: url for (_, var), url in zip(REGIONS.values(), urls.values(), strict=True)},
    )
    wait_until(lambda: job_status() == "completed", 60, interval=0.3, what="the job to end")
    assert provider.count() == 27
    engine = create_engine(sqlalchemy_url(database_url, "."))
    with engine.connect() as conn:
        owners = set(conn.execute(text("SELECT DISTINCT lease_owner FROM executions")).scalars())
    engine.dispose()
    assert len(owners) == 1 and f":{worker.process.pid}:" in owners.pop()


def run_demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "beacon", "demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_follows_its_job_to_the_end_inline_and_with_a_worker(make_app, tmp_path, database_url):
    engine = Engine(tmp_path, database_url)
    try:
        providers = engine.three_providers()
        config = engine.config({r: p.base_url_openai for r, p in providers.items()})
        make_app(BEACON_CONFIG=str(config))
        env = clean_env(DATABASE_URL=database_url, BEACON_CONFIG=str(config))

        inline = run_demo(env, "--inline")

        assert inline.returncode == 0, inline.stdout + inline.stderr
        assert "ended completed" in inline.stdout
        job_id = inline.stdout.split("submitted job ", 1)[1].split(":", 1)[0]
        assert f"http://127.0.0.1:8000/jobs/{job_id}" in inline.stdout
        # One default model (the first), every region, every question of the bank.
        asked = sum(p.count() for p in providers.values())
        assert asked == 3 * len(load_config(config).questions)

        engine.worker(config)
        served = run_demo(env, "--base-url", "http://portal.example")
        assert served.returncode == 0, served.stdout + served.stderr
        assert "ended completed" in served.stdout
        assert "http://portal.example/jobs/" in served.stdout
        assert sum(p.count() for p in providers.values()) == 2 * asked
    finally:
        engine.close()
