"""Database extensions, bound to the app with `init_app` in `create_app`."""

import sqlite3
from datetime import UTC

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, MetaData, TypeDecorator, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

# The largest values the integer column types hold: 64-bit row ids, 32-bit integers (log
# indexes, sizes). Input beyond them is refused before it reaches a query: the PostgreSQL driver
# would overflow on it (SQLite would not), and a 500 is never an answer to input.
MAX_ROW_ID = 2**63 - 1
MAX_INT32 = 2**31 - 1

# Named constraints keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate(render_as_batch=True)


class UTCDateTime(TypeDecorator):
    """Stores naive UTC (SQLite has no time zones) and always returns aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=UTC) if value is not None else None


@event.listens_for(Engine, "connect")
def tune_sqlite(dbapi_connection, connection_record):
    """Puts SQLite in write-ahead-log mode with NORMAL sync on every new connection."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # WAL lets the pages read while a worker writes, and NORMAL syncs at checkpoints rather than
    # at every commit: about 1.5 times the answers per second (docs/benchmarks.md). A crash of
    # the process loses nothing; a power cut may lose the last commits.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
