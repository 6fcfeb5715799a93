"""Edits are revisions: an edited post is moderated again, everything shows it once at its current
revision, history is kept, a moderator's decision applies to the revision they saw, and a true
redelivery changes nothing. Real PostgreSQL, the real moderation engine, workers/processing.py."""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stdout
from typing import Any

import pytest
from sqlalchemy import Engine, text

from moderation.cli import main
from moderation.errors import Conflict
from moderation.review import service
from moderation.review.auth import Principal
from moderation.storage.queries import VerdictFilter, completed_batches, verdict_count, verdict_rows
from moderation.testing.synthetic import human_posts, watermarked_post
from tests.integration.storage_support import batch, database_url, db, post, runtime_for, settings
from workers.processing import process_batch

pytestmark = pytest.mark.integration
__all__ = ["database_url", "db"]  # fixtures


def outbox(conn: Any, topic: str = "verdicts") -> list[dict[str, Any]]:
    rows = conn.execute(text("SELECT value FROM outbox WHERE topic = :t ORDER BY id"), {"t": topic})
    return [json.loads(bytes(v)) for (v,) in rows]


def moderator(conn: Any) -> Principal:
    uid = conn.execute(
        text("INSERT INTO users (username, password_hash) VALUES ('mod', 'not-a-login') RETURNING id")
    ).scalar_one()
    return Principal(uid, "mod", {"acme": "moderator"})


def test_a_post_edited_to_watermarked_text_is_moderated_again_and_ends_at_review(db: Engine) -> None:
    runtime = runtime_for(db)
    harmless = human_posts(1, seed=11)[0]
    machine = watermarked_post(150, settings().watermark.schemes[0], seed=4242)

    first = process_batch(runtime, batch("b1", post(1, harmless, offset=10)))
    assert first == {"posts": 1, "stored": 1, "redelivered": 0, "dead_lettered": 0}
    with db.connect() as conn:
        (before,) = verdict_rows(conn, VerdictFilter())
    assert before["action"] == "allow" and before["revision"] == 1

    # The same (tenant, id) with new text: before the fix this was skipped as a redelivery.
    edit = process_batch(runtime, batch("b2", post(1, machine, offset=11)))
    assert edit == {"posts": 1, "stored": 1, "redelivered": 0, "dead_lettered": 0}
    with db.connect() as conn:
        rows = verdict_rows(conn, VerdictFilter())
        history = verdict_rows(conn, VerdictFilter(history=True))
        published = outbox(conn)
        stored_text = conn.execute(text("SELECT text FROM posts WHERE post_id = 'p1'")).scalar_one()
        assert verdict_count(conn) == 1
    assert [(r["id"], r["revision"], r["action"]) for r in rows] == [("p1", 2, "review")]
    assert any(s["plugin"] == "watermark" and s["label"] == "watermarked" for s in rows[0]["signals"])
    assert sorted((r["revision"], r["action"], r["current"]) for r in history) == [
        (1, "allow", False),
        (2, "review", True),
    ]
    assert stored_text == machine
    # The output topic gets both, in order, each with its revision: a reader keeps the highest.
    assert [(m["id"], m["revision"], m["action"]) for m in published] == [("p1", 1, "allow"), ("p1", 2, "review")]


def test_a_redelivery_changes_nothing_and_an_old_message_never_becomes_current(db: Engine) -> None:
    runtime = runtime_for(db)
    texts = human_posts(6, seed=21)
    posts = [post(i, t, offset=100 + i) for i, t in enumerate(texts[:5])]
    assert process_batch(runtime, batch("b1", *posts))["stored"] == 5

    def counts() -> tuple[int, ...]:
        with db.connect() as conn:
            return tuple(
                conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("post_revisions", "verdicts", "signals", "outbox", "batch_receipts")
            )

    snapshot = counts()
    # The same batch again (a resend): the receipt answers, nothing runs.
    assert process_batch(runtime, batch("b1", *posts)) == {
        "posts": 5,
        "stored": 5,
        "redelivered": 0,
        "dead_lettered": 0,
    }
    # The same posts in another batch (the consumer restarted): each is a redelivery.
    assert process_batch(runtime, batch("b2", *posts)) == {
        "posts": 5,
        "stored": 0,
        "redelivered": 5,
        "dead_lettered": 0,
    }
    after = counts()
    assert after[:4] == snapshot[:4] and after[4] == snapshot[4] + 1

    # p0 edited at offset 200; then an older message of p0 (offset 150, text never seen) arrives late.
    process_batch(runtime, batch("b3", post(0, "edited text of p0", offset=200)))
    late = process_batch(runtime, batch("b4", post(0, texts[5], offset=150)))
    assert late["stored"] == 1  # kept as history ...
    with db.connect() as conn:
        current = conn.execute(text("SELECT revision, revision_count, text FROM posts WHERE post_id = 'p0'")).one()
        assert completed_batches(conn, ["b1", "b2", "b3", "b4", "nope"]) == {"b1", "b2", "b3", "b4"}
        published = [m for m in outbox(conn) if m["id"] == "p0"]
    assert current.revision == 2 and current.revision_count == 3 and current.text == "edited text of p0"
    assert [m["revision"] for m in published] == [1, 2]  # ... and never published as current


