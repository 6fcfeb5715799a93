"""Looking posts up by many (tenant, post_id) keys in one statement.

`WHERE (tenant, post_id) IN ((...), (...), ...)` is what SQLAlchemy's `tuple_(...).in_(...)` renders, and
PostgreSQL's planner turns a list of pairs into an OR of pairs, one index probe each: planning 512 keys
took 140-200 ms against 10-20 ms to run it (EXPLAIN ANALYZE, PostgreSQL 15), and the workers ran such a
lookup twice per batch, which made it the largest single cost of storing a post. Joining a two-column
`unnest` of two arrays instead plans in about a millisecond whatever the number of keys, and runs as one
nested loop over the primary key.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, Text, and_, func, literal
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.expression import TableValuedAlias

Key = tuple[str, str]  # (tenant, post_id)


def key_table(keys: Iterable[Key]) -> TableValuedAlias:
    """The distinct keys as a table with columns `tenant` and `post_id`, to join on."""
    distinct = sorted(set(keys))
    tenants = literal([t for t, _ in distinct], ARRAY(Text))
    post_ids = literal([p for _, p in distinct], ARRAY(Text))
    return func.unnest(tenants, post_ids).table_valued("tenant", "post_id").render_derived(name="wanted")


def matches(
    table: TableValuedAlias, tenant: InstrumentedAttribute[str], post_id: InstrumentedAttribute[str]
) -> ColumnElement[bool]:
    """The join condition between a key table and a table's (tenant, post_id) columns."""
    return and_(tenant == table.c.tenant, post_id == table.c.post_id)
