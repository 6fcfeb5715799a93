"""Database errors are classified at one boundary: the content's fault (dead-letter the post) or the
database's (retry). The real errors are raised by PostgreSQL in tests/integration/test_storage_faults.py;
this is the table of codes."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError, TimeoutError

from moderation.errors import InvalidPost, RetryableError, StorageRejected, StorageUnavailable
from moderation.storage.database import is_permanent, translate_errors


class _PgError(Exception):
    def __init__(self, message: str, pgcode: str | None) -> None:
        super().__init__(message)
        self.pgcode = pgcode


@pytest.mark.parametrize(
    ("code", "permanent"),
    [
        ("22001", True),  # string_data_right_truncation: an over-long id
        ("22021", True),  # character_not_in_repertoire
        ("22P05", True),  # untranslatable_character: \u0000 in JSONB
        ("23514", True),  # check_violation
        ("23502", True),  # not_null_violation
        ("54000", True),  # program_limit_exceeded: an index row too large
        ("23505", False),  # unique_violation: a concurrent writer, retry
        ("57014", False),  # query_canceled: statement_timeout
        ("40001", False),  # serialization_failure
        ("40P01", False),  # deadlock_detected
        ("08006", False),  # connection_failure
        ("53300", False),  # too_many_connections
        ("57P01", False),  # admin_shutdown (PostgreSQL restarting)
        ("P0001", False),  # raise_exception from an unknown trigger: not known to be the content's fault
        (None, False),
    ],
)
def test_sqlstate_classes(code: str | None, permanent: bool) -> None:
    assert is_permanent(code) is permanent
    exc = DBAPIError("INSERT ...", {}, _PgError("the server said no", code))
    with pytest.raises(StorageRejected if permanent else StorageUnavailable) as info, translate_errors():
        raise exc
    assert "the server said no" in str(info.value)


def test_permanent_errors_are_invalid_posts_and_transient_ones_retryable() -> None:
    assert issubclass(StorageRejected, InvalidPost) and not issubclass(StorageRejected, RetryableError)
    assert issubclass(StorageUnavailable, RetryableError)
    assert StorageRejected("x", "22001").reason == "storage_rejected"


def test_connection_loss_and_pool_timeouts_are_transient() -> None:
    with pytest.raises(StorageUnavailable), translate_errors():
        raise OperationalError("SELECT 1", {}, _PgError("server closed the connection unexpectedly", None))
    with pytest.raises(StorageUnavailable), translate_errors():
        raise TimeoutError("QueuePool limit of size 5 overflow 5 reached")


def test_the_driver_refusing_nul_is_permanent_but_other_value_errors_are_bugs() -> None:
    with pytest.raises(StorageRejected), translate_errors():
        raise ValueError("A string literal cannot contain NUL (0x00) characters.")
    with pytest.raises(StorageRejected), translate_errors():
        "\ud800".encode()
    with pytest.raises(ValueError, match="posts but"), translate_errors():
        raise ValueError("3 posts but 2 verdicts")


def test_raw_driver_errors_are_classified_too() -> None:
    """Code that calls psycopg2 directly (a raw cursor) gets errors SQLAlchemy did not wrap: they must still
    not escape as unknown exceptions."""
    import psycopg2

    with pytest.raises(StorageUnavailable, match="connection already closed"), translate_errors():
        raise psycopg2.InterfaceError("connection already closed")
