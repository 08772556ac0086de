"""Shared fixtures, defined once: a fresh app and database per test, a client, a signer, the
3 x 3 app, and the markers that let scripts/test.sh choose what to run.

The database is SQLite in the test's own folder, or PostgreSQL when TEST_DATABASE_URL is set
(one database per xdist worker; its tables are dropped and created again for every test).
Markers set here from what a test uses: `db` (it touches a database: the PostgreSQL pass runs
only these). Set by hand in the test files: `browser`, `live` (starts server or worker
processes), `slow`, `serial` (must run alone: it restarts PostgreSQL).
"""

from __future__ import annotations

import pytest

from portal.db import db
from tests.support.apps import (
    THREE_REGIONS,
    Signer,
    build_app,
    pg_test_url,
    reset_postgres,
)

# Fixtures whose use means the test reaches a database.
DATABASE_FIXTURES = {"database_url", "make_app", "app", "client", "app3", "client3"}


def pytest_collection_modifyitems(config, items):
    """Marks every test that reaches a database `db`, from the fixtures it uses."""
    for item in items:
        if DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def database_url(tmp_path) -> str:
    """A database URL with no tables in it yet."""
    url = pg_test_url()
    if url is None:
        return f"sqlite:///{tmp_path / 'beacon.sqlite3'}"
    reset_postgres(url)
    return url


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


@pytest.fixture
def app3(make_app):
    """The app on the 3 models x 3 regions configuration."""
    return make_app(BEACON_CONFIG=str(THREE_REGIONS))


@pytest.fixture
def client3(app3):
    return app3.test_client()
