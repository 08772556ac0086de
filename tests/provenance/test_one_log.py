"""One log, never a fork: two gunicorn workers on PostgreSQL finishing 10 jobs at once.

Checkpoints sampled while the jobs run must only grow, every consecutive pair must have a
consistency proof that verifies (tests/support/rfc9162.py), and no size may ever have two roots.
"""

from __future__ import annotations

import base64
import json
import time

import nacl.signing
import pytest
import requests
import rfc8785
from sqlalchemy import create_engine, text

from portal.settings import database_url as sqlalchemy_url
from tests.support.apps import pg_test_url, spec_3x3
from tests.support.live_server import LiveServer, gunicorn_command, server_env, upgrade_database
from tests.support.rfc9162 import Reference, open_note, verify_consistency
from tests.support.workers import Engine

pytestmark = pytest.mark.live

SEED = bytes(range(2, 34))
PUBLIC_KEY = bytes(nacl.signing.SigningKey(SEED).verify_key)
JOBS = 10
# Bounds, not timings: the machine may be shared and slow; a healthy run ends far sooner.
SAMPLE_FOR_S = 540


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_append_to_one_log(tmp_path, database_url, signer):
    if pg_test_url() is None:
        pytest.skip("SKIPPED LOUDLY: two workers sharing one log need TEST_DATABASE_URL")
    engine = Engine(tmp_path, database_url)
    providers = engine.three_providers(latency_s=0.02)
    config = engine.config(
        {r: p.base_url_openai for r, p in providers.items()}, job_timeout_s=SAMPLE_FOR_S + 60
    )
    env = server_env(
        {
            "DATABASE_URL": database_url,
            "BEACON_CONFIG": str(config),
            "BEACON_SIGNING_KEY": base64.b64encode(SEED).decode(),
            "BEACON_LOG_ORIGIN": "beacon.test/pg",
            "BEACON_TRUSTED_KEYS": json.dumps([signer.trusted_entry()]),
            "BEACON_DISPATCHER": "1",
        },
        tmp_path,
    )
    upgrade_database(env, tmp_path / "upgrade.log")
    server = LiveServer(env, tmp_path / "gunicorn.log", command=gunicorn_command(workers=2))
    try:
        url = server.wait_ready(timeout=120)
        http = requests.Session()
        job_ids = []
        for i in range(JOBS):
            spec = spec_3x3(id=f"log-{i}", questions=[f"Job {i}: what is {i} plus one?"])
            response = http.post(
                f"{url}/api/v1/jobs",
                data=signer.body(spec),
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
            assert response.status_code == 202, response.text
            job_ids.append(response.json()["job"]["id"])

        samples = []
        deadline = time.monotonic() + SAMPLE_FOR_S
        while time.monotonic() < deadline:
            samples.append(http.get(f"{url}/api/v1/log/checkpoint", timeout=10).json())
            if samples[-1]["size"] == JOBS * 9:
                break
            time.sleep(0.02)
        assert samples[-1]["size"] == JOBS * 9, f"the log stopped at {samples[-1]['size']}"

        roots: dict[int, bytes] = {}
        for doc in samples:
            origin, size, root = open_note(doc["note"], PUBLIC_KEY)
            assert roots.setdefault(size, root) == root, f"two roots for size {size}"
        sizes = [doc["size"] for doc in samples]
        assert sizes == sorted(sizes), "a checkpoint shrank"
        distinct = sorted(roots)
        assert len(distinct) > 2, "the samples saw too little of the run"
        for old, new in zip(distinct, distinct[1:], strict=False):
            proof = http.get(
                f"{url}/api/v1/log/proof/consistency", params={"old": old, "new": new}, timeout=10
            ).json()
            hashes = [base64.b64decode(h) for h in proof["hashes"]]
            assert verify_consistency(old, new, roots[old], roots[new], hashes), (old, new)

        items, cursor = [], "0"
        while cursor is not None:
            page = http.get(
                f"{url}/api/v1/log/entries", params={"cursor": cursor, "limit": 50}, timeout=10
            ).json()
            items += page["items"]
            cursor = page["next"]
        assert [e["index"] for e in items] == list(range(JOBS * 9))
        executions = [e["receipt"]["execution_id"] for e in items]
        assert len(set(executions)) == JOBS * 9, "an execution got two receipts"
        leaves = [rfc8785.dumps(e["receipt"]) for e in items]
        assert Reference(leaves).mth(0, len(leaves)) == roots[JOBS * 9]

        db = create_engine(sqlalchemy_url(database_url, "."))
        with db.connect() as conn:
            owners = conn.execute(text("SELECT DISTINCT lease_owner FROM executions")).all()
        db.dispose()
        pids = {owner.split(":")[1] for (owner,) in owners}
        assert len(pids) == 2, f"both workers should have ended executions, saw {pids}"
    finally:
        server.stop()
        engine.close()
