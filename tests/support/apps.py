"""The apps tests build: a fresh database per test (SQLite in the test's folder, or
PostgreSQL when TEST_DATABASE_URL is set), a signer, the shared fixtures folder and the
3 x 3 configuration. The fixtures in tests/conftest.py are built from these.

Under pytest-xdist each worker process gets a PostgreSQL database of its own
(`<database>_<worker>`, made on first use), so parallel tests never drop each other's tables.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from portal import create_app
from portal.db import db
from portal.intake import signing
from portal.settings import ENV_NAMES
from portal.settings import database_url as sqlalchemy_url

ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """Returns the read-only shared folder beside the repository (or BEACON_SHARED_DIR)."""
    env = os.environ.get("BEACON_SHARED_DIR")
    path = Path(env) if env else ROOT.parent / "shared"
    if not (path / "signing-vectors.json").is_file():
        # The signing vectors and the compat corpus are required fixtures: never skip them.
        raise RuntimeError(
            f"the shared test fixtures are not at {path}: put the shared/ folder beside the "
            "repository or set BEACON_SHARED_DIR"
        )
    return path


SHARED = shared_dir()
THREE_REGIONS = ROOT / "config" / "three-regions.toml"


class Signer:
    """Signs JobSpecs with one Ed25519 key and returns the bytes a client would send."""

    def __init__(self, seed: bytes | None = None):
        self.seed = seed or signing.generate_seed()
        self.public_key = signing.public_key_b64(self.seed)
        self.seed_b64 = base64.b64encode(self.seed).decode()

    def sign(self, spec: dict) -> dict:
        return signing.sign(spec, self.seed)

    def body(self, spec: dict) -> bytes:
        return json.dumps(self.sign(spec)).encode()

    def trusted_entry(self, kid: str = "test", **extra) -> dict:
        return {"kid": kid, "public_key": self.public_key, "status": "active", **extra}


def pg_test_url() -> str | None:
    """This test process's PostgreSQL URL: TEST_DATABASE_URL, or under pytest-xdist a
    database of this worker's own beside it (None when PostgreSQL is not being tested)."""
    url = os.environ.get("TEST_DATABASE_URL") or None
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if url is None or not worker:
        return url
    base = make_url(sqlalchemy_url(url, "."))
    mine = base.set(database=f"{base.database}_{worker}")
    _create_database(base, mine.database)
    return mine.render_as_string(hide_password=False)


_created: set[str] = set()


def _create_database(base, name: str) -> None:
    """Creates database `name` on `base`'s server unless it exists (once per process)."""
    if name in _created:
        return
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if exists.first() is None:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    _created.add(name)


def reset_postgres(url: str) -> None:
    """Drops every table of the test schema so each test starts empty."""
    engine = create_engine(sqlalchemy_url(url, "."))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def build_app(
    folder: Path, database_url: str, signer: Signer, create_tables: bool = True, **overrides
):
    """Returns an app on `database_url` that trusts `signer`, with no Beacon variable from this
    process's environment; keyword overrides stand in for env variables."""
    config = {name: "" for name in ENV_NAMES}
    config.update(
        TESTING=True,
        INSTANCE_PATH=str(folder / "instance"),
        DATABASE_URL=database_url,
        SECRET_KEY="test-secret",
        BEACON_TRUSTED_KEYS=json.dumps([signer.trusted_entry()]),
        WTF_CSRF_ENABLED=False,
    )
    config.update(overrides)
    app = create_app(config)
    if create_tables:
        with app.app_context():
            db.create_all()
    return app


def spec_3x3(**changes) -> dict:
    """Our own 3 models x 3 regions x 3 questions spec, unsigned."""
    spec = json.loads((ROOT / "scripts" / "3-model-verification-job.json").read_text("utf-8"))
    spec.update(changes)
    return spec
