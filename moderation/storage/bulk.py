"""Inserting many rows in one statement, without SQLAlchemy's per-row parameter processing.

A stored post is eight rows and about 80 bound values. Through `conn.execute(insert(Table), rows)`,
SQLAlchemy builds a dict per row, runs each value's bind processor and renders its "insertmanyvalues"
pages in Python. Here psycopg2 renders each row with one C call (`cursor.mogrify`, the driver's own
quoting, as `psycopg2.extras.execute_values` does), and the statement still goes through SQLAlchemy's
connection, so errors are translated and a dead connection is invalidated as for any other statement.
JSONB values are serialized here (storage/jsonb.py, the engine's own serializer) and cast in the statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects.postgresql import JSONB

from moderation.storage.jsonb import dumps_text

PAGE_ROWS = 1000  # rows per INSERT statement, as SQLAlchemy's insertmanyvalues uses


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
    columns = list(rows[0])
    jsonb = [isinstance(table.c[c].type, JSONB) for c in columns]
    template = "(" + ", ".join("%s::jsonb" if j else "%s" for j in jsonb) + ")"
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) VALUES "
    tail = ""
    if conflict_ignored_on:
        tail += f" ON CONFLICT ({', '.join(quote(c) for c in conflict_ignored_on)}) DO NOTHING"
    if returning:
        tail += f" RETURNING {', '.join(quote(c) for c in returning)}"
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        rendered = [
            cursor.mogrify(template, [dumps_text(row[c]) if j else row[c] for c, j in zip(columns, jsonb, strict=True)])
            for row in rows
        ]
    finally:
        cursor.close()
    out: list[tuple[Any, ...]] = []
    for lo in range(0, len(rendered), PAGE_ROWS):
        # no_parameters: the statement is complete; a "%" in a post's text must not read as a placeholder.
        statement = head + b",".join(rendered[lo : lo + PAGE_ROWS]).decode() + tail
        result = conn.exec_driver_sql(statement, execution_options={"no_parameters": True})
        if returning:
            out.extend(tuple(r) for r in result)
    return out
