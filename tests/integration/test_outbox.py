"""The outbox relay against the embedded Kafka-protocol broker (tansu) and real PostgreSQL: every row is
published and marked only after the broker acknowledged; with the broker gone, rows wait (attempts and
error recorded, backlog metric growing) and are all published once it is back; two relays share the
outbox without publishing a row twice.

tansu keeps nothing on disk, so "broker restarted" here means a new empty broker on the same port with its
topics created again: what is proved is that the relay loses nothing, not that the broker kept anything."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from moderation import metrics
from moderation.kafka_io import ensure_topics, make_consumer, make_producer
from moderation.storage.writes import add_outbox
from moderation.testing.broker import EmbeddedBroker, start_embedded_broker
from tests.integration.storage_support import batch, database_url, db, post, runtime_for
from workers.outbox import OutboxRelay
from workers.processing import process_batch

pytestmark = pytest.mark.integration
__all__ = ["database_url", "db"]  # fixtures

TOPIC = "relay-test"


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    b = start_embedded_broker()
    ensure_topics(b.endpoints(), [TOPIC, "verdicts", "posts.dlq"], partitions=3)
    yield b
    b.stop()


def relay_for(db: Engine, broker: EmbeddedBroker, **kwargs: Any) -> OutboxRelay:
    endpoints = broker.endpoints()
    return OutboxRelay(
        db,
        lambda: make_producer(endpoints, max_block_ms=2_000, request_timeout_ms=2_000, delivery_timeout_ms=5_000),
        send_timeout_s=10,
        **kwargs,
    )


def read_topic(broker: EmbeddedBroker, topic: str, expect: int, timeout: float = 60) -> list[bytes]:
    """Every message in the topic (all partitions, from the start), waiting until at least `expect` arrived."""
    from kafka.structs import TopicPartition

    consumer = make_consumer(broker.endpoints(), None)
    try:
        parts = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r.value for r in records)
            if len(got) >= expect:
                # Give duplicates, if any, a moment to show up too.
                for records in consumer.poll(timeout_ms=1_000).values():
                    got.extend(r.value for r in records)
                return got
        return got
    finally:
        consumer.close()


def fill(db: Engine, start: int, n: int) -> set[bytes]:
    values = [f"message-{i}".encode() for i in range(start, start + n)]
    with db.begin() as conn:
        add_outbox(conn, [(TOPIC, f"k{i % 7}".encode(), v) for i, v in enumerate(values)])
    return set(values)


def unpublished(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NULL")).scalar_one())


def drain(relay: OutboxRelay, db: Engine, timeout: float = 120) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while unpublished(db) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(60)
    assert unpublished(db) == 0, "the relay did not publish everything in time"


def test_the_relay_publishes_every_row_once_acknowledged(db: Engine, broker: EmbeddedBroker) -> None:
    sent = fill(db, 0, 1_200)
    relay = relay_for(db, broker, batch_size=500)
    rounds = [relay.publish_once() for _ in range(4)]
    assert [r.published for r in rounds] == [500, 500, 200, 0] and not any(r.failed for r in rounds)
    assert unpublished(db) == 0 and relay.report_backlog() == 0.0
    got = read_topic(broker, TOPIC, len(sent))
    assert len(got) == len(sent) and set(got) == sent


def test_nothing_is_lost_while_the_broker_is_down(db: Engine, broker: EmbeddedBroker) -> None:
    relay = relay_for(db, broker)
    first = fill(db, 0, 100)
    assert relay.publish_once().published == 100

    broker.stop()
    waiting = fill(db, 100, 300)
    failures_before = metrics.OUTBOX_FAILURES._value.get()
    result = relay.publish_once()
    assert result.published == 0 and result.failed == 300
    assert metrics.OUTBOX_FAILURES._value.get() - failures_before == 300
    with db.connect() as conn:
        attempts, errors = conn.execute(
            text("SELECT min(attempts), count(last_error) FROM outbox WHERE published_at IS NULL")
        ).one()
    assert unpublished(db) == 300 and attempts >= 1 and errors == 300
    time.sleep(1.1)
    assert relay.report_backlog() >= 1.0  # the backlog gauge grows while the broker is away

    # A new (empty: memory-only) broker on the same port, topics created again; the relay resumes by itself.
    restarted = start_embedded_broker(broker.port)
    try:
        ensure_topics(restarted.endpoints(), [TOPIC], partitions=3)
        drain(relay, db)
        got = read_topic(restarted, TOPIC, len(waiting))
    finally:
        restarted.stop()
    assert waiting <= set(got), f"{len(waiting - set(got))} messages lost"
    assert not (first & set(got)), "rows published before the outage are not sent again"
    assert relay.report_backlog() == 0.0


def test_two_relays_share_the_outbox_without_publishing_a_row_twice(db: Engine, broker: EmbeddedBroker) -> None:
    sent = fill(db, 0, 3_000)
    relays = [relay_for(db, broker, batch_size=100) for _ in range(2)]
    stop = threading.Event()
    threads = [threading.Thread(target=r.run, args=(stop,), daemon=True) for r in relays]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while unpublished(db) and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(60)
    assert unpublished(db) == 0
    got = read_topic(broker, TOPIC, len(sent))
    assert len(got) == len(sent) and set(got) == sent, "every row exactly once"


def test_a_stored_batch_reaches_the_verdict_topic_with_its_revision(db: Engine, broker: EmbeddedBroker) -> None:
    import json

    runtime = runtime_for(db)
    process_batch(runtime, batch("b1", post(1, "first text", offset=1), post(2, "bad \x00", offset=2)))
    process_batch(runtime, batch("b2", post(1, "edited text", offset=3)))
    drain(relay_for(db, broker), db)
    verdicts = [json.loads(v) for v in read_topic(broker, "verdicts", 2)]
    letters = [json.loads(v) for v in read_topic(broker, "posts.dlq", 1)]
    assert sorted((v["id"], v["revision"]) for v in verdicts) == [("p1", 1), ("p1", 2)]
    assert [(d["reason"], d["source"]["offset"]) for d in letters] == [("invalid_characters", 2)]
