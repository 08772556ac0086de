"""Scale out on one PostgreSQL database: two portal instances and two engine workers.

Real processes throughout: two gunicorn masters started from the Procfile's `web` line on two
ports (two gevent workers each, each running a dispatcher), and two `flask --app wsgi beacon
worker` processes (the Procfile's `worker` line), all on one database and one signing key,
against loopback providers (one per region) that record every call and the calls in flight.
Twenty jobs are submitted through both instances' APIs; two regions carry a `max_concurrency`
cap. What the providers and both APIs say afterwards proves the scale-out guarantees:
each answer asked exactly once, every job completed, the caps held, one transparency log.
"""

from __future__ import annotations

import base64
import os
import time
from concurrent.futures import ThreadPoolExecutor

import nacl.signing
import pytest
import requests
import rfc8785
from sqlalchemy import create_engine, text

from portal.settings import database_url as sqlalchemy_url
from tests.support import production as prod
from tests.support.live_server import start_web
from tests.support.rfc9162 import Reference, open_note, verify_consistency
from tests.support.workers import Engine

pytestmark = [pytest.mark.slow, pytest.mark.live, pytest.mark.postgres]

JOBS = 20
EXECUTIONS = JOBS * 9  # 3 models x 3 regions per job
ANSWERS = JOBS * 18  # and 2 questions
CAPS = {"us-east": 2, "eu-west": 3}  # asia-pacific has no cap
# Slow enough that calls overlap (the caps are contested), fast enough to keep the test short.
LATENCY_S = 0.05
SEED = os.urandom(32)
PUBLIC_KEY = bytes(nacl.signing.SigningKey(SEED).verify_key)
ORIGIN = "beacon.test/scale-out"
# Bounds, not timings: the machine may be shared and slow; a healthy run ends far sooner.
RUN_TIMEOUT_S = 300


def read_checkpoint(http: requests.Session, url: str) -> tuple[int, bytes]:
    """Returns the (size, root) of an instance's checkpoint, after checking its signed note."""
    doc = http.get(f"{url}/api/v1/log/checkpoint", timeout=10).json()
    origin, size, root = open_note(doc["note"], PUBLIC_KEY)
    assert (origin, size) == (ORIGIN, doc["size"]), doc
    return size, root


def log_entries(http: requests.Session, url: str) -> list[dict]:
    """Returns every log entry an instance serves, page by page."""
    items, cursor = [], "0"
    while cursor is not None:
        page = http.get(
            f"{url}/api/v1/log/entries", params={"cursor": cursor, "limit": 50}, timeout=10
        ).json()
        items += page["items"]
        cursor = page["next"]
    return items


def lease_owner_pids(database_url: str) -> set[int]:
    """Returns the pids of the processes that ran the executions (their last lease)."""
    engine = create_engine(sqlalchemy_url(database_url, "."))
    with engine.connect() as conn:
        owners = conn.execute(text("SELECT DISTINCT lease_owner FROM executions")).scalars()
        pids = {int(owner.split(":")[1]) for owner in owners}
    engine.dispose()
    return pids