def test_a_decision_applies_to_the_revision_the_moderator_saw(db: Engine) -> None:
    runtime = runtime_for(db)
    scheme = settings().watermark.schemes[0]
    process_batch(runtime, batch("b1", post(1, watermarked_post(150, scheme, seed=7), offset=1)))
    with db.begin() as conn:
        who = moderator(conn)
        (queued,) = service.queue(conn, who, service.QueueFilter())
        assert queued["revision"] == 1 and queued["review_state"] == "pending"
        decided = service.decide(conn, who, "acme", "p1", "overturn", "a quote, not machine text", revision=1)
        assert decided["effective_action"] == "allow" and decided["review_state"] == "decided"

    # The author edits it to other machine text: the overturn was about revision 1, not this one.
    process_batch(runtime, batch("b2", post(1, watermarked_post(150, scheme, seed=8), offset=2)))
    with db.begin() as conn:
        (queued,) = service.queue(conn, who, service.QueueFilter())
        assert queued["revision"] == 2 and queued["review_state"] == "pending"
        assert queued["effective_action"] == "review"
        (row,) = verdict_rows(conn, VerdictFilter())
        assert row["effective_action"] == "review" and row["review_state"] == "pending"
    with db.begin() as conn, pytest.raises(Conflict, match="edited"):
        service.decide(conn, who, "acme", "p1", "overturn", "decided on what I saw", revision=1)
    with db.begin() as conn:
        service.decide(conn, who, "acme", "p1", "confirm", "machine text again", action="quarantine", revision=2)
        events = conn.execute(
            text("SELECT revision, decision FROM review_events WHERE kind = 'decided' ORDER BY id")
        ).all()
        (row,) = verdict_rows(conn, VerdictFilter())
    assert [tuple(e) for e in events] == [(1, "overturn"), (2, "confirm")]
    assert row["effective_action"] == "quarantine"


def test_verdicts_command_shows_each_post_once_and_history_on_request(
    db: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = runtime_for(db)
    process_batch(runtime, batch("b1", post(1, "first text", offset=1), post(2, "other post", offset=2)))
    process_batch(runtime, batch("b2", post(1, "second text", offset=3)))
    monkeypatch.setenv("MODERATION_DATABASE_URL", database_url)

    def run(*args: str) -> list[dict[str, Any]]:
        out = io.StringIO()
        with redirect_stdout(out):
            assert main(["verdicts", "--format", "jsonl", *args]) == 0
        return [json.loads(line) for line in out.getvalue().splitlines()]

    assert sorted((r["id"], r["revision"]) for r in run()) == [("p1", 2), ("p2", 1)]
    assert sorted((r["id"], r["revision"], r["current"]) for r in run("--history")) == [
        ("p1", 1, False),
        ("p1", 2, True),
        ("p2", 1, True),
    ]
    table = io.StringIO()
    with redirect_stdout(table):
        main(["verdicts", "--history"])
    assert "1 (old)" in table.getvalue()


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def test_end_to_end_an_edit_reaches_the_output_topic_at_its_latest_revision(tmp_path: Any) -> None:
    """Kafka in, consumer, Celery worker, PostgreSQL, the outbox relay started by `moderation worker`, Kafka out."""
    from kafka.structs import TopicPartition

    from moderation.kafka_io import make_consumer
    from moderation.testing.pipeline import LocalPipeline
    from tests.integration.conftest import pipeline_config

    scheme = settings().watermark.schemes[0]
    human = human_posts(20, seed=51)
    with LocalPipeline(tmp_path, pipeline_config()) as lp:
        lp.produce([{**post(i, t), "author": "a"} for i, t in enumerate(human)])
        assert lp.wait_for(20) == 20
        # Posts 0-4 edited to machine text, posts 5-9 sent again unchanged.
        edits = [{**post(i, watermarked_post(150, scheme, seed=900 + i)), "author": "a"} for i in range(5)]
        lp.produce(edits + [{**post(i, human[i]), "author": "a"} for i in range(5, 10)])

        database = lp.database()

        def current() -> dict[str, tuple[int, str]]:
            with database.connect() as conn:
                return {r["id"]: (r["revision"], r["action"]) for r in verdict_rows(conn, VerdictFilter(limit=None))}

        wait_until(lambda: sum(rev == 2 for rev, _ in current().values()) == 5, 120, "the five edits")
        final = current()
        database.dispose()
        assert len(final) == 20 and lp.count_verdicts() == 20
        assert {k: v for k, v in final.items() if v[0] == 2} == {f"p{i}": (2, "review") for i in range(5)}
        assert all(final[f"p{i}"][0] == 1 for i in range(5, 20))

        assert lp.endpoints is not None
        consumer = make_consumer(lp.endpoints, None)
        parts = [TopicPartition(lp.settings.pipeline.output_topic, p) for p in range(lp.partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        latest: dict[str, dict[str, Any]] = {}
        count = 0

        def read() -> bool:
            nonlocal count
            for records in consumer.poll(timeout_ms=300).values():
                for r in records:
                    count += 1
                    m = json.loads(r.value)
                    if m["revision"] >= latest.get(m["id"], {"revision": 0})["revision"]:
                        latest[m["id"]] = m
            return count >= 25

        try:
            wait_until(read, 60, "25 verdict messages (20 first revisions and 5 edits)")
            read()
        finally:
            consumer.close()
    # What a reader keeping the highest revision per key ends with: the current verdicts, nothing more.
    assert {k: (m["revision"], m["action"]) for k, m in latest.items()} == final
    assert count == 25, "unchanged posts sent again publish nothing"
