"""Each consumer step alone, with fakes: batch, dispatch, dead letters, flow, commit, offsets."""

from __future__ import annotations

import base64
import hashlib
import json

from tests.unit.workers.fakes import Celery, Clock, Future, Receipts
from workers.offsets import OffsetBook
from workers.steps.batch import Batcher
from workers.steps.commit import Committer
from workers.steps.dead_letter import DeadLetters, dead_letter_value
from workers.steps.decode import Item, Rejected
from workers.steps.dispatch import Dispatcher
from workers.steps.flow import Limits, Load


def item(partition: int, offset: int, size: int = 100) -> Item:
    return Item({"id": f"{partition}-{offset}"}, ("posts", partition, offset), size, b"x" * size, 0)


# ---- batch ---------------------------------------------------------------------------------------------
def test_a_batch_closes_on_count_bytes_or_age_and_drops_revoked_posts() -> None:
    b = Batcher(max_posts=3, max_bytes=1_000, linger_s=0.1)
    b.add(item(0, 0), 10.0)
    assert not b.due(10.05) and b.due(10.2)  # age
    b.add(item(1, 1), 10.0)
    b.add(item(0, 2), 10.0)
    assert b.full() and b.due(10.0)  # count
    assert b.drop_partitions({("posts", 0)}) == 2 and len(b) == 1 and b.bytes == 100
    b.take()
    b.add(item(0, 3, size=1_000), 11.0)
    assert b.full()  # bytes
    assert [i.position for i in b.take()] == [("posts", 0, 3)] and len(b) == 0 and not b.due(99.0)


# ---- dispatch ------------------------------------------------------------------------------------------
def dispatcher(celery: Celery, receipts: Receipts, **kw: float) -> Dispatcher:
    ids = iter(f"b{i}" for i in range(1000))
    return Dispatcher(
        celery.send,
        receipts,
        resend_after_s=kw.get("resend_after_s", 60.0),
        max_attempts=int(kw.get("max_attempts", 3)),
        check_interval_s=0.05,
        new_id=lambda: next(ids),
    )


def test_completion_comes_from_receipts_with_one_query_per_interval_for_all_batches() -> None:
    celery, receipts, clock = Celery(), Receipts(), Clock()
    d = dispatcher(celery, receipts)
    for n in range(8):
        d.submit([item(0, n)], clock())
    assert [bid for bid, _ in celery.sent] == [f"b{i}" for i in range(8)]
    assert celery.sent[0][1] == {"v": 1, "batch_id": "b0", "posts": [{"id": "0-0"}]}
    receipts.done = {"b2", "b5"}
    durable, given_up = d.poll(clock())
    assert sorted(b.batch_id for b in durable) == ["b2", "b5"] and not given_up
    assert receipts.queries == 1
    for _ in range(10):  # within the interval: no query at all
        d.poll(clock())
    assert receipts.queries == 1
    clock.advance(0.06)
    d.poll(clock())
    assert receipts.queries == 2 and d.count == 6


def test_a_batch_without_receipt_is_resent_under_its_id_then_given_up() -> None:
    celery, receipts, clock = Celery(), Receipts(), Clock()
    d = dispatcher(celery, receipts, resend_after_s=60, max_attempts=3)
    d.submit([item(0, 0)], clock())
    clock.advance(59)
    d.poll(clock())
    assert len(celery.sent) == 1  # a batch that may still be running is not sent twice
    clock.advance(2)
    d.poll(clock())
    assert [bid for bid, _ in celery.sent] == ["b0", "b0"]  # same id: the worker's receipt makes it idempotent
    clock.advance(61)
    d.poll(clock())
    clock.advance(61)
    _, given_up = d.poll(clock())
    assert len(celery.sent) == 3 and [b.batch_id for b in given_up] == ["b0"] and d.count == 0


def test_a_celery_broker_outage_neither_sleeps_nor_grows_a_batch_and_sends_with_backoff() -> None:
    celery, receipts, clock = Celery(down=True), Receipts(), Clock()
    d = dispatcher(celery, receipts)
    for n in range(5):
        d.submit([item(0, n)], clock())  # returns at once: no sleep, no exception
    assert d.count == 5 and d.unsent == 5 and celery.attempts == 1  # one failed try, then backoff
    for _ in range(100):
        d.poll(clock())
    assert celery.attempts == 1  # not retried in a loop
    clock.advance(0.25)
    d.poll(clock())
    assert celery.attempts == 2  # retried once after its backoff, still down
    celery.down = False
    clock.advance(10)
    d.poll(clock())
    assert d.unsent == 0 and [bid for bid, _ in celery.sent] == ["b0", "b1", "b2", "b3", "b4"]
    assert all(len(p["posts"]) == 1 for _, p in celery.sent)  # each batch kept its size


def test_a_database_outage_during_the_receipt_check_is_survived() -> None:
    celery, receipts, clock = Celery(), Receipts(down=True), Clock()
    d = dispatcher(celery, receipts)
    d.submit([item(0, 0)], clock())
    assert d.poll(clock()) == ([], [])
    receipts.down = False
    receipts.done = {"b0"}
    clock.advance(1)
    assert [b.batch_id for b in d.poll(clock())[0]] == ["b0"]


