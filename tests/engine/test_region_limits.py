"""A region's cap and rate limit hold across worker processes, not just inside each one.

Real processes on one database (SQLite, or PostgreSQL with TEST_DATABASE_URL): two gunicorn
workers started from the Procfile's `web` line, or two `flask beacon worker` processes, against
loopback providers that record every call. The rate-limit counters live in Redis
(TEST_REDIS_URL, default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest
import requests
from sqlalchemy import select

from portal.config import ConfigError, load_config
from portal.db import db
from portal.models import Execution
from portal.status import JOB_ENDED
from tests.support.apps import spec_3x3
from tests.support.live_server import ROOT, procfile, shell_env, start_web
from tests.support.loopback import default_responder
from tests.support.workers import (
    PROVIDER_MODEL,
    REGIONS,
    Engine,
    clean_env,
    submit,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.live

ENDED = tuple(JOB_ENDED)
CAPS = {"us-east": 1, "eu-west": 2}
# Pool slots per worker process (max_concurrency) in the two-worker test.
POOL = 4


def redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"


@pytest.fixture
def engine(tmp_path, database_url):
    engine = Engine(tmp_path, database_url)
    yield engine
    engine.close()


def distinct_questions(i: int, n: int = 3) -> list[str]:
    return [f"Job {i}, question {q}: what is {q} plus {i}?" for q in range(n)]


def assert_each_asked_once(jobs: list[dict], providers: dict) -> None:
    """Every answer completed on its first attempt, and its provider saw its prompt once."""
    for job in jobs:
        problems = [
            (e["region"], a["status"], a["attempts"], a["error"])
            for e in job["executions"]
            for a in e["answers"]
            if a["status"] != "completed"
        ]
        assert job["status"] == "completed", problems
        for execution in job["executions"]:
            served = PROVIDER_MODEL[execution["model_id"]]
            provider = providers[execution["region"]]
            for answer in execution["answers"]:
                assert answer["status"] == "completed" and answer["attempts"] == 1, answer
                assert provider.count(model=served, prompt=answer["prompt"]) == 1


def lease_owners(app, region: str) -> set[str]:
    with app.app_context():
        owners = set(
            db.session.scalars(select(Execution.lease_owner).where(Execution.region == region))
        )
        db.session.rollback()
    return owners


def gated(gate: threading.Event, label: str):
    """A responder that holds every call until `gate` is set, then answers as the loopback does."""
    answer = default_responder(label)

    def respond(model: str, prompt: str) -> str:
        gate.wait(timeout=300)
        return answer(model, prompt)

    return respond


def test_region_caps_hold_across_two_gunicorn_workers(engine, make_app, signer, database_url):
    """Two workers both try to claim a capped region while its cap is taken, by construction.

    Every provider holds its calls until the test lets them go. The capped regions' jobs come
    first and fill their caps; then uncapped work, held too, more than one worker's free pool
    slots can take, so both workers must claim some of it. Letting that work end frees a pool
    slot in each worker, and each then claims again while capped work is queued: the cap must
    refuse both, whichever worker holds the capped calls. Nothing depends on which worker
    claims first or how fast the machine is.
    """
    gates = {region: threading.Event() for region in REGIONS}
    providers = {
        region: engine.provider(region, 0.05, responder=gated(gates[region], region))
        for region in REGIONS
    }
    config = engine.config(
        {r: p.base_url_openai for r, p in providers.items()},
        max_concurrency=POOL,
        region_caps=CAPS,
        # Calls are held for as long as the test needs: no timeout, retry or lost lease meanwhile.
        call_timeout_s=300,
        job_timeout_s=900,
        lease_s=10,
    )
    app = make_app(create_tables=False, BEACON_CONFIG=str(config))
    env = clean_env(
        DATABASE_URL=database_url,
        BEACON_CONFIG=str(config),
        BEACON_TRUSTED_KEYS=json.dumps([signer.trusted_entry()]),
        WEB_CONCURRENCY="2",
        # A worker computes each ended job's comparison in its own event loop; the embedding
        # model would stall it for seconds of CPU that this test does not look at.
        BEACON_SEMANTIC="0",
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
    web = start_web(env, engine.tmp_path / "web.log")
    capped_regions = list(CAPS)
    try:
        url = web.wait_ready(timeout=60, interval=0.2)
        session = requests.Session()

        def post(job_id: str, regions: list[str], i: int) -> str:
            spec = spec_3x3(
                id=job_id, constraints={"regions": regions}, questions=distinct_questions(i)
            )
            response = session.post(
                f"{url}/api/v1/jobs",
                data=signer.body(spec),
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            assert response.status_code == 202, response.text
            return job_id

        def in_flight() -> dict[str, int]:
            return {region: providers[region].in_flight for region in REGIONS}

        # 1. Capped work: 9 executions per capped region, its calls held at the provider.
        capped = [post(f"capped-{i}", capped_regions, i) for i in range(3)]
        wait_until(
            lambda: all(providers[r].in_flight >= cap for r, cap in CAPS.items()),
            60,
            0.1,
            f"the capped regions to fill their caps {CAPS}",
        )
        # 2. Uncapped work, held too: 6 executions for the 2 x 4 - 3 = 5 free slots, at most 4
        # of them in one worker, so each worker claims some.
        uncapped = [post(f"uncapped-{i}", ["asia-pacific"], 10 + i) for i in range(2)]
        wait_until(
            lambda: (
                sum(in_flight().values()) == 2 * POOL
                and len(lease_owners(app, "asia-pacific") - {None}) == 2
            ),
            60,
            0.1,
            "both workers to fill their pools, each with some uncapped executions",
        )
        held = in_flight()
        # 3. Uncapped work ends: each worker frees a slot and claims again, capped work queued.
        gates["asia-pacific"].set()
        wait_until(
            lambda: all(ended(session, url, job_id) for job_id in uncapped),
            120,
            0.2,
            "the uncapped jobs to end",
        )
        after_claims = in_flight()
        queued_capped = sum(
            e["status"] == "queued"
            for job_id in capped
            for e in ended(session, url, job_id, raw=True)["executions"]
        )
        # 4. Everything goes.
        for gate in gates.values():
            gate.set()
        jobs = [
            wait_until(lambda j=j: ended(session, url, j), 600, 0.5, f"job {j} to end")
            for j in capped + uncapped
        ]
    finally:
        for gate in gates.values():
            gate.set()
        web.stop(timeout=30)
        log = web.log()
    for region, cap in CAPS.items():
        # While both workers had free slots and capped work waited, the caps held.
        assert held[region] == cap and after_claims[region] == cap, (held, after_claims)
        assert providers[region].max_in_flight <= cap, (region, providers[region].max_in_flight)
    assert held["asia-pacific"] == 2 * POOL - sum(CAPS.values()), (held, log)
    # 18 capped executions, as many running as the caps allow, the rest left in the queue.
    assert queued_capped == 18 - sum(CAPS.values()), queued_capped
    assert_each_asked_once(jobs, providers)
    assert sum(p.count() for p in providers.values()) == 3 * 2 * 9 + 2 * 9
    # Each worker's pool alone would allow the uncapped region more than the caps allow.
    assert providers["asia-pacific"].max_in_flight > max(CAPS.values())


def ended(session, url: str, job_id: str, raw: bool = False):
    """The job once it has ended (or, with `raw`, as it is now); None while it runs."""
    job = session.get(f"{url}/api/v1/jobs/{job_id}", timeout=30).json()["job"]
    if raw:
        return job
    return job if job["status"] in ENDED and job["finished_at"] else None


def most_in_any_window(times: list[float], window_s: float) -> int:
    """Returns the most calls that started within any span of `window_s` seconds."""
    ordered = sorted(times)
    most = 0
    for i, start in enumerate(ordered):
        most = max(most, sum(1 for t in ordered[i:] if t < start + window_s))
    return most


def clear_region_counters(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match="*beacon-region-calls*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def test_region_rate_limit_is_shared_by_two_worker_processes(engine, make_app, signer):
    storage = redis_url()
    clear_region_counters(storage)
    providers = engine.three_providers()
    limit, period_s = 4, 3.0
    config = engine.config(
        {r: p.base_url_openai for r, p in providers.items()},
        max_concurrency=3,
        region_rates={"us-east": f"{limit} per {period_s:g} seconds"},
    )
    app = make_app(BEACON_CONFIG=str(config))
    client = app.test_client()
    for _ in range(2):
        engine.worker(config, BEACON_RATE_LIMIT_STORAGE=storage, BEACON_SEMANTIC="0")

    job_ids = []
    for i in range(2):
        spec = spec_3x3(
            id=f"rated-{i}",
            constraints={"regions": ["us-east"]},
            questions=distinct_questions(i, 2),
        )
        job_ids.append(submit(client, signer, spec))
    jobs = [wait_for_job(client, job_id, timeout=90, engine=engine) for job_id in job_ids]

    assert_each_asked_once(jobs, providers)
    calls = [c["started"] for c in providers["us-east"].calls]
    assert len(calls) == 2 * 3 * 2
    # A slot is taken on the portal's side right before the call; the provider sees the call
    # later by the time the worker takes to send it (up to a few hundred milliseconds on a
    # loaded machine), so the window looked at is the period less that margin.
    assert most_in_any_window(calls, period_s - 0.5) <= limit, sorted(calls)
    assert len(lease_owners(app, "us-east")) == 2, engine.logs()


def test_region_rate_limit_is_read_and_checked(tmp_path):
    base = '[regions.r]\nprovider = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
    good = tmp_path / "good.toml"
    good.write_text(base + 'rate_limit = "60 per minute"\n', "utf-8")
    assert load_config(good).regions["r"].rate_limit == "60 per minute"
    bad = tmp_path / "bad.toml"
    bad.write_text(base + 'rate_limit = "often"\n', "utf-8")
    with pytest.raises(ConfigError, match="regions.r.rate_limit"):
        load_config(bad)


def test_region_keys_are_stable_and_distinct():
    from portal.engine.pool import region_lock_key

    keys = {region_lock_key(region) for region in REGIONS}
    assert len(keys) == len(REGIONS)
    assert region_lock_key("us-east") == region_lock_key("us-east")
    assert all(-(2**63) <= key < 2**63 for key in keys)


def test_a_call_never_waits_for_its_rate_slot_past_the_deadline(engine, make_app, signer):
    providers = engine.three_providers()
    config = engine.config(
        {r: p.base_url_openai for r, p in providers.items()},
        region_rates={"us-east": "1 per minute"},
    )
    app = make_app(BEACON_CONFIG=str(config))
    client = app.test_client()
    spec = spec_3x3(
        id="rated-deadline",
        constraints={"regions": ["us-east"], "timeout": 20 * 10**9},
        metadata={"models": ["llama3.2-1b"]},
        questions=distinct_questions(0, 2),
    )
    job_id = submit(client, signer, spec)
    engine.worker(config)

    # Ends long before the minute the second call would have had to wait for its slot.
    job = wait_for_job(client, job_id, timeout=30, engine=engine)

    first, second = job["executions"][0]["answers"]
    assert first["status"] == "completed" and first["attempts"] == 1
    assert second["status"] == "failed" and second["attempts"] == 0
    assert second["error"].startswith("job deadline passed"), second["error"]
    assert "rate_limit" in second["error"]
    assert providers["us-east"].count() == 1
