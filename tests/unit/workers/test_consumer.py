"""The composed consumer against an in-memory Kafka, Celery and receipts table: offsets advance only over
durable posts, a rebalance (on another thread, as kafka-python 3.x runs it) never commits or crashes, and
SIGTERM drains."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moderation.config import load_settings, parse_settings
from moderation.endpoints import Endpoints
from tests.unit.workers.fakes import Celery, Clock, KafkaConsumer, Producer, Receipts
from workers.consumer import PostConsumer, cooperative_assignment


def post(i: int) -> bytes:
    return json.dumps(
        {"id": f"p{i}", "tenant": "t", "author": "a", "text": f"text {i}", "created_at": "2026-11-23T10:00:00Z"}
    ).encode()


def make(**pipeline: Any) -> tuple[PostConsumer, KafkaConsumer, Celery, Receipts, Producer, Clock]:
    raw = load_settings().model_dump(mode="json")
    raw["pipeline"].update({"batch_max_posts": 4, "batch_linger_ms": 10, "max_inflight_batches": 3, **pipeline})
    for scheme in raw["watermark"]["schemes"]:
        scheme["hashing_key"] = 15485863  # model_dump hides secrets
    settings = parse_settings(raw)
    kafka, celery, receipts, producer, clock = KafkaConsumer("posts", 2), Celery(), Receipts(), Producer(), Clock()
    consumer = PostConsumer(
        settings,
        Endpoints.from_env(),
        send=celery.send,
        kafka_consumer=kafka,
        producer=producer,
        completed=receipts,
        clock=clock,
    )
    kafka.subscribe(["posts"], consumer._listener())
    return consumer, kafka, celery, receipts, producer, clock


def run_steps(consumer: PostConsumer, clock: Clock, n: int = 5) -> None:
    for _ in range(n):
        consumer.step()
        clock.advance(0.6)


def test_offsets_are_committed_only_over_posts_with_receipts_or_dead_letters() -> None:
    consumer, kafka, celery, receipts, producer, clock = make()
    for i in range(4):
        kafka.produce(0, post(i))
    kafka.produce(0, b"not json")
    kafka.produce(0, post(5))
    run_steps(consumer, clock)
    assert [len(p["posts"]) for _, p in celery.sent] == [4, 1]
    assert kafka.committed.get(0, 0) == 0  # nothing has a receipt yet
    assert json.loads(producer.sent[0][1])["reason"] == "invalid_json"
    receipts.done.add(celery.sent[1][0])  # the later batch finishes first
    run_steps(consumer, clock)
    assert kafka.committed.get(0, 0) == 0  # offset 0..3 still in flight: nothing after them is committed
    receipts.done.add(celery.sent[0][0])
    run_steps(consumer, clock)
    assert kafka.committed[0] == 6


def test_back_pressure_pauses_instead_of_reading_without_bound() -> None:
    consumer, kafka, celery, receipts, _, clock = make()
    for i in range(100):
        kafka.produce(i % 2, post(i))
    run_steps(consumer, clock, 10)
    assert len(celery.sent) <= 3 + 1  # max_inflight_batches, within one poll
    assert kafka.paused_set == {0, 1}
    receipts.done |= {bid for bid, _ in celery.sent}
    run_steps(consumer, clock, 3)
    assert len(celery.sent) > 3 and consumer.stats.stored >= 12


def test_a_rebalance_on_the_io_thread_never_commits_and_revoked_work_is_left_to_the_new_owner() -> None:
    consumer, kafka, celery, receipts, _, clock = make(max_inflight_batches=50)
    for i in range(8):
        kafka.produce(i % 2, post(i))
    run_steps(consumer, clock, 2)
    assert celery.sent
    kafka.rebalance(revoked={1})  # raises inside the fake if the listener commits
    seen = len(kafka.commits)
    run_steps(consumer, clock, 2)
    assert consumer.stats.revoked_dropped == 4
    receipts.done |= {bid for bid, _ in celery.sent}
    run_steps(consumer, clock, 2)
    assert kafka.committed[0] == 4
    assert all(1 not in c for c in kafka.commits[seen:])  # partition 1 is not ours any more
    kafka.rebalance(assigned={1})  # it comes back: read again from its last commit
    run_steps(consumer, clock, 2)
    receipts.done |= {bid for bid, _ in celery.sent}
    run_steps(consumer, clock, 2)
    assert kafka.committed == {0: 4, 1: 4}


def test_stop_drains_in_flight_batches_and_commits_then_closes() -> None:
    consumer, kafka, celery, receipts, _, clock = make()
    for i in range(3):
        kafka.produce(0, post(i))
    run_steps(consumer, clock, 1)
    consumer.stop()
    receipts.done.add("never")  # the batch is not done yet; the drain waits for it

    original = receipts.__call__

    def finish_on_first_query(batch_ids: Any) -> set[str]:
        receipts.done |= {bid for bid, _ in celery.sent}
        return original(batch_ids)

    consumer.dispatcher._completed = finish_on_first_query
    consumer._drain()
    assert kafka.committed == {0: 3} and consumer.dispatcher.count == 0


def test_celery_broker_down_keeps_the_consumer_running_and_bounded() -> None:
    consumer, kafka, celery, receipts, _, clock = make()
    celery.down = True
    for i in range(200):
        kafka.produce(0, post(i))
    run_steps(consumer, clock, 20)
    assert consumer.dispatcher.count <= 3 + 1 and consumer.stats.consumed <= 4 * 5
    assert celery.attempts <= 20  # one try per backoff, not one per message
    celery.down = False
    for _ in range(100):
        run_steps(consumer, clock, 1)
        receipts.done |= {bid for bid, _ in celery.sent}
    assert kafka.committed[0] == 200


@pytest.mark.parametrize("raw", [b"", b"\xff", b"[" * 100_000, b'{"id": 1}', b"null"])
def test_bad_messages_never_stop_the_consumer(raw: bytes) -> None:
    consumer, kafka, _, _, producer, clock = make()
    kafka.produce(0, raw)
    kafka.produce(0, post(1))
    run_steps(consumer, clock, 3)
    assert len(producer.sent) == 1 and consumer.stats.dead_lettered == 1


def test_the_installed_client_rebalances_cooperatively(monkeypatch: pytest.MonkeyPatch) -> None:
    # kafka-python 3.x has KIP-429; a wrong import name would silently fall back to eager "range".
    monkeypatch.delenv("MODERATION_KAFKA_REBALANCE", raising=False)
    (assignor,) = cooperative_assignment(Endpoints.from_env().kafka_rebalance)["partition_assignment_strategy"]
    assert assignor.name == "cooperative-sticky"
    monkeypatch.setenv("MODERATION_KAFKA_REBALANCE", "eager")
    assert cooperative_assignment(Endpoints.from_env().kafka_rebalance) == {}