def test_two_instances_and_two_workers_run_twenty_jobs_once_in_one_log(
    tmp_path, database_url, signer
):
    database_url = prod.require_postgres(database_url)
    engine = Engine(tmp_path, database_url)
    webs = []
    try:
        providers = engine.three_providers(latency_s=LATENCY_S)
        config = prod.config(
            tmp_path, {r: p.base_url_openai for r, p in providers.items()}, region_caps=CAPS
        )
        # One deployment: every process signs with the same key into the same log.
        shared = {
            "BEACON_SIGNING_KEY": base64.b64encode(SEED).decode(),
            "BEACON_LOG_ORIGIN": ORIGIN,
        }
        env = prod.web_env(database_url, config, signer, **shared)
        release = prod.release(env)
        assert release.returncode == 0, release.stdout + release.stderr
        # Both instances boot while the workers start (each start waits only for its own).
        webs = [start_web(env, tmp_path / f"web-{i}.log") for i in (1, 2)]
        workers = [engine.worker(config, BEACON_SEMANTIC="0", **shared) for _ in (1, 2)]
        urls = [web.wait_ready(timeout=60, interval=0.2) for web in webs]
        assert urls[0] != urls[1]

        # Submitted concurrently, alternately through each instance's API.
        tags = [f"scale-{i}" for i in range(JOBS)]
        with ThreadPoolExecutor(max_workers=4) as submitting:
            job_ids = list(
                submitting.map(
                    lambda i: prod.submit(urls[i % 2], signer, prod.job_spec(tags[i])), range(JOBS)
                )
            )

        # Checkpoints read while the jobs run, alternately through each instance.
        http = requests.Session()
        samples: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            samples.append(read_checkpoint(http, urls[len(samples) % 2]))
            if samples[-1][0] == EXECUTIONS:
                break
            time.sleep(0.05)
        assert samples[-1][0] == EXECUTIONS, f"the log stopped at {samples[-1][0]}"
        statuses = prod.wait_all_ended(urls[1], job_ids, timeout=RUN_TIMEOUT_S)

        # Every job completed with all its answers, as both instances tell it.
        assert set(statuses.values()) == {"completed"}, statuses
        for i, job_id in enumerate(job_ids):
            job = http.get(f"{urls[(i + 1) % 2]}/api/v1/jobs/{job_id}", timeout=10).json()["job"]
            answers = [a for e in job["executions"] for a in e["answers"]]
            assert len(job["executions"]) == 9 and len(answers) == 18, job
            assert {a["status"] for a in answers} == {"completed"}, job
            assert all(a["output"] and a["attempts"] == 1 for a in answers), job

        # Each answer asked exactly once, by the providers' own records.
        counts = prod.asked_counts(providers)
        assert set(counts) == prod.expected_answers(tags)
        assert sorted(set(counts.values())) == [1], {k: n for k, n in counts.items() if n != 1}
        assert sum(p.count() for p in providers.values()) == ANSWERS

        # The caps held across six dispatching processes, and were reached: they were contested.
        in_flight = {region: p.stats()["max_in_flight"] for region, p in providers.items()}
        assert {r: in_flight[r] for r in CAPS} == CAPS, in_flight
        assert in_flight["asia-pacific"] > max(CAPS.values()), in_flight

        # One log: sizes only grow, one root per size, each step provably an extension.
        roots: dict[int, bytes] = {}
        for size, root in samples:
            assert roots.setdefault(size, root) == root, f"two roots for size {size}"
        sizes = [size for size, _ in samples]
        assert sizes == sorted(sizes), "a checkpoint shrank"
        distinct = sorted(roots)
        assert len(distinct) > 2, "the samples saw too little of the run"
        for step, (old, new) in enumerate(zip(distinct, distinct[1:], strict=False)):
            proof = http.get(
                f"{urls[step % 2]}/api/v1/log/proof/consistency",
                params={"old": old, "new": new},
                timeout=10,
            ).json()
            hashes = [base64.b64decode(h) for h in proof["hashes"]]
            assert verify_consistency(old, new, roots[old], roots[new], hashes), (old, new)

        # Both instances serve the same entries: contiguous, one receipt per execution of the
        # twenty jobs, and together the tree whose root both checkpoints sign.
        entries = [log_entries(http, url) for url in urls]
        assert entries[0] == entries[1]
        assert [e["index"] for e in entries[0]] == list(range(EXECUTIONS))
        receipted = [e["receipt"]["execution_id"] for e in entries[0]]
        ran = {
            e["id"]
            for job_id in job_ids
            for e in http.get(f"{urls[0]}/api/v1/jobs/{job_id}", timeout=10).json()["job"][
                "executions"
            ]
        }
        assert len(receipted) == len(set(receipted)) == EXECUTIONS, "an execution got two receipts"
        assert set(receipted) == ran
        leaves = [rfc8785.dumps(e["receipt"]) for e in entries[0]]
        key = nacl.signing.VerifyKey(PUBLIC_KEY)
        for leaf, entry in zip(leaves, entries[0], strict=True):
            key.verify(leaf, base64.b64decode(entry["signature"]))  # raises when forged
        final = [read_checkpoint(http, url) for url in urls]
        assert final[0] == final[1] == (EXECUTIONS, Reference(leaves).mth(0, EXECUTIONS))

        # The work was spread: both `worker` processes and the instances' workers ran some.
        pids = lease_owner_pids(database_url)
        assert {w.process.pid for w in workers} < pids, pids
    finally:
        for web in webs:
            web.stop(timeout=30)
        engine.close()
