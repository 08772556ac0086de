"""Two witnesses cosign a 2-worker PostgreSQL run of 10 jobs (SPEC section 9, "Witnesses"):
the portal's own `flask beacon witness serve`, run as its users run it, and the tests'
independent tlog-witness (tests/support/witness_server.py). Both gunicorn workers ask them
(serialized by the witness's lease); every cosignature the portal serves or keeps verifies under
the tests' own C2SP code; both witnesses end holding the whole log; and the verifier with
--witness-quorum 2 passes online and in the audit, and fails with an unknown witness key.
"""

from __future__ import annotations

import base64
import json
import time

import nacl.signing
import pytest
import requests
from sqlalchemy import create_engine, text

from portal.settings import database_url as sqlalchemy_url
from tests.support.apps import pg_test_url, spec_3x3
from tests.support.c2sp import COSIGNATURE_V1, ED25519, Checkpoint, Signer, Vkey, b64, cosignatures
from tests.support.c2sp import open_checkpoint as open_note
from tests.support.live_server import LiveServer, gunicorn_command, server_env, upgrade_database
from tests.support.portal_witness import flask_witness, portal_witness
from tests.support.verify_portal import metric, verify, wait_for_cosigned
from tests.support.witness_server import Witness, serving
from tests.support.workers import Engine, clean_env

pytestmark = pytest.mark.live

SEED = bytes(range(3, 35))
PUBLIC_KEY = bytes(nacl.signing.SigningKey(SEED).verify_key)
ORIGIN = "beacon.test/witnessed-pg"
LOG_KEY = Vkey(ORIGIN, ED25519, PUBLIC_KEY)
JOBS = 10
# Bounds, not timings: the machine may be shared and slow; a healthy run ends far sooner.
RUN_FOR_S = 540


@pytest.mark.postgres
@pytest.mark.slow
def test_two_witnesses_cosign_a_two_worker_run(tmp_path, database_url, signer):
    if pg_test_url() is None:
        pytest.skip("SKIPPED LOUDLY: two workers sharing one log need TEST_DATABASE_URL")
    portal_env = {
        "BEACON_SIGNING_KEY": base64.b64encode(SEED).decode(),
        "BEACON_LOG_ORIGIN": ORIGIN,
    }
    # The command an operator runs to give a witness this portal's log key.
    printed = flask_witness(clean_env(**portal_env), "log-vkey").strip()
    assert printed == LOG_KEY.text()
    independent = Witness("witness.test/independent", {ORIGIN: [LOG_KEY]})
    engine = Engine(tmp_path, database_url)
    with (
        serving(independent) as independent_url,
        portal_witness(tmp_path / "ours", "witness.test/ours", [Vkey.parse(printed)]) as ours,
    ):
        ours_url, ours_vkey = ours
        keys = [independent.vkey, ours_vkey]
        names = {k.name for k in keys}
        providers = engine.three_providers(latency_s=0.02)
        config = engine.config(
            {r: p.base_url_openai for r, p in providers.items()},
            job_timeout_s=RUN_FOR_S + 60,
            witnesses=[(independent_url, independent.vkey.text()), (ours_url, ours_vkey.text())],
        )
        env = server_env(
            {
                "DATABASE_URL": database_url,
                "BEACON_CONFIG": str(config),
                "BEACON_TRUSTED_KEYS": json.dumps([signer.trusted_entry()]),
                "BEACON_DISPATCHER": "1",
                **portal_env,
            },
            tmp_path,
        )
        upgrade_database(env, tmp_path / "upgrade.log")
        server = LiveServer(env, tmp_path / "gunicorn.log", command=gunicorn_command(workers=2))
        try:
            url = server.wait_ready(timeout=120)
            run_and_check(url, tmp_path, signer, keys, names, database_url)
            # Both witnesses hold the whole log, cosigned.
            assert independent.state[ORIGIN]["size"] == JOBS * 9
            store = create_engine(f"sqlite:///{tmp_path / 'ours' / 'witness.sqlite3'}")
            with store.connect() as conn:
                held = conn.execute(text("SELECT origin, size FROM witness_checkpoints")).all()
            store.dispose()
            assert [tuple(row) for row in held] == [(ORIGIN, JOBS * 9)]
        finally:
            server.stop()
            engine.close()


