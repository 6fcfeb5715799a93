"""Inserting many rows in one statement: the rows travel as one JSON document that PostgreSQL unpacks.

A stored post is eight rows and about 80 values. Sent as an `INSERT ... VALUES (...), (...)` list, as
SQLAlchemy's "insertmanyvalues" does, every value is rendered and quoted by the client one by one, and the
server lexes, parses and coerces a statement of tens of thousands of literals. Here the rows are one JSON
array (orjson, in C) bound as a single parameter, and `jsonb_to_recordset` turns it back into rows:

    INSERT INTO signals (verdict_id, plugin, ...) SELECT verdict_id, plugin, ...
    FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(verdict_id int8, plugin text, ...)

Measured on 2,048 signal rows per statement: client 0.11 -> 0.02 ms and PostgreSQL 0.22 -> 0.16 ms of CPU
per post. The unpacked columns are declared without lengths (text, not varchar(64)), so a value too long
for its column is refused by the INSERT itself, as a literal would be (SQLSTATE 22001), never truncated.
JSON cannot hold bytes, so bytea values travel as hex; a NUL in a string is refused by PostgreSQL's JSON
parser (22P05), a data exception like the driver's own refusal was, so it still counts as permanent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Connection, DateTime, Float, Integer, LargeBinary, String, Table
from sqlalchemy.dialects.postgresql import JSONB

from moderation.storage.jsonb import dumps_text

# How a column's values are declared in the record set: base types, no lengths (see the module docstring).
_RECORD_TYPES: tuple[tuple[type, str], ...] = (
    (BigInteger, "int8"),  # before Integer: BigInteger is a subclass
    (Integer, "int4"),
    (Float, "float8"),
    (Boolean, "bool"),
    (DateTime, "timestamptz"),
    (JSONB, "jsonb"),
    (LargeBinary, "text"),  # hex, decoded in the SELECT
    (String, "text"),  # String covers Text
)


def _record_type(table: Table, column: str) -> str:
    column_type = table.c[column].type
    for sql_type, name in _RECORD_TYPES:
        if isinstance(column_type, sql_type):
            return name
    raise TypeError(f"{table.name}.{column}: no record type for {column_type!r}")


def _json_value(value: Any) -> Any:
    """A bytea or timestamp value as JSON can carry it: hex, or ISO 8601 (the standard library's JSON
    fallback cannot write datetimes)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _record_set(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> tuple[list[str], str, dict[str, str]]:
    """(the rows' columns, `jsonb_to_recordset(...) AS r(...)` for them, its bound parameter)."""
    quote = conn.dialect.identifier_preparer.quote
    columns = list(rows[0])
    # Only columns that need converting are touched; the rest go to orjson as they are.
    converted = [c for c in columns if isinstance(table.c[c].type, (LargeBinary, DateTime))]
    if converted:
        rows = [{**row, **{c: _json_value(row[c]) for c in converted}} for row in rows]
    declared = ", ".join(f"{quote(c)} {_record_type(table, c)}" for c in columns)
    return columns, f"jsonb_to_recordset(%(rows)s::jsonb) AS r({declared})", {"rows": dumps_text(list(rows))}


def _selected(conn: Connection, table: Table, column: str) -> str:
    """The record set's column as the table stores it (bytea arrives as hex)."""
    name = f"r.{conn.dialect.identifier_preparer.quote(column)}"
    return f"decode({name}, 'hex')" if isinstance(table.c[column].type, LargeBinary) else name


def insert_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    returning: Sequence[str] = (),
    conflict_ignored_on: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """INSERT `rows` (column name -> value; every row names the same columns) into `table` in the connection's
    transaction. With `conflict_ignored_on` (a unique key's columns), a row whose key exists is skipped
    (ON CONFLICT DO NOTHING). Returns the `returning` columns of each inserted row, in no promised order."""
    if not rows:
        return []
    quote = conn.dialect.identifier_preparer.quote
    columns, record_set, params = _record_set(conn, table, rows)
    statement = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"SELECT {', '.join(_selected(conn, table, c) for c in columns)} FROM {record_set}"
    )
    if conflict_ignored_on:
        statement += f" ON CONFLICT ({', '.join(quote(c) for c in conflict_ignored_on)}) DO NOTHING"
    if returning:
        statement += f" RETURNING {', '.join(quote(c) for c in returning)}"
    result = conn.exec_driver_sql(statement, params)
    return [tuple(r) for r in result] if returning else []


def update_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: Sequence[str],
    also_set: Mapping[str, str] | None = None,
) -> int:
    """UPDATE the rows of `table` whose `key` columns match each of `rows` (column name -> value; every row
    names the same columns, the key's included), setting the other columns to the row's values, and the
    columns of `also_set` to its SQL expressions (constants of the caller's code, never data). One statement
    for all rows; returns how many rows were updated."""
    if not rows:
        return 0
    quote = conn.dialect.identifier_preparer.quote
    columns, record_set, params = _record_set(conn, table, rows)
    assignments = [f"{quote(c)} = {_selected(conn, table, c)}" for c in columns if c not in key]
    assignments += [f"{quote(c)} = {expression}" for c, expression in (also_set or {}).items()]
    matched = " AND ".join(f"{quote(table.name)}.{quote(c)} = r.{quote(c)}" for c in key)
    statement = f"UPDATE {quote(table.name)} SET {', '.join(assignments)} FROM {record_set} WHERE {matched}"
    return conn.exec_driver_sql(statement, params).rowcount
