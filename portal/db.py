"""Database extensions, bound to the app with `init_app` in `create_app`."""

import sqlite3
from datetime import UTC

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, DateTime, Integer, MetaData, SmallInteger, TypeDecorator, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

# The largest value each integer column type holds on PostgreSQL (SQLite holds 64 bits in any of
# them). Input beyond its column's bound is refused before it reaches a query: the PostgreSQL
# driver binds it as that type and fails (issue 20), and a 500 is never an answer to input.
# Subclasses first: BigInteger and SmallInteger are Integers to SQLAlchemy.
INTEGER_MAX = ((BigInteger, 2**63 - 1), (SmallInteger, 2**15 - 1), (Integer, 2**31 - 1))
MAX_INT32 = 2**31 - 1
# Every id column (models.py, migrations 0001-0003) is `Integer`: INTEGER, 32 bits, on
# PostgreSQL. Views bound a number by the column it is compared with (`column_max`); this is
# the bound of a row id when no column is named. tests/web/test_url_text.py pins that it is no
# larger than any integer primary or foreign key, so widening a column widens it deliberately.
MAX_ROW_ID = MAX_INT32


def column_max(column) -> int:
    """The largest value `column` (an integer column or ORM attribute) holds on every database."""
    column_type = column.type
    for kind, maximum in INTEGER_MAX:
        if isinstance(column_type, kind):
            return maximum
    raise TypeError(f"{column} is not an integer column")


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
