"""The Alembic migrations build exactly the tables the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text

from portal.db import db
from portal.settings import database_url as sqlalchemy_url
from tests.support.apps import pg_test_url


@pytest.fixture
def empty_url(tmp_path):
    """An empty SQLite file, or a fresh PostgreSQL database dropped afterwards."""
    base = pg_test_url()
    if base is None:
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    name = f"beacon_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(sqlalchemy_url(base, "."), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield sqlalchemy_url(base, ".").rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrade_on_empty_database_matches_models(make_app, empty_url):
    app = make_app(create_tables=False, DATABASE_URL=empty_url)
    with app.app_context():
        upgrade()
        tables = set(inspect(db.engine).get_table_names())
        assert {"jobs", "executions", "answers", "used_nonces", "alembic_version"} <= tables
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        uniques = inspect(db.engine).get_unique_constraints("executions")
        assert any(set(u["column_names"]) == {"job_id", "model_id", "region"} for u in uniques)
        model_id = next(
            c for c in inspect(db.engine).get_columns("executions") if c["name"] == "model_id"
        )
        assert model_id["nullable"] is False
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        db.engine.dispose()


def test_sqlite_runs_in_write_ahead_log_mode(app):
    from sqlalchemy import text as sql

    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("a SQLite setting; this run uses PostgreSQL")
        with db.engine.connect() as conn:
            assert conn.execute(sql("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(sql("PRAGMA synchronous")).scalar() == 1  # NORMAL
