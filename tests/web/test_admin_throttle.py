"""Issue 20, item 4: the admin token is behind the login form's throttle wherever it is
accepted, and that throttle is counted in the submission limit's storage, so two gunicorn
workers (and any number of instances) share one count per client address.

300 wrong `Authorization: Bearer` guesses on `POST /api/v1/jobs/<id>/cancel` took 0.7 s and all
answered 401. Here they go to the Procfile's web process (two gevent workers) with
BEACON_RATE_LIMIT_STORAGE on Redis (db 7, which no other test uses), over fresh connections so
both workers take some.
"""

from __future__ import annotations

import collections
import re
import threading

import pytest
import redis
import requests

from tests.support.apps import THREE_REGIONS
from tests.support.production import job_spec, release, start, submit, web_env

pytestmark = pytest.mark.live

REDIS_URL = "redis://127.0.0.1:6379/7"
TOKEN = "the-right-admin-token-for-this-test"
GUESSES = 300
# The login form's limit (docs/security.md): 10 attempts per minute per client address.
LOGIN_LIMIT = 10
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def redis_db7():
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip(f"!!! no Redis at {REDIS_URL}: the admin-throttle test DID NOT RUN")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def web(tmp_path, database_url, signer, redis_db7):
    config = tmp_path / "beacon.toml"
    config.write_text(
        THREE_REGIONS.read_text("utf-8") + '\n[intake]\nrate_limit = "1000 per minute"\n', "utf-8"
    )
    env = web_env(
        database_url,
        config,
        signer,
        BEACON_RATE_LIMIT_STORAGE=REDIS_URL,
        BEACON_DISPATCHER="0",
        BEACON_ADMIN_TOKEN=TOKEN,
    )
    done = release(env)
    assert done.returncode == 0, done.stdout + done.stderr
    server = start(env, tmp_path / "web.log")
    try:
        yield server
    finally:
        server.stop(timeout=30)


def cancel(url: str, job_id: str, token: str) -> requests.Response:
    return requests.post(
        f"{url}/api/v1/jobs/{job_id}/cancel",
        headers={"Authorization": f"Bearer {token}", "Connection": "close"},
        timeout=60,
    )


def test_admin_token_guesses_on_the_api_are_throttled_across_workers(web, signer, redis_db7):
    url = web.url
    job_id = submit(url, signer, job_spec("throttle"))
    # Keys the submission limit wrote: what is in db 7 beyond them is the admin throttle's.
    before = set(redis_db7.keys("*"))
    statuses: list[int] = []
    refusals: list[requests.Response] = []
    lock = threading.Lock()
    guesses = iter(range(GUESSES))

    def guess() -> None:
        for n in guesses:
            response = cancel(url, job_id, f"wrong-guess-{n}")
            with lock:
                statuses.append(response.status_code)
                if response.status_code == 429:
                    refusals.append(response)

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    counted = collections.Counter(statuses)
    assert len(statuses) == GUESSES, counted
    # Today: Counter({401: 300}).
    assert counted[401] <= LOGIN_LIMIT and counted[429] >= GUESSES - LOGIN_LIMIT, (
        f"{counted[429]} of {GUESSES} wrong admin tokens were throttled: {dict(counted)}"
    )
    # Exactly the limit got through: one count for both workers, not one per worker.
    assert counted[401] == LOGIN_LIMIT, dict(counted)
    assert all(r.json()["error"]["code"] == "rate_limited" for r in refusals)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refusals)

    # Once over the limit even the right token waits, as on the login form.
    assert cancel(url, job_id, TOKEN).status_code == 429
    assert requests.get(f"{url}/api/v1/jobs/{job_id}", timeout=30).json()["job"]["status"] == (
        "queued"
    )
    # The login form counts in the same throttle: it is over the limit too.
    form = requests.get(f"{url}/login", timeout=30)
    cookie = form.headers["Set-Cookie"].split(";", 1)[0]
    login = requests.post(
        f"{url}/login",
        data={"token": TOKEN, "csrf_token": CSRF.search(form.text).group(1)},
        headers={"Cookie": cookie},
        allow_redirects=False,
        timeout=30,
    )
    assert login.status_code == 429, login.status_code
    # The count lives in the shared storage, not in either worker's memory.
    assert set(redis_db7.keys("*")) - before, "no admin-throttle counter reached Redis"
