"""Subprocesses for tests that need the real thing: gunicorn serving the portal over HTTP, or
an engine worker. `Process` is the one way they start (a command, an environment, a log file),
wait (a predicate or a timeout, failing with the log) and stop (SIGTERM, then SIGKILL).

`live_server(env, tmp_path)` upgrades a fresh SQLite database with `flask --app wsgi db upgrade`,
starts `gunicorn wsgi:app -k gevent --workers 1`, waits for `/health`, yields the base URL and
stops the server when the block ends; `serving` is the same but yields the `LiveServer`.
`make_live_server` is the fixture form: call it as often as a test needs, every server is
stopped at teardown.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from portal.settings import ENV_NAMES

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LISTENING = re.compile(rb"Listening at: (http://127\.0\.0\.1:\d+)")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Returns the first truthy value of `predicate()`, or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Process:
    """One subprocess in its own session, started in the project root, logging to a file."""

    def __init__(self, command: Sequence[str], env: dict[str, str], log_path: Path, name: str):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def wait_for(self, predicate: Callable, timeout: float, what: str, interval: float = 0.1):
        """Returns the first truthy `predicate()`; fails with the log on exit or timeout."""

        def running_and_ready():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}")
            return predicate()

        try:
            return wait_until(running_and_ready, timeout, interval, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.log()}") from None

    def kill(self) -> None:
        """Kills the process group with SIGKILL: no clean-up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stops the process with SIGTERM (graceful), its group with SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def gunicorn_command(workers: int = 1) -> list[str]:
    """Returns the command serving the portal with `workers` gevent workers on a free loopback
    port."""
    return [
        str(BIN / "gunicorn"),
        "wsgi:app",
        "-k",
        "gevent",
        # The web process's settings: each worker runs a dispatcher (if BEACON_DISPATCHER says).
        "-c",
        "gunicorn.conf.py",
        "--workers",
        str(workers),
        # Port 0: the kernel picks a free port and gunicorn logs it, so there is no race.
        "--bind",
        "127.0.0.1:0",
        # Concurrent servers would otherwise share ~/.gunicorn/gunicorn.ctl.
        "--no-control-socket",
    ]


class LiveServer(Process):
    """A process serving the portal: gunicorn on a free port unless `command` says otherwise;
    its base URL is `url`, or the one gunicorn logs."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        command: Sequence[str] | None = None,
        url: str = "",
    ):
        super().__init__(command or gunicorn_command(), env, log_path, name="gunicorn")
        self.url = url

    def wait_ready(self, timeout: float = START_TIMEOUT_S, interval: float = 0.1) -> str:
        """Waits until /health answers 200 and returns the base URL."""

        def healthy():
            if not self.url:
                found = LISTENING.search(self.log_path.read_bytes())
                self.url = found.group(1).decode() if found else ""
            return self.url if self.url and _health_ok(self.url) else ""

        return self.wait_for(healthy, timeout, "/health to answer 200", interval)


def _health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (OSError, http.client.HTTPException):
        return False  # not listening yet, or workers still booting


def server_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Returns this process's environment without Beacon settings, with defaults, then `env`."""
    base = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    base.pop("BEACON_DISPATCHER", None)
    base.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'live.sqlite3'}",
        SECRET_KEY="test-secret",
        BEACON_SIGNING_KEY=base64.b64encode(os.urandom(32)).decode(),
        # No engine unless the caller asks for one: jobs stay queued.
        BEACON_DISPATCHER="0",
        PYTHONUNBUFFERED="1",
    )
    base.update(env)
    return base


def upgrade_database(env: dict[str, str], log: Path) -> None:
    """Runs the migrations against env's DATABASE_URL, failing with their output."""
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    log.write_bytes(result.stdout + result.stderr)
    if result.returncode != 0:
        raise AssertionError(f"db upgrade failed:\n{log.read_text('utf-8', 'replace')}")


@contextlib.contextmanager
def serving(
    env: dict[str, str],
    tmp_path: Path,
    start_timeout: float = START_TIMEOUT_S,
    stop_timeout: float = STOP_TIMEOUT_S,
) -> Iterator[LiveServer]:
    """Runs the portal under gunicorn with `env` on a fresh database; yields the server."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    full_env = server_env(env, tmp_path)
    upgrade_database(full_env, tmp_path / "upgrade.log")
    server = LiveServer(full_env, tmp_path / "gunicorn.log")
    failed = True
    try:
        server.wait_ready(start_timeout)
        yield server
        failed = False
    finally:
        server.stop(stop_timeout)
        if failed:
            print(f"--- gunicorn log ({server.log_path})\n{server.log()}", file=sys.stderr)


@contextlib.contextmanager
def live_server(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """Runs the portal under gunicorn with `env` on a fresh database; yields its base URL."""
    with serving(env, tmp_path) as server:
        yield server.url


@pytest.fixture
def make_live_server(tmp_path):
    """Starts live servers for one test: `make_live_server(env) -> base URL`."""
    stack = contextlib.ExitStack()
    count = 0

    def start(env: dict[str, str] | None = None) -> str:
        nonlocal count
        count += 1
        return stack.enter_context(live_server(env or {}, tmp_path / f"live-{count}"))

    with stack:
        yield start
    # Printed output is shown by pytest only when the test fails.
    for index in range(1, count + 1):
        log = tmp_path / f"live-{index}" / "gunicorn.log"
        if log.exists():
            print(f"--- {log}\n{log.read_text('utf-8', 'replace')}")


def procfile() -> dict[str, str]:
    """Returns the Procfile's process lines by name."""
    lines = (ROOT / "Procfile").read_text("utf-8").splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shell_env(env: dict[str, str]) -> dict[str, str]:
    """Puts the virtualenv's commands (gunicorn, flask) first on PATH, as a deploy would."""
    bin_dir = str(Path(sys.executable).parent)
    return {**env, "PATH": bin_dir + os.pathsep + env.get("PATH", "")}


def start_web(env: dict[str, str], log_path: Path) -> LiveServer:
    """Starts the Procfile's `web` line through a shell, as a platform starts it, on a free
    port given as $PORT."""
    port = free_port()
    return LiveServer(
        shell_env({**env, "PORT": str(port)}),
        log_path,
        command=["bash", "-c", "exec " + procfile()["web"]],
        url=f"http://127.0.0.1:{port}",
    )
