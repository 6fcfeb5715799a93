"""Connections: one SQLAlchemy engine per process (workers build theirs after the fork)."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import OperationalError

from moderation.endpoints import redacted
from moderation.errors import StorageUnavailable


def make_engine(url: str, pool_size: int = 5) -> Engine:
    # pool_pre_ping: a connection that died while PostgreSQL restarted is replaced instead of failing a batch.
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, future=True)


def create_database_if_missing(url: str) -> bool:
    """CREATE DATABASE for `url`'s database when it does not exist yet. Returns whether it created it."""
    target: URL = make_url(url)
    name = target.database
    if not name:
        raise StorageUnavailable(f"database URL {redacted(url)} names no database")
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            if exists:
                return False
            # Identifiers cannot be bound parameters; quote it as PostgreSQL does.
            conn.execute(text('CREATE DATABASE "{}"'.format(name.replace('"', '""'))))
            return True
    except OperationalError as exc:
        raise StorageUnavailable(f"cannot reach PostgreSQL at {redacted(url)}: {exc.orig}") from None
    finally:
        admin.dispose()


def drop_database(url: str) -> None:
    """DROP DATABASE (tests and the demo clean up what they made)."""
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(
                text('DROP DATABASE IF EXISTS "{}" WITH (FORCE)'.format((target.database or "").replace('"', '""')))
            )
    finally:
        admin.dispose()
