"""Write errors injected at the database, for real: triggers that raise, a slow database hitting its
statement timeout, values PostgreSQL refuses. A permanent error dead-letters only the post that caused it
and lets the rest of the batch through; a transient one stores nothing and succeeds when retried."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, text

from moderation.errors import StorageRejected, StorageUnavailable
from moderation.posts import Post
from moderation.storage.database import translate_errors
from moderation.storage.queries import completed_batches
from moderation.storage.writes import store_batch
from moderation.testing.synthetic import human_posts
from tests.integration.storage_support import batch, database_url, db, moderation_engine, post, runtime_for
from workers.processing import process_batch

pytestmark = pytest.mark.integration
__all__ = ["database_url", "db"]  # fixtures


def trigger(conn: Any, body: str) -> None:
    conn.execute(
        text(f"CREATE FUNCTION inject() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NEW; END $$")
    )
    conn.execute(text("CREATE TRIGGER inject BEFORE INSERT ON post_revisions FOR EACH ROW EXECUTE FUNCTION inject()"))


def drop_trigger(conn: Any) -> None:
    conn.execute(text("DROP TRIGGER inject ON post_revisions"))
    conn.execute(text("DROP FUNCTION inject()"))


def table_counts(db: Engine) -> dict[str, int]:
    with db.connect() as conn:
        return {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("posts", "verdicts", "outbox", "batch_receipts")
        }


def test_a_post_the_database_refuses_is_dead_lettered_and_the_rest_is_stored(db: Engine) -> None:
    with db.begin() as conn:
        # A data exception (SQLSTATE class 22) for one post's content, raised inside PostgreSQL.
        trigger(
            conn,
            "IF NEW.text LIKE '%poison%' THEN RAISE EXCEPTION 'refused by policy' USING ERRCODE = '22023'; END IF;",
        )
    texts = human_posts(9, seed=31)
    posts = [post(i, t, offset=i) for i, t in enumerate(texts)]
    posts.insert(4, post("bad", "a poison post", offset=50))
    result = process_batch(runtime_for(db), batch("b1", *posts))
    assert result == {"posts": 10, "stored": 9, "redelivered": 0, "dead_lettered": 1}
    with db.connect() as conn:
        ids = {r for (r,) in conn.execute(text("SELECT post_id FROM posts"))}
        letters = [
            json.loads(bytes(v)) for (v,) in conn.execute(text("SELECT value FROM outbox WHERE topic = 'posts.dlq'"))
        ]
        verdict_messages = conn.execute(text("SELECT count(*) FROM outbox WHERE topic = 'verdicts'")).scalar_one()
        assert completed_batches(conn, ["b1"]) == {"b1"}
    assert ids == {f"p{i}" for i in range(9)}
    assert verdict_messages == 9
    (letter,) = letters
    assert letter["reason"] == "storage_rejected" and "refused by policy" in letter["detail"]
    assert letter["source"]["offset"] == 50 and json.loads(letter["raw"])["id"] == "pbad"


def test_an_unknown_database_error_is_transient_stores_nothing_and_the_retry_succeeds(db: Engine) -> None:
    with db.begin() as conn:
        trigger(conn, "RAISE EXCEPTION 'disk on fire';")  # P0001: not known to be the content's fault
    runtime = runtime_for(db)
    payload = batch("b1", *(post(i, t, offset=i) for i, t in enumerate(human_posts(5, seed=41))))
    before = table_counts(db)
    with pytest.raises(StorageUnavailable, match="P0001"):
        process_batch(runtime, payload)
    assert table_counts(db) == before  # all or nothing: no receipt, so the consumer will not commit
    with db.begin() as conn:
        drop_trigger(conn)
    assert process_batch(runtime, payload)["stored"] == 5


def test_a_slow_database_hits_the_statement_timeout_and_that_is_transient(db: Engine, database_url: str) -> None:
    with db.begin() as conn:
        trigger(conn, "PERFORM pg_sleep(5);")
    # The worker's connections carry a statement timeout (as a deployment would set one).
    slow_runtime = runtime_for(make_engine_with_timeout(database_url, 300))
    payload = batch("b1", post(1, "a perfectly normal post", offset=1))
    with pytest.raises(StorageUnavailable, match="57014"):
        process_batch(slow_runtime, payload)
    assert table_counts(db)["batch_receipts"] == 0
    with db.begin() as conn:
        drop_trigger(conn)
    assert process_batch(slow_runtime, payload)["stored"] == 1
    slow_runtime.db.dispose()


def make_engine_with_timeout(url: str, ms: int) -> Engine:
    from sqlalchemy import create_engine

    return create_engine(url, connect_args={"options": f"-c statement_timeout={ms}"}, pool_pre_ping=True)


@pytest.mark.parametrize(
    ("field", "value"),
    [("tenant", "t" * 129), ("author", "a" * 257), ("text", "nul \x00 byte"), ("metadata", {"k": "nul \x00"})],
)
def test_values_that_skip_validation_are_refused_by_postgresql_as_permanent(db: Engine, field: str, value: Any) -> None:
    """Defence in depth: if a post reached the database unvalidated, the refusal is classified permanent."""
    good = Post(id="p1", text="fine", tenant="acme", author="u")
    bad = Post(**{**good.__dict__, field: value})
    (verdict,) = moderation_engine().moderate([good])
    verdict = type(verdict)(**{**verdict.__dict__, "tenant": bad.tenant})
    with pytest.raises(StorageRejected), translate_errors(), db.begin() as conn:
        store_batch(conn, [bad], [verdict])
    assert table_counts(db)["posts"] == 0
