"""scripts/verify_receipt.py against a real portal (gunicorn, an engine worker process,
loopback providers): it passes a genuine receipt with an older checkpoint, and fails on every
tampering the issue names. The script runs in an isolated interpreter (`python -I`) from a
folder outside the repository, so it cannot lean on the portal's code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nacl.signing
import pytest
import requests
from sqlalchemy import create_engine, text

from portal import merkle
from portal.settings import database_url as sqlalchemy_url

from .conftest import ROOT, spec_3x3
from .support.live_server import serving, wait_until
from .support.workers import Engine

SCRIPT = ROOT / "scripts" / "verify_receipt.py"
SEED = bytes(range(1, 33))
PUBLIC_KEY = base64.b64encode(bytes(nacl.signing.SigningKey(SEED).verify_key)).decode()
ORIGIN = "beacon.test/verify"


def verify(tmp_path: Path, *args: str, key: str = PUBLIC_KEY) -> tuple[int, str]:
    """Runs the verifier alone and returns (exit code, output)."""
    result = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), "--public-key", key, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return result.returncode, result.stdout + result.stderr


def submit_and_wait(url: str, signer, spec: dict) -> dict:
    response = requests.post(
        f"{url}/api/v1/jobs",
        data=signer.body(spec),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job"]["id"]

    def ended():
        job = requests.get(f"{url}/api/v1/jobs/{job_id}", timeout=10).json()["job"]
        return job if job["finished_at"] else None

    return wait_until(ended, 300, interval=0.2, what=f"job {job_id} to end")


class Database:
    """Direct access to the portal's database: what an insider could change."""

    def __init__(self, url: str):
        self.engine = create_engine(sqlalchemy_url(url, "."))

    def run(self, sql: str, **params):
        with self.engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return result.fetchall() if result.returns_rows else None

    def rebuild_log(self) -> None:
        """Recomputes the stored tree from the receipts left, as a cover-up would."""
        rows = self.run("SELECT body FROM receipts ORDER BY log_index")
        tree = merkle.MemoryTree()
        for (body,) in rows:
            tree.append(merkle.leaf_hash(body.encode()))
        with self.engine.begin() as conn:
            conn.execute(text("DELETE FROM log_nodes"))
            for (level, idx), value in tree.nodes.items():
                conn.execute(
                    text("INSERT INTO log_nodes (level, idx, hash) VALUES (:l, :i, :h)"),
                    {"l": level, "i": idx, "h": value},
                )
            conn.execute(
                text("UPDATE log_head SET size = :s, root_hash = :r"),
                {"s": tree.size, "r": tree.root()},
            )


@pytest.fixture
def portal(tmp_path, database_url, signer):
    """The web process without an engine, and the engine in a worker process of its own.

    The test stops the worker before it tampers with the database: a dispatcher's catch-up
    sweep re-issues the receipt of an ended execution that has none, and would otherwise undo
    a deleted receipt row before the verifier looks (it did, now and then, on PostgreSQL).
    """
    engine = Engine(tmp_path, database_url)
    providers = engine.three_providers()
    config = engine.config({r: p.base_url_openai for r, p in providers.items()})
    keys = {
        "BEACON_SIGNING_KEY": base64.b64encode(SEED).decode(),
        "BEACON_LOG_ORIGIN": ORIGIN,
    }
    env = {
        "DATABASE_URL": database_url,
        "BEACON_CONFIG": str(config),
        "BEACON_TRUSTED_KEYS": json.dumps([signer.trusted_entry()]),
        "BEACON_DISPATCHER": "0",
        **keys,
    }
    database = Database(database_url)
    try:
        with serving(env, tmp_path / "live") as server:
            worker = engine.worker(config, **keys)
            yield server, database, worker
    finally:
        database.engine.dispose()
        engine.close()


