"""Connections: one SQLAlchemy engine per process (workers build theirs after the fork), and the one
boundary where database errors become this package's errors (`translate_errors`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from moderation.endpoints import redacted
from moderation.errors import StorageRejected, StorageUnavailable
from moderation.storage.jsonb import dumps_text

# SQLSTATE classes (or codes) that mean "this content can never be stored": retrying is useless, so the
# post is dead-lettered. 22: data exception (value too long, NUL in text or JSON, bad encoding);
# 23: integrity constraint violation, except 23505 (a unique key taken by a concurrent writer: retry);
# 54: program limit exceeded (an index row or a JSON document too large or too deep).
PERMANENT_CLASSES = ("22", "23", "54")
TRANSIENT_CODES = ("23505",)


def is_permanent(sqlstate: str | None) -> bool:
    """Whether a PostgreSQL error code means the rows themselves are unacceptable.

    Everything else — connection loss, statement timeouts (57014), deadlocks and serialization failures
    (40xxx), shutdowns (57P0x), resource exhaustion (53xxx), errors raised by unknown triggers (P0001) — is
    treated as transient: retried with a bound, never turned into a dead letter on its own."""
    if not sqlstate or sqlstate in TRANSIENT_CODES:
        return False
    return sqlstate[:2] in PERMANENT_CLASSES


def _first_line(exc: BaseException) -> str:
    # PostgreSQL's primary message names the problem and never the value (no post text, no secret).
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


@contextmanager
def translate_errors() -> Iterator[None]:
    """Run database work, turning library errors into StorageRejected (permanent: the content) or
    StorageUnavailable (transient: retry later). The only place that inspects SQLSTATE codes."""
    try:
        yield
    except (DBAPIError, psycopg2.Error) as exc:
        # psycopg2's own errors arrive unwrapped from code that calls the driver directly (a raw cursor, COPY);
        # nothing here does today, but such code must not turn a dropped connection into a permanent refusal.
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        code = getattr(orig, "pgcode", None)
        detail = _first_line(orig) if orig is not None else _first_line(exc)
        if is_permanent(code):
            raise StorageRejected(detail, code) from exc
        raise StorageUnavailable(f"database error {code or type(orig).__name__}: {detail}") from exc
    except SQLAlchemyError as exc:  # pool timeouts, invalidated connections
        raise StorageUnavailable(f"database error: {_first_line(exc)}") from exc
    except ValueError as exc:
        # psycopg2 refuses, before sending, a string with NUL or a lone surrogate (UnicodeEncodeError).
        if isinstance(exc, UnicodeEncodeError) or "NUL" in str(exc):
            raise StorageRejected(f"the driver refused a value: {_first_line(exc)}") from exc
        raise


def database_url(url: str | URL) -> URL:
    """The URL with its driver made explicit. A plain `postgresql://` URL, the form hosting services hand out,
    means psycopg2 here (SQLAlchemy 2.1 would otherwise pick psycopg 3, which is not a dependency)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


def make_engine(url: str, pool_size: int = 5) -> Engine:
    # pool_pre_ping: a connection that died while PostgreSQL restarted is replaced instead of failing a batch.
    return create_engine(
        database_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        future=True,
        json_serializer=dumps_text,
    )


def create_database_if_missing(url: str) -> bool:
    """CREATE DATABASE for `url`'s database when it does not exist yet. Returns whether it created it."""
    target: URL = database_url(url)
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
    target = database_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(
                text('DROP DATABASE IF EXISTS "{}" WITH (FORCE)'.format((target.database or "").replace('"', '""')))
            )
    finally:
        admin.dispose()