def test_revoked_partitions_leave_the_batches_they_shared() -> None:
    celery, receipts, clock = Celery(), Receipts(), Clock()
    d = dispatcher(celery, receipts)
    d.submit([item(0, 0), item(1, 0)], clock())
    d.submit([item(1, 1)], clock())
    assert d.forget_partitions({("posts", 1)}) == 2
    assert d.count == 1 and [i.position for i in d.batches["b0"].items] == [("posts", 0, 0)]


# ---- dead letters --------------------------------------------------------------------------------------
def rejected(offset: int, raw: bytes = b"{") -> Rejected:
    return Rejected(("posts", 0, offset), raw, None, 0, "invalid_json", "detail")


def test_a_dead_letter_counts_as_done_only_once_acknowledged_and_failed_sends_back_off() -> None:
    futures: list[Future] = []

    def send(value: bytes, key: bytes | None) -> Future:
        futures.append(Future())
        return futures[-1]

    clock = Clock()
    dl = DeadLetters(send, max_backoff_s=30)
    dl.add(rejected(7), clock())
    assert dl.poll(clock()) == [] and dl.count == 1
    futures[0].is_done, futures[0].ok = True, False
    assert dl.poll(clock()) == [] and dl.count == 1  # failed: kept, never dropped
    for _ in range(50):
        dl.poll(clock())
    assert len(futures) == 1  # and not resent in a tight loop
    clock.advance(1)
    dl.poll(clock())
    assert len(futures) == 2
    futures[1].is_done = True
    assert [r.position for r in dl.poll(clock())] == [("posts", 0, 7)] and dl.count == 0


def test_a_send_that_raises_is_a_failed_attempt_not_a_crash() -> None:
    def send(value: bytes, key: bytes | None) -> Future:
        raise TimeoutError("metadata not available")

    dl = DeadLetters(send)
    dl.add(rejected(1), 0.0)
    assert dl.count == 1


def test_dead_letters_always_fit_and_keep_hash_length_and_a_prefix() -> None:
    huge = ("\x00" * 5_000_000 + "é" * 3_000_000).encode()  # escapes to ~6 bytes per NUL in JSON
    value = dead_letter_value(huge, ("posts", 1, 2), 5, "text_too_long", "d" * 100_000)
    assert len(value) < 1_000_000
    letter = json.loads(value)
    assert letter["raw_truncated"] and letter["raw_length"] == len(huge)
    assert letter["raw_sha256"] == hashlib.sha256(huge).hexdigest()
    assert huge.startswith(base64.b64decode(letter["raw_base64"]))
    assert len(letter["detail"]) == 2_000
    cut = "é".encode() * 40_000  # a cut inside a two-byte character keeps the text valid
    assert json.loads(dead_letter_value(cut, ("p", 0, 0), None, "r", "d", max_raw_bytes=65_535))["raw"] == "é" * 32_767


# ---- flow ----------------------------------------------------------------------------------------------
def test_flow_pauses_all_on_work_or_bytes_and_one_partition_on_its_backlog() -> None:
    limits = Limits(max_inflight_batches=4, max_inflight_bytes=1_000, max_uncommitted=100)
    parts = {("posts", 0), ("posts", 1)}
    assert limits.to_pause(parts, Load(1, 0, 10, {})) == (set(), None)
    assert limits.to_pause(parts, Load(3, 1, 10, {})) == (parts, "batches")  # dead letters count too
    assert limits.to_pause(parts, Load(1, 0, 1_000, {})) == (parts, "bytes")
    assert limits.to_pause(parts, Load(1, 0, 10, {("posts", 1): 100})) == ({("posts", 1)}, "uncommitted")


# ---- commit --------------------------------------------------------------------------------------------
def test_commits_are_periodic_only_what_moved_and_a_failure_is_not_raised() -> None:
    book = OffsetBook()
    calls: list[dict[tuple[str, int], int]] = []
    failing = [False]

    def commit(offsets: dict[tuple[str, int], int]) -> None:
        if failing[0]:
            raise RuntimeError("CommitFailedError: the group rebalanced")
        calls.append(offsets)

    c = Committer(book, commit, interval_s=0.5)
    book.add("posts", 0, 0)
    book.add("posts", 0, 1)
    book.done("posts", 0, 1)
    c.poll(0.0)
    assert calls == [{("posts", 0): 0}]
    book.done("posts", 0, 0)
    c.poll(0.1)
    assert len(calls) == 1  # within the interval
    failing[0] = True
    c.poll(0.6)
    assert c.committed == {("posts", 0): 0}  # failure: logged, the book still holds the offset
    failing[0] = False
    c.poll(1.2)
    assert calls[-1] == {("posts", 0): 2} and c.committed == {("posts", 0): 2}


def test_offsets_done_outside_what_is_tracked_are_ignored() -> None:
    book = OffsetBook()
    book.add("posts", 0, 10)
    book.done("posts", 0, 3)  # finished by a batch from before a revocation
    book.done("posts", 0, 99)  # not read yet
    assert book.to_commit() == {("posts", 0): 10} and book.uncommitted() == {("posts", 0): 1}