def test_verifier_passes_genuine_and_fails_every_tampering(portal, tmp_path, signer):
    server, database, worker = portal
    url = server.url
    first = submit_and_wait(url, signer, spec_3x3(questions=["identity_basic", "math_basic"]))
    execution = first["executions"][0]["id"]
    online = ["--portal", url, "--execution", str(execution)]

    code, out = verify(tmp_path, *online, "--save-checkpoint", "old.json")
    assert code == 0, out
    assert "PASS receipt signature" in out and "PASS inclusion" in out
    assert json.loads((tmp_path / "old.json").read_text())["size"] == 9
    evidence = requests.get(f"{url}/api/v1/jobs/{first['id']}/evidence", timeout=10).json()
    (tmp_path / "evidence.json").write_text(json.dumps(evidence))

    submit_and_wait(url, signer, spec_3x3(questions=["geography_basic"]))
    code, out = verify(tmp_path, *online, "--old-checkpoint", "old.json")
    assert code == 0, out
    assert "PASS consistency: the tree of 18 extends the old tree of 9" in out
    # Nothing runs jobs or sweeps receipts from here on: what the verifier sees is what the
    # tampering below left.
    worker.stop()

    # The public key given is not the portal's.
    other = base64.b64encode(bytes(nacl.signing.SigningKey(bytes(32)).verify_key)).decode()
    code, out = verify(tmp_path, *online, key=other)
    assert code != 0 and "FAIL receipt signature" in out and "FAIL checkpoint signature" in out

    # The old checkpoint was forged: another root under the old signature, or another key.
    old = json.loads((tmp_path / "old.json").read_text())
    fake_root = base64.b64encode(b"\x07" * 32).decode()
    forged = dict(old, root_hash=fake_root, note=old["note"].replace(old["root_hash"], fake_root))
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    code, out = verify(tmp_path, *online, "--old-checkpoint", "forged.json")
    assert code != 0 and "FAIL old checkpoint signature" in out
    body = f"{ORIGIN}\n9\n{fake_root}\n"
    key = nacl.signing.SigningKey(bytes(32))
    stamp = merkle_key_stamp(ORIGIN, key, body)
    resigned = dict(forged, note=f"{body}\n\u2014 {ORIGIN} {stamp}\n")
    (tmp_path / "resigned.json").write_text(json.dumps(resigned))
    code, out = verify(tmp_path, *online, "--old-checkpoint", "resigned.json")
    assert code != 0 and "FAIL old checkpoint signature" in out

    # An answer's output was edited in the database.
    answer = first["executions"][0]["answers"][0]
    database.run("UPDATE answers SET output = :o WHERE id = :i", o="edited", i=answer["id"])
    code, out = verify(tmp_path, *online)
    assert code != 0 and f"FAIL output of answer {answer['id']}" in out
    database.run("UPDATE answers SET output = :o WHERE id = :i", o=answer["output"], i=answer["id"])
    assert verify(tmp_path, *online)[0] == 0

    # Two log rows were swapped.
    second = first["executions"][1]["id"]
    rows = dict(database.run("SELECT execution_id, log_index FROM receipts"))
    swap = "UPDATE receipts SET log_index = :n WHERE execution_id = :e"
    database.run(swap, n=-1, e=execution)
    database.run(swap, n=rows[execution], e=second)
    database.run(swap, n=rows[second], e=execution)
    code, out = verify(tmp_path, *online)
    assert code != 0 and "FAIL inclusion" in out, out
    database.run(swap, n=-1, e=execution)
    database.run(swap, n=rows[second], e=second)
    database.run(swap, n=rows[execution], e=execution)
    assert verify(tmp_path, *online)[0] == 0

    # A log row was deleted: the receipt is gone; covering it up breaks consistency.
    removed = rows[execution]
    database.run("DELETE FROM receipts WHERE execution_id = :e", e=execution)
    code, out = verify(tmp_path, *online)
    assert code != 0 and "FAIL fetch" in out
    # Shifted through negative numbers: log_index stays unique after every row's update.
    database.run("UPDATE receipts SET log_index = -log_index WHERE log_index > :k", k=removed)
    database.run("UPDATE receipts SET log_index = -log_index - 1 WHERE log_index < 0")
    database.rebuild_log()
    later = ["--portal", url, "--execution", str(first["executions"][-1]["id"])]
    code, out = verify(tmp_path, *later, "--old-checkpoint", "old.json")
    assert code != 0 and "FAIL consistency" in out

    # The evidence file verifies offline once the portal is stopped.
    server.stop()
    code, out = verify(tmp_path, "--evidence", "evidence.json")
    assert code == 0, out
    assert out.count("PASS inclusion") == 9 and "PASS spec hash" in out
    evidence["executions"][0]["answers"][0]["output"] = "edited"
    (tmp_path / "edited.json").write_text(json.dumps(evidence))
    code, out = verify(tmp_path, "--evidence", "edited.json")
    assert code != 0 and "FAIL output of answer" in out


def merkle_key_stamp(origin: str, key: nacl.signing.SigningKey, body: str) -> str:
    """Returns the base64 of key hash || signature for a signed-note line."""
    key_hash = hashlib.sha256(origin.encode() + b"\n\x01" + bytes(key.verify_key)).digest()[:4]
    return base64.b64encode(key_hash + key.sign(body.encode()).signature).decode()
