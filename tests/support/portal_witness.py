"""The portal's own witness as its users run it: `flask --app wsgi beacon witness keygen`, then
`flask --app wsgi beacon witness serve --key-file F --db URL --log VKEY --listen 127.0.0.1:0`
in a subprocess, on a free port it logs as "listening on http://127.0.0.1:PORT"."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.c2sp import Vkey
from tests.support.live_server import ROOT, Process
from tests.support.workers import clean_env

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi", "beacon", "witness"]


def flask_witness(env: dict[str, str], *args: str) -> str:
    """Runs one `flask beacon witness` command; returns its standard output."""
    result = subprocess.run(
        [*FLASK, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise AssertionError(f"flask beacon witness {args[0]} failed: {result.stderr}")
    return result.stdout


@contextlib.contextmanager
def portal_witness(folder: Path, name: str, log_keys: list[Vkey]) -> Iterator[tuple[str, Vkey]]:
    """Runs `flask beacon witness serve` trusting `log_keys`; yields (base URL, its vkey)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = clean_env(DATABASE_URL=f"sqlite:///{folder / 'unused-portal.sqlite3'}")
    key_file = folder / "witness.key"
    printed = flask_witness(env, "keygen", "--name", name, "--key-file", str(key_file))
    vkey = Vkey.parse(printed.strip())
    command = [*FLASK, "serve", "--key-file", str(key_file), "--listen", "127.0.0.1:0"]
    command += ["--db", f"sqlite:///{folder / 'witness.sqlite3'}"]
    for key in log_keys:
        command += ["--log", key.text()]
    server = Process(command, env, folder / "serve.log", name="beacon witness serve")
    try:

        def listening():
            found = LISTENING.search(server.log())
            return found.group(1) if found else None

        yield server.wait_for(listening, 60, "the witness to listen"), vkey
    finally:
        server.stop()
