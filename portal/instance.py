"""Secrets the portal generates once and keeps in its instance folder (SECRET_KEY, signing key).

Every gunicorn worker builds its own app, so a secret made at start-up must be made once and
shared: the first process to get there writes the file, every other process (the second worker,
the next restart, the `flask` commands) reads the same value.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

SECRET_KEY_FILE = "secret_key"


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """Returns the text kept at `path`, writing `make()` there first when there is none.

    The value is written to a private temporary file that is then hard-linked into place, so
    the file appears whole or not at all; when two processes race, the link of the second fails
    and it reads the winner's value.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd, tmp = _private_temp(path)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(make())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


def secret_key(instance: Path) -> str:
    """Returns the instance folder's generated SECRET_KEY (for when none is configured)."""
    return read_or_create(instance / SECRET_KEY_FILE, lambda: secrets.token_hex(32))


def _private_temp(path: Path) -> tuple[int, str]:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}")
    # Owner-only from the start: the secret is never readable by others, even briefly.
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), str(tmp)
