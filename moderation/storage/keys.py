"""Looking posts up by many (tenant, post_id) keys in one statement.

`WHERE (tenant, post_id) IN ((...), (...), ...)` is what SQLAlchemy's `tuple_(...).in_(...)` renders, and
PostgreSQL's planner turns a list of pairs into an OR of pairs, one index probe each, at a cost per key that
grows with the list: 18 us a key at 32 keys, 76 at 512, i.e. 39 ms for a full batch (140-200 ms on a slower
host), and the workers run such a lookup twice per batch. Joining a two-column `unnest` of two arrays
instead costs 3-10 us a key whatever their number, and runs as one nested loop over the primary key.
`python -m tests.benchmarks.bench_key_lookup` measures both.
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
