"""The web form under the Procfile's gunicorn with two workers and no SECRET_KEY: sessions made by
one worker are honoured by the other and by the next start (issue 9), and an oversized chunked
body sent over a raw socket is 413 too_large.

The portal runs from a fresh checkout-like folder (links to this repository's files), so its
instance folder, where the generated secret is kept, is new and the test's own.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

from portal.instance import SECRET_KEY_FILE
from tests.support.apps import ROOT, spec_3x3
from tests.support.live_server import LiveServer, free_port, procfile, shell_env
from tests.support.workers import clean_env

pytestmark = pytest.mark.live

SESSIONS = 20
TIMEOUT_S = 30
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
CHECKED = re.compile(r'<input checked id="[a-z]+-\d+" name="(\w+)" type="checkbox" value="([^"]+)"')


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A folder that looks like a fresh clone: the code, no instance folder yet."""
    folder = tmp_path / "clone"
    folder.mkdir()
    for name in ("portal", "wsgi.py", "gunicorn.conf.py", "migrations", "templates", "static"):
        (folder / name).symlink_to(ROOT / name)
    return folder


@pytest.fixture
def web(checkout, tmp_path, database_url, signer):
    """Runs the Procfile's release line, then starts its web line (2 workers) on demand."""
    env = clean_env(
        DATABASE_URL=database_url,
        WEB_CONCURRENCY="2",
        BEACON_TRUSTED_KEYS=json.dumps([signer.trusted_entry()]),
        # Jobs stay queued: this is about sessions, not the engine.
        BEACON_DISPATCHER="0",
        PYTHONPATH=str(checkout),
    )
    del env["SECRET_KEY"]
    # The release step gets its own SECRET_KEY here, so the two web workers are the first to
    # need the generated one and race to make it.
    release = subprocess.run(
        ["bash", "-c", procfile()["release"]],
        cwd=checkout,
        env=shell_env({**env, "SECRET_KEY": "release-only"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert release.returncode == 0, release.stdout + release.stderr
    servers: list[LiveServer] = []

    def start() -> LiveServer:
        port = free_port()
        server = LiveServer(
            shell_env({**env, "PORT": str(port)}),
            tmp_path / f"web-{len(servers)}.log",
            command=["bash", "-c", f"cd {checkout} && exec {procfile()['web']}"],
            url=f"http://127.0.0.1:{port}",
        )
        servers.append(server)
        server.wait_ready(timeout=60, interval=0.2)
        return server

    start.instance = checkout / "instance"
    yield start
    for server in servers:
        server.stop(timeout=30)


def request(url: str, method: str, path: str, body: bytes | None = None, headers=None):
    """One request on a connection of its own, closed after it (no keep-alive)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_S)
    try:
        connection.request(
            method, path, body=body, headers={"Connection": "close", **(headers or {})}
        )
        response = connection.getresponse()
        return response.status, response.getheader("Set-Cookie") or "", response.read()
    finally:
        connection.close()


def open_form(url: str) -> tuple[str, bytes]:
    """GETs the form as a new visitor: returns its session cookie and the form it would send."""
    status, cookie, html = request(url, "GET", "/jobs/new")
    assert status == 200 and cookie.startswith("session="), (status, cookie)
    text = html.decode()
    fields = [("csrf_token", CSRF_INPUT.search(text).group(1)), *CHECKED.findall(text)]
    return cookie.split(";", 1)[0], urllib.parse.urlencode(fields).encode()


def submit(url: str, cookie: str, form: bytes) -> tuple[int, bytes]:
    headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    status, _, body = request(url, "POST", "/jobs/new", form, headers)
    return status, body


def refusals(url: str, visitors: list[tuple[str, bytes]]) -> list[tuple[int, bytes]]:
    """Submits each visitor's form on a new connection; returns every answer but a redirect."""
    answers = [submit(url, cookie, form) for cookie, form in visitors]
    return [(status, body[:300]) for status, body in answers if status != 303]


@pytest.mark.slow
def test_form_sessions_hold_across_two_workers_and_a_restart(web):
    assert not web.instance.exists()
    server = web()
    visitors = [open_form(server.url) for _ in range(SESSIONS)]
    assert refusals(server.url, visitors) == []
    secret = (web.instance / SECRET_KEY_FILE).read_text()
    log = server.log()
    assert log.count("Booting worker") == 2, log
    assert log.count("trusted keys: portal (") == 2 and "test (" in log, log

    pending = [open_form(server.url) for _ in range(3)]
    server.stop(timeout=30)
    restarted = web()
    # Forms opened before the restart still submit, and new visitors are served as before.
    assert refusals(restarted.url, pending) == []
    visitors = [open_form(restarted.url) for _ in range(SESSIONS)]
    assert refusals(restarted.url, visitors) == []
    assert (web.instance / SECRET_KEY_FILE).read_text() == secret
    # Only the secret: the signing key and the database are configured, and no temporary file
    # of the race is left behind.
    assert os.listdir(web.instance) == [SECRET_KEY_FILE]


def raw_chunked_post(url: str, body: bytes, chunk: int = 65536) -> tuple[int, dict]:
    """POSTs `body` to /api/v1/jobs with Transfer-Encoding: chunked over a plain socket."""
    parts = urllib.parse.urlsplit(url)
    head = (
        "POST /api/v1/jobs HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\n"
        "Content-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT_S) as sock:
        sent: list[BaseException] = []

        def send():
            try:
                sock.sendall(head)
                for start in range(0, len(body), chunk):
                    piece = body[start : start + chunk]
                    sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sock.sendall(b"0\r\n\r\n")
            except OSError as exc:  # the server may answer and close before the end
                sent.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        response = http.client.HTTPResponse(sock)
        response.begin()
        document = json.loads(response.read())
        sender.join(timeout=TIMEOUT_S)
        return response.status, document


@pytest.mark.slow
def test_oversized_chunked_body_is_413_on_the_live_server(web, signer):
    server = web()
    big = b'{"version": "v1", "questions": ["' + b"a" * 2_600_000 + b'"]}'
    status, document = raw_chunked_post(server.url, big)
    assert status == 413 and document["error"]["code"] == "too_large", document
    status, document = raw_chunked_post(
        server.url, signer.body(spec_3x3(metadata={"models": ["smollm2-135m"]}))
    )
    assert status == 202, document


def readme_shells() -> list[str]:
    """Returns the two shells of the README's "Sign and submit a job", as written."""
    readme = (ROOT / "README.md").read_text("utf-8")
    walkthrough = readme.split("## Sign and submit a job", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", walkthrough, re.S)


@pytest.mark.slow
def test_readme_walkthrough_in_a_fresh_clone_with_two_shells(checkout, tmp_path):
    """Runs the README's two shells in a fresh clone: what `verify` says is what the server
    does. Shell 1's `./scripts/serve.sh` runs as serve.sh itself, less its install step (the
    clone's .venv is the test's own)."""
    shell1, shell2 = readme_shells()
    (checkout / ".venv").symlink_to(Path(sys.executable).parent.parent)
    serve = (ROOT / "scripts" / "serve.sh").read_text("utf-8")
    assert 'source scripts/install.sh ""\n' in serve
    serve = serve.replace('source scripts/install.sh ""\n', "")
    port = free_port()
    # The job stays queued: running the local model is not what this walkthrough checks.
    env = {**clean_env(BEACON_DISPATCHER="0", PYTHONPATH=str(checkout), PORT=str(port))}
    for name in ("SECRET_KEY", "BEACON_SIGNING_KEY"):
        del env[name]
    first = shell1.replace("./scripts/serve.sh", f"bash {tmp_path / 'serve.sh'}")
    (tmp_path / "serve.sh").write_text(serve.replace('cd "$(dirname "$0")/.."', f"cd {checkout}"))
    server = LiveServer(
        env,
        tmp_path / "shell1.log",
        command=["bash", "-c", f"set -euo pipefail; cd {checkout}\n{first}"],
        url=f"http://127.0.0.1:{port}",
    )
    try:
        server.wait_ready(timeout=90, interval=0.3)
        second = subprocess.run(
            [
                "bash",
                "-c",
                "set -euo pipefail\n" + shell2.replace("127.0.0.1:8000", f"127.0.0.1:{port}"),
            ],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        log = server.log()
    finally:
        server.stop(timeout=30)
    assert second.returncode == 0, second.stdout + second.stderr + log
    assert "warning" not in second.stderr  # BEACON_USER_KEY came from beacon-keys.sh
    assert "trust list checked: this shell's BEACON_TRUSTED_KEYS (me (" in second.stdout
    assert "is trusted here (kid me)" in second.stdout, second.stdout
    submitted = json.loads(second.stdout[second.stdout.index('{"idempotent"') :])
    assert submitted["idempotent"] is False and submitted["job"]["signer_kid"] == "me"
    assert log.count("trusted keys: portal (") == 2 and "me (" in log, log
