"""The portal's processes as a deployment starts them, for scripts/bench.py: a fresh database,
the Procfile's `release` line, then its `web` line (gunicorn) and, for the scale-out section,
its `worker` line; and a client that submits a signed job and watches it through the API."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from bench_common import ROOT, children_of, group_pids

from portal.intake import signing
from portal.settings import ENV_NAMES
from tests.support.workers import clean_env

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 60.0


class Databases:
    """Hands out a fresh, empty database per server: a SQLite file or a PostgreSQL database."""

    def __init__(self, kind: str, workdir: Path, postgres_url: str):
        self.kind = kind
        self.workdir = workdir
        self.postgres_url = postgres_url
        self.pg_name = f"beacon_bench_{os.getpid()}"
        self.count = 0

    def fresh(self) -> str:
        """Returns the URL of a new empty database."""
        self.count += 1
        if self.kind == "sqlite":
            return f"sqlite:///{self.workdir / f'bench-{self.count}.sqlite3'}"
        self._drop_pg()
        self._admin(f'CREATE DATABASE "{self.pg_name}"')
        base = self.postgres_url.rsplit("/", 1)[0]
        return f"{base}/{self.pg_name}"

    def close(self) -> None:
        """Drops the PostgreSQL database this run created."""
        if self.kind == "postgres":
            self._drop_pg()

    def _drop_pg(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.postgres_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)


def procfile_argv(name: str, port: int | None = None, config: Path | None = None) -> list[str]:
    """Returns a Procfile line as argv: $PORT substituted, bound to loopback, venv binaries,
    and `-c <config>` instead of the Procfile's gunicorn configuration when one is given."""
    lines = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text("utf-8").splitlines() if line
    )
    if name not in lines:
        raise SystemExit(f"the Procfile has no {name!r} line")
    command = lines[name].strip()
    if port is not None:
        command = command.replace("${PORT:-8000}", str(port)).replace("$PORT", str(port))
        # The benchmark listens on loopback only; everything else is the Procfile's line.
        command = command.replace("0.0.0.0:", "127.0.0.1:")
    argv = shlex.split(command)
    if config is not None and "-c" in argv:
        argv[argv.index("-c") + 1] = str(config)
    if (BIN / argv[0]).exists():
        argv[0] = str(BIN / argv[0])
    return argv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM (a graceful stop), then SIGKILL to the process group if it lingers."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class Server:
    """gunicorn as the Procfile starts it, on a fresh database, with `workers` processes.

    `extra_groups` are the process groups of `worker` processes started beside it (scale-out):
    they share the database, the signing key and the trusted keys.
    """

    def __init__(
        self,
        workdir: Path,
        database: str,
        config: Path | None,
        workers: int = 1,
        gunicorn_config: Path | None = None,
        **env: str,
    ):
        self.workdir = workdir
        self.database = database
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seed = signing.generate_seed()
        self.gunicorn_config = gunicorn_config
        self.workers = workers
        public = signing.public_key_b64(self.seed)
        # The harness's clean environment: no Beacon setting of this shell leaks in.
        self.env = clean_env(
            DATABASE_URL=database,
            BEACON_CONFIG=str(config) if config else "",
            SECRET_KEY="bench-secret",
            BEACON_SIGNING_KEY=base64.b64encode(signing.generate_seed()).decode(),
            BEACON_TRUSTED_KEYS=json.dumps(
                [{"kid": "bench", "public_key": public, "status": "active"}]
            ),
            WEB_CONCURRENCY=str(workers),
            PORT=str(self.port),
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
        )
        self.env.update(env)
        self.log_path = workdir / f"gunicorn-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.extra: list[subprocess.Popen] = []
        self.session = requests.Session()

    def start(self) -> Server:
        """Migrates with the Procfile's release line, starts the web line, waits for /health
        and for every worker process to have booted."""
        release = subprocess.run(
            procfile_argv("release"), cwd=ROOT, env=self.env, capture_output=True, timeout=120
        )
        if release.returncode != 0:
            raise RuntimeError(
                f"release failed:\n{release.stdout.decode()}{release.stderr.decode()}"
            )
        argv = procfile_argv("web", self.port, self.gunicorn_config)
        self.process = self._spawn(argv, self.log_path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if self.session.get(f"{self.url}/health", timeout=2).status_code == 200:
                    if len(self.worker_pids()) == self.workers and self._booted():
                        return self
            time.sleep(0.1)
        raise RuntimeError(f"no healthy server after {START_TIMEOUT_S:g} s:\n{self.log_tail()}")

    def _booted(self) -> bool:
        # gunicorn logs "Booting worker" before the app loads; a worker has loaded when it logs
        # the keys it trusts (gunicorn.conf.py's post_worker_init).
        return self.log_path.read_text("utf-8", "replace").count("trusted keys") >= self.workers

    def _spawn(self, argv: list[str], log_path: Path, env: dict | None = None):
        log = open(log_path, "wb")  # noqa: SIM115 - the child owns it; closed below
        try:
            return subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env or self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def add_worker(self) -> None:
        """Starts the Procfile's `worker` line on the same database and waits until it runs."""
        log_path = self.workdir / f"worker-{self.port}-{len(self.extra)}.log"
        # The web instance may be told to run no work (BEACON_DISPATCHER=0); a worker runs it.
        env = {k: v for k, v in self.env.items() if k != "BEACON_DISPATCHER"}
        process = self._spawn(procfile_argv("worker"), log_path, env)
        self.extra.append(process)
        deadline = time.monotonic() + START_TIMEOUT_S
        while "stop with Ctrl-C" not in log_path.read_text("utf-8", "replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{log_path.read_text('utf-8')}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stops the worker processes and gunicorn, gracefully, SIGKILL if they linger."""
        self.session.close()
        for process in [*self.extra, self.process]:
            if process is not None:
                stop_group(process)

    def log_tail(self, lines: int = 40) -> str:
        text_ = self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text_.splitlines()[-lines:])

    def groups(self) -> list[int]:
        """Returns the process groups of every process of the portal (gunicorn and workers)."""
        return [p.pid for p in [self.process, *self.extra] if p is not None]

    def worker_pids(self) -> list[int]:
        """Returns the pids of the processes that run the engine: gunicorn's workers, and the
        `worker` processes when there are any."""
        pids = children_of(self.process.pid)
        for process in self.extra:
            pids += group_pids(process.pid)
        return pids

    def submit(self, spec: dict) -> str:
        """Signs and submits a JobSpec; returns the job id."""
        body = json.dumps(signing.sign(spec, self.seed))
        response = self.session.post(
            f"{self.url}/api/v1/jobs",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=120,
        )
        if response.status_code != 202:
            raise RuntimeError(f"submission refused: {response.status_code} {response.text}")
        return response.json()["job"]["id"]

    def get_json(self, path: str) -> dict:
        response = self.session.get(self.url + path, timeout=120)
        response.raise_for_status()
        return response.json()

    def answers(self, job_id: str) -> list[dict]:
        """Returns every answer of a job through the API, a page at a time."""
        found, cursor = [], None
        while True:
            query = f"?limit=200&cursor={cursor}" if cursor else "?limit=200"
            page = self.get_json(f"/api/v1/jobs/{job_id}/answers{query}")
            found += page["items"]
            cursor = page["next"]
            if not cursor:
                return found

    def comparison_cached(self, job_id: str) -> bool:
        """Says whether the job's comparison is cached, from the database's own row."""
        from sqlalchemy import create_engine, text

        from portal.settings import database_url

        engine = create_engine(database_url(self.database, str(self.workdir)))
        try:
            with engine.connect() as conn:
                row = conn.execute(
                    text("SELECT comparison_cache IS NOT NULL FROM jobs WHERE id = :id"),
                    {"id": job_id},
                ).first()
        finally:
            engine.dispose()
        return bool(row and row[0])

    def in_process_app(self):
        """Returns the same app built in this process, for server-side timings."""
        from portal import create_app

        overrides = {name: self.env.get(name, "") for name in ENV_NAMES}
        overrides["INSTANCE_PATH"] = str(self.workdir / "instance")
        return create_app(overrides)


@contextlib.contextmanager
def serving(workdir: Path, dbs: Databases, config: Path | None, **kwargs) -> Iterator[Server]:
    """A fresh database and a server on it, stopped when the block ends."""
    server = Server(workdir, dbs.fresh(), config, **kwargs)
    try:
        yield server.start()
    except Exception:
        print(f"--- gunicorn log\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.stop()
