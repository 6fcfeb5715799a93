"""A database without planner statistics (new, or autovacuum off) must not make every stored post scan its
tenant: workers analyze the written tables that hold rows but were never analyzed."""

from __future__ import annotations

from sqlalchemy import Engine, text

from moderation.posts import Post
from moderation.storage.statistics import analyze_unanalyzed
from moderation.storage.writes import store_batch
from tests.integration.storage_support import database_url, db  # noqa: F401 - fixtures
from tests.integration.test_storage import verdict_for

FK_LOOKUP = "EXPLAIN SELECT 1 FROM posts WHERE tenant = 'a' AND post_id = 'p7' FOR KEY SHARE"


def _plan(conn: object) -> str:
    return "\n".join(r[0] for r in conn.execute(text(FK_LOOKUP)))  # type: ignore[attr-defined]


def test_tables_with_rows_and_no_statistics_are_analyzed_once_and_the_key_lookup_uses_the_primary_key(
    db: Engine,  # noqa: F811 - the fixture
) -> None:
    # One tenant's posts, with few distinct authors: the shape that fooled the planner without statistics.
    posts = [Post(id=f"p{i}", text=f"text {i}", tenant="a", author=f"user{i % 3}") for i in range(1200)]
    with db.begin() as conn:
        store_batch(conn, posts, [verdict_for(p) for p in posts])
    with db.begin() as conn:
        conn.execute(text("SELECT pg_stat_force_next_flush()"))  # the row counts the check reads
    with db.begin() as conn:
        before = _plan(conn)
    # The trap, as PostgreSQL 15 plans it without statistics: the lookup scans the tenant through another index.
    assert "pk_posts" not in before, f"the planner chose the primary key even without statistics:\n{before}"
    with db.begin() as conn:
        analyzed = analyze_unanalyzed(conn)
    assert analyzed == ["post_revisions", "posts", "signals", "verdicts"]
    with db.begin() as conn:
        assert "pk_posts" in _plan(conn), _plan(conn)
        # Analyzed now: the next check has nothing to do.
        assert analyze_unanalyzed(conn) == []


def test_small_tables_are_left_to_autovacuum(db: Engine) -> None:  # noqa: F811 - the fixture
    posts = [Post(id=f"q{i}", text=f"text {i}", tenant="a") for i in range(20)]
    with db.begin() as conn:
        store_batch(conn, posts, [verdict_for(p) for p in posts])
    with db.begin() as conn:
        assert analyze_unanalyzed(conn) == []
