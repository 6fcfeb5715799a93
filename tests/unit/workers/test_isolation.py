"""Poison isolation: a post that kills its worker, or that the database refuses, is found by halving and
dead-lettered alone within about log2(batch size) + 1 redeliveries; every other post is stored once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from workers.isolation import Isolator, Poisoned, RedisAttempts


class Died(BaseException):
    """Stands for the process being killed mid-run: nothing after it runs, no handler gives anything back."""


class Transient(Exception):
    pass


class Memory:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def start(self, batch_id: str) -> int:
        self.counts[batch_id] = self.counts.get(batch_id, 0) + 1
        return self.counts[batch_id]

    def give_back(self, batch_id: str) -> None:
        self.counts[batch_id] -= 1


class World:
    """Receipts and stored posts, as PostgreSQL would hold them across process deaths."""

    def __init__(self, poison: set[str], how: str) -> None:
        self.poison, self.how = poison, how
        self.receipts: set[str] = set()
        self.stored: list[str] = []
        self.dead: list[Poisoned] = []
        self.runs = 0

    def process(self, batch_id: str, posts: list[dict[str, Any]]) -> dict[str, int]:
        self.runs += 1
        if any(p["id"] in self.poison for p in posts):
            if self.how == "kill":
                raise Died()
            raise ValueError("A string literal cannot contain NUL (0x00) characters.")
        self.stored.extend(p["id"] for p in posts)
        self.receipts.add(batch_id)
        return {"posts": len(posts)}

    def completed(self, ids: Sequence[str]) -> set[str]:
        return self.receipts & set(ids)

    def dead_letter(self, p: Poisoned) -> None:
        self.dead.append(p)
        self.receipts.add(p.batch_id)

    def finish(self, batch_id: str, n: int) -> None:
        self.receipts.add(batch_id)


def isolator(world: World, attempts: Any) -> Isolator:
    return Isolator(world.process, world.completed, world.dead_letter, world.finish, attempts, (Transient,))


def deliver_until_done(world: World, attempts: Any, posts: list[dict[str, Any]], batch_id: str) -> int:
    """Deliver the batch again after every death, as RabbitMQ does; return how many deliveries it took."""
    for delivery in range(1, 100):
        try:
            isolator(world, attempts).run(batch_id, posts)
            return delivery
        except Died:
            continue
    raise AssertionError("never finished")


@pytest.mark.parametrize("how", ["kill", "refuse"])
@pytest.mark.parametrize("size,poison", [(64, {"p17"}), (256, {"p0", "p255"}), (1, {"p0"})])
def test_the_poison_post_is_isolated_and_the_rest_stored_once(how: str, size: int, poison: set[str]) -> None:
    posts: list[dict[str, Any]] = [{"id": f"p{i}", "_source": ["posts", 0, i]} for i in range(size)]
    world = World(poison, how)
    deliveries = deliver_until_done(world, Memory(), posts, "b")
    assert sorted(p.post["id"] for p in world.dead) == sorted(poison)
    assert {p.reason for p in world.dead} == {"worker_lost" if how == "kill" else "processing_failed"}
    assert sorted(world.stored) == sorted(p["id"] for p in posts if p["id"] not in poison)  # each once
    assert "b" in world.receipts
    depth = max(1, (size - 1).bit_length())
    if how == "kill":
        assert deliveries <= len(poison) * (depth + 1) + 1
        for dead in world.dead:  # the detail counts the deaths alone and the larger batches before
            halvings = dead.batch_id.count("/") - "b".count("/")
            assert "1 time(s) running it alone" in dead.detail
            assert (f"the {halvings} larger batch(es)" in dead.detail) == (halvings > 0)
    else:
        assert deliveries == 1  # a refusal splits at once, no redelivery needed


def test_a_transient_error_gives_its_attempt_back_and_propagates() -> None:
    world, attempts = World(set(), "kill"), Memory()

    def down(batch_id: str, posts: list[dict[str, Any]]) -> dict[str, int]:
        raise Transient("database down")

    iso = Isolator(down, world.completed, world.dead_letter, world.finish, attempts, (Transient,))
    for _ in range(3):
        with pytest.raises(Transient):
            iso.run("b", [{"id": "p1"}, {"id": "p2"}])
    assert attempts.counts["b"] == 0 and not world.dead  # an outage never turns into dead letters


def test_redis_attempt_counter() -> None:
    redis = pytest.importorskip("redis")
    counter = RedisAttempts("redis://127.0.0.1:6379/0")
    try:
        counter._redis.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379 (the integration services are not running)")
    batch_id = f"test-{uuid.uuid4().hex}"
    try:
        assert counter.start(batch_id) == 1 and counter.start(batch_id) == 2
        counter.give_back(batch_id)
        assert counter.start(batch_id) == 2
        assert 0 < counter._redis.ttl("moderation:attempts:" + batch_id) <= 86_400
    finally:
        counter._redis.delete("moderation:attempts:" + batch_id)
