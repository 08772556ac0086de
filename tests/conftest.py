"""Shared fixtures: a fresh app and database per test, a signer, the shared fixtures folder.

The database is SQLite in the test's own folder, or PostgreSQL when TEST_DATABASE_URL is set
(its tables are dropped and created again for every test).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from portal import create_app
from portal.db import db
from portal.intake import signing
from portal.settings import ENV_NAMES

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.fixture
def signer() -> Signer:
    return Signer()


def pg_test_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL") or None


@pytest.fixture
def database_url(tmp_path) -> str:
    """A database URL with no tables in it yet."""
    url = pg_test_url()
    if url is None:
        return f"sqlite:///{tmp_path / 'beacon.sqlite3'}"
    reset_postgres(url)
    return url


def reset_postgres(url: str) -> None:
    """Drops every table of the test schema so each test starts empty."""
    from portal.settings import database_url as sqlalchemy_url

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


@pytest.fixture
def make_app(tmp_path, database_url, signer):
    """Builds apps with tables created; keyword overrides stand in for env variables."""
    apps = []

    def factory(create_tables: bool = True, **overrides):
        app = build_app(tmp_path, database_url, signer, create_tables, **overrides)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def spec_3x3(**changes) -> dict:
    """Our own 3 models x 3 regions x 3 questions spec, unsigned."""
    spec = json.loads((ROOT / "scripts" / "3-model-verification-job.json").read_text("utf-8"))
    spec.update(changes)
    return spec
