"""The real portal under gunicorn (gevent worker) on a free loopback port, for tests that need
a server over HTTP rather than the Flask test client.

`live_server(env, tmp_path)` upgrades a fresh SQLite database with `flask --app wsgi db upgrade`,
starts `gunicorn wsgi:app -k gevent --workers 1`, waits for `/health`, yields the base URL and
stops the server (SIGTERM, then SIGKILL) when the block ends. `make_live_server` is the fixture
form: call it as often as a test needs, every server is stopped at teardown.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal.settings import ENV_NAMES

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LISTENING = re.compile(rb"Listening at: (http://127\.0\.0\.1:\d+)")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


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


class LiveServer:
    """One gunicorn process writing its log to a file."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "wsgi:app",
                "-k",
                "gevent",
                "--workers",
                "1",
                # Port 0: the kernel picks a free port and gunicorn logs it, so there is no race.
                "--bind",
                "127.0.0.1:0",
                # Concurrent servers would otherwise share ~/.gunicorn/gunicorn.ctl.
                "--no-control-socket",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = ""

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> str:
        """Waits until /health answers 200 and returns the base URL."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"gunicorn exited with {self.process.returncode}:\n{self.log()}"
                )
            if not self.url:
                found = LISTENING.search(self.log_path.read_bytes())
                self.url = found.group(1).decode() if found else ""
            if self.url and _health_ok(self.url):
                return self.url
            time.sleep(0.1)
        raise AssertionError(f"no healthy server after {timeout:g} s:\n{self.log()}")

    def stop(self) -> None:
        """Stops gunicorn with SIGTERM (graceful), SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_S)
        self._log.close()


def _health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextlib.contextmanager
def live_server(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """Runs the portal under gunicorn with `env` on a fresh database; yields its base URL."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    full_env = server_env(env, tmp_path)
    upgrade_database(full_env, tmp_path / "upgrade.log")
    server = LiveServer(full_env, tmp_path / "gunicorn.log")
    failed = True
    try:
        url = server.wait_ready()
        yield url
        failed = False
    finally:
        server.stop()
        if failed:
            print(f"--- gunicorn log ({server.log_path})\n{server.log()}", file=sys.stderr)


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
