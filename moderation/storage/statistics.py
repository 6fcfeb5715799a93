"""Planner statistics for the tables every batch writes, where nothing else provides them.

PostgreSQL checks each stored revision's foreign key (and each signal's) with a small query whose plan
depends on the tables' statistics. A table that was never analyzed (a new database, or autovacuum off, as on
some managed or test servers) has none, and the planner then picks an index on (tenant, author, created_at)
for a (tenant, post_id) lookup: every check scans the tenant's posts, so storing gets slower as the table
grows (measured: 0.35 ms per row at 6,000 posts; a soak's stored rate fell from 500 to 150 posts/s within two
minutes with autovacuum off). Autovacuum analyzes a table once it has changed enough, when it runs; workers
also analyze a written table that holds rows but has never been analyzed, once, so that neither a fresh
deployment nor a server without autovacuum degrades.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text

# The tables a batch writes whose foreign-key checks or lookups need good plans.
WRITTEN_TABLES = ("posts", "post_revisions", "verdicts", "signals")
# Below this many rows every plan is cheap, and statistics taken now would soon be unrepresentative.
MIN_ROWS = 1_000
# Two workers analyzing the same table would only wait for each other: one at a time.
_ADVISORY_LOCK = 0x6D6F6465  # "mode"


def analyze_unanalyzed(conn: Connection, tables: Sequence[str] = WRITTEN_TABLES, min_rows: int = MIN_ROWS) -> list[str]:
    """ANALYZE those of `tables` that hold at least `min_rows` rows and were never analyzed, by hand or by
    autovacuum. Returns the tables analyzed (none when another process holds the lock). Run it in a
    transaction of its own: ANALYZE takes a lock that concurrent ANALYZEs of the table wait for."""
    if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK}).scalar_one():
        return []
    names = list(
        conn.execute(
            text(
                "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(:tables) AND schemaname = current_schema()"
                " AND last_analyze IS NULL AND last_autoanalyze IS NULL AND n_live_tup >= :min_rows"
                " ORDER BY relname"
            ),
            {"tables": list(tables), "min_rows": min_rows},
        ).scalars()
    )
    for name in names:
        conn.execute(text(f'ANALYZE "{name}"'))  # names come from the catalog, not from input
    return names
