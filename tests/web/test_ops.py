"""/ready: 503 naming the pending migration before the release step, 200 after it, 503 while
PostgreSQL is down and 200 once it is back. The database is a private PostgreSQL cluster this
test starts and stops itself (never the machine's shared one)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.apps import build_app
from tests.support.live_server import free_port, wait_until
from tests.support.production import release
from tests.support.workers import clean_env

pytestmark = pytest.mark.live

PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class PrivateCluster:
    """A throwaway PostgreSQL cluster in a temp folder on a free port, run as `postgres`."""

    def __init__(self):
        if not PG_BINS or not (PG_BINS[0] / "initdb").exists():
            pytest.skip(
                "!!! no PostgreSQL server binaries under /usr/lib/postgresql: the /ready "
                "database-restart test DID NOT RUN"
            )
        self.bin = PG_BINS[0]
        self.folder = Path(tempfile.mkdtemp(prefix="beacon-ready-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        log = str(self.folder / "log")
        self.run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "-t", "60", "start"
        )

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def private_pg():
    cluster = PrivateCluster()
    try:
        cluster.start()
        wait_until(lambda: _accepts(cluster), 60, interval=0.3, what="the private cluster")
        yield cluster
    finally:
        cluster.remove()


def _accepts(cluster: PrivateCluster) -> bool:
    result = subprocess.run(
        [str(cluster.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(cluster.port)],
        capture_output=True,
        timeout=30,
    )
    return result.returncode == 0


@pytest.mark.postgres
def test_ready_follows_migrations_and_the_database(tmp_path, private_pg, signer):
    app = build_app(tmp_path, private_pg.url, signer, create_tables=False)
    client = app.test_client()

    response = client.get("/ready")
    assert response.status_code == 503, response.json
    assert response.json["migrations"].startswith("pending: 0001 (")
    assert "0001" in response.json["error"]["message"]
    assert "flask --app wsgi db upgrade" in response.json["error"]["message"]
    assert response.json["database"] == "ok" and response.json["configuration"] == "ok"
    # /health stays a liveness check: the process and its database answer.
    assert client.get("/health").status_code == 200

    done = release(clean_env(DATABASE_URL=private_pg.url))
    assert done.returncode == 0, done.stdout + done.stderr
    response = client.get("/ready")
    assert response.status_code == 200, response.json
    assert response.json == {
        "status": "ready",
        "configuration": "ok",
        "database": "ok",
        "migrations": "ok",
        "log": "ok",
    }

    private_pg.stop()
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json["database"] == "unreachable"
    assert "database does not answer" in response.json["error"]["message"]

    private_pg.start()
    wait_until(lambda: client.get("/ready").status_code == 200, 60, 0.5, "/ready to recover")
    assert client.get("/ready").json["status"] == "ready"
    with app.app_context():
        from portal.db import db

        db.engine.dispose()
