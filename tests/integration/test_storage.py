"""PostgreSQL storage: migrations up and down agree with the models; the batch write is idempotent;
retention erases texts of every revision and prunes delivery bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from moderation.posts import Post
from moderation.signals import Action, Signal, Verdict
from moderation.storage import migrate
from moderation.storage.database import make_engine
from moderation.storage.models import Base
from moderation.storage.queries import VerdictFilter, completed_batches, signals_for, stored_verdicts, verdict_rows
from moderation.storage.retention import erase_old_texts, prune_delivery
from moderation.storage.writes import (
    Source,
    content_hash,
    message_key,
    state_query,
    store_batch,
    stored_state,
    verdict_message,
)
from tests.integration.storage_support import database_url, db

pytestmark = pytest.mark.integration
__all__ = ["database_url", "db"]  # fixtures


def test_migrations_go_up_and_down_and_match_the_models(database_url: str) -> None:
    migrate.upgrade(database_url)
    assert migrate.current_revision(database_url) == "0006_review_state"
    engine = make_engine(database_url, 1)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
        indexes = {i["name"] for i in inspect(conn).get_indexes("verdicts")}
        assert "ix_verdicts_tenant_action_decided_at" in indexes
        assert "ix_outbox_unpublished" in {i["name"] for i in inspect(conn).get_indexes("outbox")}
    migrate.downgrade(database_url, "base")
    assert migrate.current_revision(database_url) is None
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(database_url)
    assert migrate.current_revision(database_url) == "0006_review_state"
    engine.dispose()


def verdict_for(post: Post, action: Action = Action.REVIEW) -> Verdict:
    signals = (
        Signal("watermark", "1.0", 0.9, "watermarked", details={"scheme": "s", "z_score": 7.5, "inf": float("inf")}),
        Signal("spam", "1.0", None, abstained=True, reason="empty"),
    )
    return Verdict(post.id, post.tenant, action, 0.9, "test-v1", signals, ("watermark:s",))


def test_store_batch_is_idempotent_per_tenant_and_post(db: Engine) -> None:
    posts = [Post(id=f"p{i}", text=f"text {i}", tenant="a", author="x") for i in range(5)]
    posts.append(Post(id="p0", text="same id, other tenant", tenant="b"))
    verdicts = [verdict_for(p) for p in posts]
    sources = [Source("posts", 0, i) for i in range(len(posts))]
    with db.begin() as conn:
        first = store_batch(conn, posts, verdicts, sources)
    assert len(first.inserted) == 6 and not first.existing
    # Redelivered (same texts), with a different (later) verdict: nothing changes, nothing is added.
    with db.begin() as conn:
        again = store_batch(conn, posts, [verdict_for(p, Action.ALLOW) for p in posts], sources)
    assert not again.inserted and len(again.existing) == 6
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM verdicts")).scalar_one() == 6
        assert conn.execute(text("SELECT count(*) FROM signals")).scalar_one() == 12
        assert {r for (r,) in conn.execute(text("SELECT DISTINCT action FROM verdicts"))} == {"review"}
        rows = verdict_rows(conn, VerdictFilter(tenant="a", action="review"))
        assert len(rows) == 5 and rows[0]["author"] == "x"
        assert rows[0]["signals"][0]["z_score"] == 7.5
        assert rows[0]["signals"][0]["inf"] is None  # JSONB has no infinity; stored as null
        out = stored_verdicts(conn, [("b", "p0")])
        assert out[0]["tenant"] == "b" and out[0]["action"] == "review"


def test_a_batch_holding_one_post_twice_stores_it_once(db: Engine) -> None:
    post = Post(id="dup", text="t", tenant="a")
    with db.begin() as conn:
        result = store_batch(conn, [post, post], [verdict_for(post), verdict_for(post)])
    assert result.inserted == frozenset({("a", "dup")})


def test_retention_erases_old_texts_but_keeps_posts_under_review(db: Engine) -> None:
    posts = [Post(id="old-allowed", text="a", tenant="t"), Post(id="old-review", text="b", tenant="t")]
    with db.begin() as conn:
        store_batch(conn, posts, [verdict_for(posts[0], Action.ALLOW), verdict_for(posts[1], Action.REVIEW)])
    with db.begin() as conn:
        erased = erase_old_texts(conn, days=30, now=datetime.now(UTC) + timedelta(days=31))
    assert erased == 1
    with db.connect() as conn:
        texts: dict[str, str | None] = {r[0]: r[1] for r in conn.execute(text("SELECT post_id, text FROM posts"))}
    assert texts == {"old-allowed": None, "old-review": "b"}


def test_existing_posts_become_revision_one_when_migrating(database_url: str) -> None:
    migrate.upgrade(database_url, "0003_review_security")
    engine = make_engine(database_url, 1)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO posts (tenant, post_id, text) VALUES ('t', 'p', 'hello')"))
        conn.execute(
            text(
                "INSERT INTO verdicts (tenant, post_id, action, score, policy_version) VALUES ('t', 'p', 'allow', 0, 'v')"
            )
        )
    migrate.upgrade(database_url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT revision, revision_count, content_hash FROM posts")).one()
        assert (row.revision, row.revision_count) == (1, 1) and row.content_hash == content_hash("hello")
        assert conn.execute(text("SELECT revision, text FROM post_revisions")).one() == (1, "hello")
        assert [r["revision"] for r in verdict_rows(conn, VerdictFilter())] == [1]
    # And back: one verdict per post again (the current revision's).
    with engine.begin() as conn:
        store_batch(conn, [Post(id="p", text="edited", tenant="t")], [verdict_for(Post(id="p", text="x", tenant="t"))])
    migrate.downgrade(database_url, "0003_review_security")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM verdicts")).scalar_one() == 1
    engine.dispose()


def test_retention_erases_old_revisions_and_prunes_delivery_rows(db: Engine) -> None:
    post = Post(id="p", text="first", tenant="t")
    with db.begin() as conn:
        store_batch(conn, [post], [verdict_for(post, Action.ALLOW)], outbox_topic="verdicts")
        edited = Post(id="p", text="second", tenant="t")
        store_batch(conn, [edited], [verdict_for(edited, Action.ALLOW)], outbox_topic="verdicts")
        conn.execute(
            text("UPDATE outbox SET published_at = now() - interval '2 days' WHERE id = (SELECT min(id) FROM outbox)")
        )
        conn.execute(text("INSERT INTO batch_receipts VALUES ('old', now() - interval '2 days', 1, 1, 0, 0)"))
        conn.execute(text("INSERT INTO batch_receipts VALUES ('new', now(), 1, 1, 0, 0)"))
    later = datetime.now(UTC) + timedelta(days=31)
    with db.begin() as conn:
        assert erase_old_texts(conn, days=30, now=later) == 1
        assert prune_delivery(conn) == 2
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM post_revisions WHERE text IS NOT NULL")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM outbox")).scalar_one() == 1  # the unpublished one stays
        assert completed_batches(conn, ["old", "new"]) == {"new"}


def test_signals_keep_what_the_contract_says_of_them(db: Engine) -> None:
    """A finding and a degraded abstention survive storage; the review filter reads `finding`, not label lists."""
    post = Post(id="c1", text="text", tenant="a", author="x")
    signals = (
        Signal("acme", "0.3", 1.0, "toxic", finding=True, details={"hits": 2}),
        Signal("rate", "1.0", None, abstained=True, reason="state_unavailable", degraded=True),
    )
    verdict = Verdict(post.id, post.tenant, Action.REVIEW, 0.9, "test-v1", signals, ("acme:toxic",))
    with db.begin() as conn:
        store_batch(conn, [post], [verdict], [Source("posts", 0, 99)])
    with db.connect() as conn:
        (verdict_id,) = conn.execute(text("SELECT id FROM verdicts WHERE post_id = 'c1'")).scalars()
        stored = signals_for(conn, [verdict_id])[verdict_id]
    assert stored == [s.to_json(with_evidence=False) for s in signals]


def test_looking_up_a_batch_of_keys_is_one_join_not_an_or_of_pairs(db: Engine) -> None:
    """`(tenant, post_id) IN (pairs)` made PostgreSQL plan an OR of 512 pairs per batch lookup, 140-200 ms
    of planning each (moderation/storage/keys.py): the lookup must stay one join over the primary key."""
    keys = [("t", f"p{i}") for i in range(512)]
    posts = [Post(id=p, text=f"text {p}", tenant=t) for t, p in keys]
    with db.begin() as conn:
        store_batch(conn, posts, [verdict_for(p) for p in posts])
        conn.exec_driver_sql("ANALYZE posts")
    for lock in (False, True):
        query = state_query([*keys, ("t", "p0"), ("other", "p1")], lock=lock).compile(dialect=db.dialect)
        with db.begin() as conn:
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + str(query), query.params))
            assert len(stored_state(conn, [*keys, ("t", "p0"), ("other", "p1")], lock=lock)) == 512
        assert "Function Scan on wanted" in plan, plan
        assert "BitmapOr" not in plan and " OR " not in plan, plan
        assert plan.count("\n") < 12, plan  # a handful of nodes, not one per key


def test_text_that_looks_like_sql_or_placeholders_is_stored_verbatim(db: Engine) -> None:
    """The batch write sends its rows as one JSON document (storage/bulk.py): a post made of quotes,
    backslashes, format placeholders and casts must read back byte for byte, in the text, the metadata and
    the signals, its time to the microsecond, and the outbox's bytes unchanged."""
    nasty = "100% sure: %s %(text)s %% '); DROP TABLE posts; -- \\' \\\\ \" ::jsonb $1 ?\N{RIGHT-TO-LEFT OVERRIDE}"
    when = datetime(2026, 11, 24, 3, 4, 5, 123456, tzinfo=UTC)
    post = Post(
        id=nasty[:40], text=nasty, tenant="t%s'", author="a\\%", metadata={"k%s": nasty, "n": [nasty]}, created_at=when
    )
    verdict = Verdict(
        post.id, post.tenant, Action.REVIEW, 0.5, "p%s", (Signal("spam", "1.0", 0.5, "x%s'", details={"q": nasty}),)
    )
    with db.begin() as conn:
        store_batch(conn, [post], [verdict], outbox_topic="verdicts")
    with db.connect() as conn:
        row = conn.execute(text("SELECT post_id, tenant, author, text, metadata, created_at FROM posts")).one()
        assert tuple(row) == (post.id, post.tenant, post.author, nasty, post.metadata, when)
        assert conn.execute(text("SELECT text FROM post_revisions")).scalar_one() == nasty
        assert conn.execute(text("SELECT policy_version FROM verdicts")).scalar_one() == "p%s"
        assert tuple(conn.execute(text("SELECT label, details FROM signals")).one()) == ("x%s'", {"q": nasty})
        key, value = conn.execute(text("SELECT key, value FROM outbox")).one()
        assert bytes(key) == message_key(post.tenant, post.id)
        assert bytes(value) == verdict_message(verdict, 1)
