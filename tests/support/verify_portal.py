"""A real portal for the verifier's tests (gunicorn, a dispatcher, loopback providers, a known
signing key and log origin), the verifier run as a user runs it, and direct database access
for the tampering a dishonest operator would try."""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import nacl.signing
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select, text, update

from portal.models import Execution
from portal.provenance import merkle
from portal.settings import database_url as sqlalchemy_url
from tests.support.apps import ROOT
from tests.support.live_server import serving, wait_until
from tests.support.workers import Engine

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


def wait_for_receipt(url: str, execution: int, accept, timeout: float = 60) -> int:
    """Returns the log index of the execution's receipt once `accept(index)` holds."""

    def index():
        response = requests.get(f"{url}/api/v1/executions/{execution}/receipt", timeout=10)
        found = response.json().get("log_index") if response.status_code == 200 else None
        return found if found is not None and accept(found) else None

    return wait_until(index, timeout, interval=0.2, what=f"a receipt of execution {execution}")


def wait_for_size(url: str, size: int, timeout: float = 60) -> dict:
    """Returns the log's checkpoint once it has `size` entries."""

    def grown():
        doc = requests.get(f"{url}/api/v1/log/checkpoint", timeout=10).json()
        return doc if doc["size"] == size else None

    return wait_until(grown, timeout, interval=0.2, what=f"the log to hold {size} entries")


def wait_for_cosigned(url: str, size: int, names: set[str], timeout: float = 60) -> dict:
    """Returns `?cosigned=1`'s checkpoint once it is of `size` and cosigned by all of `names`."""

    def cosigned():
        doc = requests.get(f"{url}/api/v1/log/checkpoint?cosigned=1", timeout=10).json()
        return doc if doc["size"] == size and names <= set(doc["witnessed"]) else None

    return wait_until(cosigned, timeout, interval=0.2, what=f"{sorted(names)} to cosign {size}")


def metric(url: str, name: str, **labels: str) -> float:
    """Returns one sample of the portal's /metrics (0 when it is not there)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


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

    def shift_ends(self, job_id: str, delta: timedelta) -> None:
        """Moves the end times of a job's executions, through the model's own column types."""
        table = Execution.__table__
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(table.c.id, table.c.finished_at).where(table.c.job_id == job_id)
            ).all()
            for execution_id, finished_at in rows:
                conn.execute(
                    update(table)
                    .where(table.c.id == execution_id)
                    .values(finished_at=finished_at + delta)
                )

    def roll_back_head(self, size: int) -> None:
        """Deletes the log's entries from `size` on and moves its head back there, leaving the
        stored nodes: the next append then meets the log's unique constraint, as issue 24's
        rollback did."""
        self.run("DELETE FROM receipts WHERE log_index >= :n", n=size)
        rows = self.run("SELECT body FROM receipts ORDER BY log_index")
        tree = merkle.MemoryTree()
        for (body,) in rows:
            tree.append(merkle.leaf_hash(body.encode()))
        assert tree.size == size, f"the log holds {tree.size} entries below {size}"
        with self.engine.begin() as conn:
            conn.execute(
                text("UPDATE log_head SET size = :s, root_hash = :r"),
                {"s": tree.size, "r": tree.root()},
            )

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


@contextlib.contextmanager
def running_portal(tmp_path: Path, database_url: str, signer, witnesses=None):
    """Runs the portal with a dispatcher and loopback providers, asking `witnesses`
    ([(url, cosignature vkey text)]) to cosign; yields (server, database)."""
    engine = Engine(tmp_path, database_url)
    providers = engine.three_providers()
    base_urls = {r: p.base_url_openai for r, p in providers.items()}
    config = engine.config(base_urls, witnesses=witnesses)
    env = {
        "DATABASE_URL": database_url,
        "BEACON_CONFIG": str(config),
        "BEACON_SIGNING_KEY": base64.b64encode(SEED).decode(),
        "BEACON_LOG_ORIGIN": ORIGIN,
        "BEACON_TRUSTED_KEYS": json.dumps([signer.trusted_entry()]),
        "BEACON_DISPATCHER": "1",
    }
    database = Database(database_url)
    try:
        with serving(env, tmp_path / "live") as server:
            yield server, database
    finally:
        database.engine.dispose()
        engine.close()
