"""The submission limit shared through Redis: two gunicorn workers count as one. A Redis that
is down never refuses a submission: the limiter counts in memory and logs it."""

from __future__ import annotations

import logging
import threading

import pytest
import redis
import requests

from tests.support.apps import THREE_REGIONS
from tests.support.live_server import free_port
from tests.support.production import job_spec, release, start, web_env

pytestmark = pytest.mark.live

REDIS_URL = "redis://127.0.0.1:6379/5"


@pytest.fixture
def shared_redis():
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip(f"!!! no Redis at {REDIS_URL}: the shared-limit test DID NOT RUN")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def limited_config(tmp_path, rate: str):
    text = THREE_REGIONS.read_text("utf-8") + f'\n[intake]\nrate_limit = "{rate}"\n'
    path = tmp_path / "limited.toml"
    path.write_text(text, "utf-8")
    return path


def test_two_workers_sharing_redis_accept_exactly_five_of_24(
    tmp_path, database_url, signer, shared_redis
):
    config = limited_config(tmp_path, "5 per minute")
    env = web_env(
        database_url,
        config,
        signer,
        BEACON_RATE_LIMIT_STORAGE=REDIS_URL,
        BEACON_DISPATCHER="0",
    )
    assert release(env).returncode == 0
    web = start(env, tmp_path / "web.log")
    try:
        bodies = [signer.body(job_spec(f"limit-{i}")) for i in range(24)]
        statuses: list[int] = []
        lock = threading.Lock()
        barrier = threading.Barrier(len(bodies))

        def post(body: bytes) -> None:
            barrier.wait(timeout=30)
            response = requests.post(
                f"{web.url}/api/v1/jobs",
                data=body,
                headers={"Content-Type": "application/json", "Connection": "close"},
                timeout=60,
            )
            with lock:
                statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.json()["error"]["code"] == "rate_limited"
                assert int(response.headers["Retry-After"]) >= 1

        threads = [threading.Thread(target=post, args=(body,)) for body in bodies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        assert len(statuses) == 24, statuses
        assert statuses.count(202) == 5, sorted(statuses)
        assert statuses.count(429) == 19, sorted(statuses)
        listed = requests.get(f"{web.url}/api/v1/jobs?limit=50", timeout=10).json()["items"]
        assert len(listed) == 5
        assert shared_redis.keys("*"), "the counters did not go to Redis"
    finally:
        web.stop(timeout=30)


def test_redis_down_falls_back_to_memory_and_says_so(make_app, signer, caplog, tmp_path):
    down = f"redis://127.0.0.1:{free_port()}/5"
    config = limited_config(tmp_path, "2 per minute")
    client = make_app(BEACON_CONFIG=str(config), BEACON_RATE_LIMIT_STORAGE=down).test_client()
    with caplog.at_level(logging.WARNING, logger="portal.ratelimit"):
        codes = [
            client.post(
                "/api/v1/jobs",
                data=signer.body(job_spec(f"down-{i}")),
                content_type="application/json",
            ).status_code
            for i in range(3)
        ]
    assert codes == [202, 202, 429]
    assert "shared rate-limit storage is unreachable" in caplog.text
    assert "counting submissions in this process's memory" in caplog.text


def test_a_bad_storage_uri_stops_start_up_naming_it(make_app):
    from portal.config import ConfigError

    with pytest.raises(ConfigError, match="BEACON_RATE_LIMIT_STORAGE"):
        make_app(BEACON_RATE_LIMIT_STORAGE="nosuch://here")