def run_and_check(url, tmp_path, signer, keys, names, database_url) -> None:
    http = requests.Session()
    first = None
    for i in range(JOBS):
        spec = spec_3x3(id=f"witnessed-{i}", questions=[f"Job {i}: what is {i} plus two?"])
        response = http.post(
            f"{url}/api/v1/jobs",
            data=signer.body(spec),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        first = first or response.json()["job"]["id"]

    # Sampled while the jobs run: every cosignature served verifies, on its own checkpoint.
    samples = []
    deadline = time.monotonic() + RUN_FOR_S
    while time.monotonic() < deadline:
        for query in ("", "?cosigned=1"):
            samples.append(http.get(f"{url}/api/v1/log/checkpoint{query}", timeout=10).json())
        if samples[-2]["size"] == JOBS * 9:
            break
        time.sleep(0.05)
    assert samples[-2]["size"] == JOBS * 9, f"the log stopped at {samples[-2]['size']}"
    done = wait_for_cosigned(url, JOBS * 9, names, timeout=120)
    seen_cosigned = set()
    for doc in [*samples, done]:
        checkpoint, _ = open_note(doc["note"], [LOG_KEY])
        found = cosignatures(doc["note"], keys)  # a failing line of a known key raises
        assert found == doc["witnessed"] and checkpoint.size == doc["size"]
        if found:
            seen_cosigned.add(checkpoint.size)
    assert len(seen_cosigned) > 1, "the witnesses cosigned too few sizes to show the log grew"

    # Every cosignature the portal keeps verifies on the checkpoint of its (size, root).
    db = create_engine(sqlalchemy_url(database_url, "."))
    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT witness, tree_size, root_hash, timestamp, line FROM cosignatures")
        ).all()
        owners = conn.execute(text("SELECT DISTINCT lease_owner FROM executions")).all()
    db.dispose()
    assert {row.witness for row in rows} == names
    for row in rows:
        body = Checkpoint(ORIGIN, row.tree_size, bytes(row.root_hash)).text()
        note = f"{body}\n{Signer(ORIGIN, nacl.signing.SigningKey(SEED)).sign_line(body)}"
        assert cosignatures(note + row.line, keys) == {row.witness: row.timestamp}, row
    assert len({owner.split(":")[1] for (owner,) in owners}) == 2, "both workers ran jobs"

    # The verifier: a quorum of both passes, online and in the audit; an unknown key fails.
    key = b64(PUBLIC_KEY)
    given = [arg for k in keys for arg in ("--witness", k.text())]
    job = http.get(f"{url}/api/v1/jobs/{first}", timeout=10).json()["job"]
    online = ["--portal", url, "--execution", str(job["executions"][0]["id"])]
    code, out = verify(tmp_path, *online, *given, "--witness-quorum", "2", key=key)
    assert code == 0 and "PASS witness quorum: 2 of 2" in out, out
    code, out = verify(
        tmp_path, "--audit", "--portal", url, *given, "--witness-quorum", "2", key=key
    )
    assert code == 0 and "PASS witness quorum: 2 of 2" in out, out
    unknown = Signer("witness.test/unknown").vkey(COSIGNATURE_V1).text()
    code, out = verify(
        tmp_path, *online, *given[:2], "--witness", unknown, "--witness-quorum", "2", key=key
    )
    assert code != 0 and "FAIL witness quorum: 1 of 2" in out, out
    for name in names:
        assert metric(url, "beacon_witness_cosigned_size", witness=name) == JOBS * 9
