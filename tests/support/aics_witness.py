"""aics-witness 0.1.0 (PyPI), a C2SP tlog-witness written by others, for interoperability tests.

It needs Python >= 3.12 and the project runs on 3.11, so it lives in a venv of its own:
`.venv-witness312/` at the repository root (or $BEACON_WITNESS_VENV), made on first use with a
Python 3.12 found as $BEACON_PYTHON312, `python3.12` on the PATH, or a pyenv 3.12, and reused
after that. The venv ignores itself for git (a `.gitignore` of `*` inside it). When no venv
can be made, the test is skipped with a message that starts "SKIPPED LOUDLY".

The witness is set up as its README says: `aics-witness init --config F --name N` writes the
config, a 0600 key and the database and prints the witness vkey; `add-log --origin O --vkey K`
trusts a log key; `serve --config F --listen 127.0.0.1:0` serves on a free port and logs
"listening on http://127.0.0.1:PORT".
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.c2sp import Vkey
from tests.support.live_server import ROOT, Process

VERSION = "0.1.0"
INSTALL_TIMEOUT_S = 600
START_TIMEOUT_S = 20
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
# Variables aics-witness reads: a stray one from the caller's shell would change its config.
ITS_ENV = ("AICS_WITNESS_CONFIG", "WITNESS_SEED_HEX")


def venv_dir() -> Path:
    """Returns where the aics-witness venv lives."""
    return Path(os.environ.get("BEACON_WITNESS_VENV") or ROOT / ".venv-witness312")


def python312() -> str | None:
    """Returns a Python 3.12 interpreter to build the venv with, or None."""
    candidates = [os.environ.get("BEACON_PYTHON312")]
    for home in ("/root", os.path.expanduser("~")):
        candidates += sorted(glob.glob(f"{home}/.pyenv/versions/3.12*/bin/python3.12"))
    candidates.append(shutil.which("python3.12"))
    # A pyenv shim exists even where its version is not selected: ask each one to run.
    return next((c for c in candidates if c and runs_312(c)), None)


def runs_312(python: str) -> bool:
    """Says whether `python` runs and is Python 3.12 or later."""
    check = "import sys; sys.exit(sys.version_info < (3, 12))"
    try:
        return (
            subprocess.run([python, "-c", check], capture_output=True, timeout=30).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def installed(venv: Path) -> bool:
    """Says whether `venv` already holds a working aics-witness of the pinned version."""
    program = venv / "bin" / "aics-witness"
    if not program.exists():
        return False
    result = subprocess.run(
        [str(program), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode == 0 and VERSION in result.stdout + result.stderr


def build(venv: Path) -> str | None:
    """Makes the venv and installs aics-witness into it; returns why it failed, or None."""
    python = python312()
    if python is None:
        return "no Python 3.12 found (set BEACON_PYTHON312 to one)"
    steps = [
        [python, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        + [f"aics-witness=={VERSION}"],
    ]
    for step in steps:
        try:
            result = subprocess.run(
                step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            return f"{' '.join(step[:3])} took over {INSTALL_TIMEOUT_S} s"
        if result.returncode != 0:
            return f"{' '.join(step[:3])} failed: {(result.stderr or result.stdout)[-500:]}"
    return None


def ensure_venv() -> Path:
    """Returns the aics-witness program, making its venv once; skips loudly when it cannot."""
    venv = venv_dir()
    venv.mkdir(parents=True, exist_ok=True)
    # A venv inside the work tree keeps itself out of git without touching .gitignore.
    (venv / ".gitignore").write_text("*\n", "utf-8")
    # One builder at a time: parallel test processes would otherwise pip into one folder.
    with open(venv / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not installed(venv):
            failure = build(venv)
            if failure is not None or not installed(venv):
                pytest.skip(
                    f"SKIPPED LOUDLY: cannot make the aics-witness {VERSION} venv at {venv}: "
                    f"{failure or 'it does not run after install'}"
                )
    return venv / "bin" / "aics-witness"


def run(program: Path, config: Path, *args: str) -> str:
    """Runs one aics-witness command on `config`; returns its standard output."""
    result = subprocess.run(
        [str(program), *args[:1], "--config", str(config), *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=witness_env(),
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"aics-witness {args[0]} failed: {result.stderr}{result.stdout}")
    return result.stdout


def witness_env() -> dict[str, str]:
    """Returns this process's environment without the variables aics-witness reads."""
    env = {k: v for k, v in os.environ.items() if k not in ITS_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def aics_witness(folder: Path, name: str, logs: dict[str, Vkey]) -> Iterator[tuple[str, Vkey]]:
    """Runs aics-witness trusting `logs` ({origin: log vkey}); yields (base URL, its vkey)."""
    program = ensure_venv()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "witness.json"
    vkey = Vkey.parse(run(program, config, "init", "--name", name).strip())
    for origin, log_key in logs.items():
        run(program, config, "add-log", "--origin", origin, "--vkey", log_key.text())
    command = [str(program), "serve", "--config", str(config), "--listen", "127.0.0.1:0"]
    server = Process(command, witness_env(), folder / "serve.log", name="aics-witness")
    try:

        def listening():
            found = LISTENING.search(server.log())
            return found.group(1) if found else None

        url = server.wait_for(listening, START_TIMEOUT_S, "aics-witness to listen")
        yield url, vkey
    finally:
        server.stop()
