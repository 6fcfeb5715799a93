"""Write errors injected at the database, for real: triggers that raise, a slow database hitting its
statement timeout, values PostgreSQL refuses. A permanent error dead-letters only the post that caused it
and lets the rest of the batch through; a transient one stores nothing and succeeds when retried."""

from __future__ import annotations

import json
import math
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


def test_whatever_validation_accepts_postgresql_stores(database_url: str) -> None:
    """Hypothesis against the real database: any post that moderation/posts.py accepts — arbitrary Unicode
    (astral, combining, bidi, control characters in the text), identifiers at their length limits, metadata
    at its depth limit — is stored without a database error, and reads back identical."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from moderation.errors import InvalidPost
    from moderation.posts import MAX_AUTHOR_CHARS, MAX_ID_CHARS, MAX_TENANT_CHARS, post_from_json
    from moderation.signals import Action, Verdict
    from moderation.storage import migrate
    from moderation.storage.database import make_engine

    migrate.upgrade(database_url)
    engine = make_engine(database_url, 1)
    any_char = st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
    no_controls = st.characters(codec=None, exclude_categories=("Cc", "Cs"))

    def ident(n: int) -> st.SearchStrategy[str]:
        valid = st.text(no_controls, min_size=1, max_size=n).filter(str.strip)
        return valid | valid | st.text(any_char, min_size=1, max_size=n + 2) | st.just("\U0001f600" * n)

    leaf = (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(no_controls, max_size=20)
        | st.text(any_char, max_size=5)
    )
    meta = st.recursive(
        leaf,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(any_char, max_size=8), c, max_size=3),
        max_leaves=20,
    )
    seen = {"stored": 0, "refused": 0}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.fixed_dictionaries(
            {
                "id": ident(MAX_ID_CHARS),
                "text": st.text(any_char, max_size=300),
                "tenant": ident(MAX_TENANT_CHARS),
                "author": ident(MAX_AUTHOR_CHARS),
                "metadata": st.dictionaries(st.text(any_char, max_size=8), meta, max_size=4),
            }
        )
    )
    def check(obj: dict[str, Any]) -> None:
        try:
            p = post_from_json(obj)
        except InvalidPost:
            seen["refused"] += 1
            return
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM posts"))
            store_batch(conn, [p], [Verdict(p.id, p.tenant, Action.ALLOW, 0.0, "v", ())])
        with engine.connect() as conn:
            row = conn.execute(text("SELECT tenant, post_id, author, text, metadata FROM posts")).one()
        assert (row.tenant, row.post_id, row.author, row.text) == (p.tenant, p.id, p.author, p.text)
        assert same_json(row.metadata, p.metadata)
        seen["stored"] += 1

    try:
        check()
    finally:
        engine.dispose()
    assert seen["stored"] >= 30 and seen["refused"] >= 10, seen  # both sides of the boundary were exercised


def same_json(stored: Any, given: Any) -> bool:
    """Equal as JSON values; JSONB keeps numbers as numeric, so 1.5e17 may come back as an integer."""
    if isinstance(given, dict):
        return (
            isinstance(stored, dict)
            and stored.keys() == given.keys()
            and all(same_json(stored[k], v) for k, v in given.items())
        )
    if isinstance(given, list):
        return isinstance(stored, list) and len(stored) == len(given) and all(map(same_json, stored, given))
    if isinstance(given, float) and not isinstance(stored, bool) and isinstance(stored, int | float):
        return math.isclose(stored, given, rel_tol=1e-15, abs_tol=1e-300)
    return bool(stored == given) and type(stored) is type(given)
