"""Which incoming post becomes a new revision, which is only history, and which is a redelivery
(moderation.storage.writes.plan_revisions: pure, so every ordering can be tried without a database)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from moderation.storage.writes import (
    Current,
    Incoming,
    Key,
    NewRevision,
    Source,
    content_hash,
    is_older,
    plan_revisions,
)

K: Key = ("acme", "p1")


def astuple_plan(*args: Any) -> tuple[list[NewRevision], list[int], dict[Key, Current]]:
    plan = plan_revisions(*args)
    return plan.made, plan.redelivered, plan.final


def src(offset: int, partition: int = 0) -> Source:
    return Source("posts", partition, offset)


def inc(index: int, text: str, offset: int | None, partition: int = 0) -> Incoming:
    return Incoming(index, K, content_hash(text), None if offset is None else src(offset, partition))


def stored(text: str, revision: int = 1, count: int | None = None, offset: int | None = 10) -> dict[Key, Current]:
    return {K: Current(revision, count or revision, content_hash(text), None if offset is None else src(offset))}


def test_a_new_post_is_revision_one_and_current() -> None:
    made, again, _ = astuple_plan({}, {}, [inc(0, "hello", 1)])
    assert [(r.revision, r.current) for r in made] == [(1, True)] and again == []


def test_the_same_text_again_is_a_redelivery_whatever_its_offset() -> None:
    for offset in (5, 10, 11, None):
        made, again, _ = astuple_plan(stored("hello"), {K: {content_hash("hello")}}, [inc(0, "hello", offset)])
        assert made == [] and again == [0]


def test_an_edit_is_a_new_current_revision() -> None:
    made, again, _ = astuple_plan(stored("harmless"), {}, [inc(0, "buy pills at spam.example", 11)])
    assert [(r.revision, r.current) for r in made] == [(2, True)] and again == []


def test_an_older_message_with_unseen_text_is_history_only() -> None:
    # A resent batch overtaken by a later edit: offset 9 arrives after offset 10 was stored.
    made, _, _ = astuple_plan(stored("newer text", offset=10), {K: {content_hash("newer text")}}, [inc(0, "older", 9)])
    assert [(r.revision, r.current) for r in made] == [(2, False)]


def test_an_older_message_with_known_text_is_a_redelivery() -> None:
    known = {K: {content_hash("first"), content_hash("second")}}
    made, again, _ = astuple_plan(stored("second", 2, offset=10), known, [inc(0, "first", 3)])
    assert made == [] and again == [0]


def test_reverting_to_an_earlier_text_is_an_edit_moderated_again() -> None:
    known = {K: {content_hash("A"), content_hash("B")}}
    made, _, _ = astuple_plan(stored("B", 2, offset=10), known, [inc(0, "A", 12)])
    assert [(r.revision, r.current) for r in made] == [(3, True)]


def test_two_texts_of_one_new_post_in_one_batch_only_the_last_is_current() -> None:
    made, again, _ = astuple_plan({}, {}, [inc(0, "A", 1), inc(1, "A", 1), inc(2, "B", 2)])
    assert [(r.index, r.revision, r.current) for r in made] == [(0, 1, False), (2, 2, True)] and again == [1]


def test_positions_in_other_partitions_are_not_compared() -> None:
    assert not is_older(src(1, partition=1), src(10, partition=0))
    assert not is_older(None, src(10)) and not is_older(src(1), None)
    made, _, _ = astuple_plan(stored("A", offset=10), {}, [inc(0, "B", 1, partition=2)])
    assert [(r.revision, r.current) for r in made] == [(2, True)]


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.sampled_from(["A", "B", "C", "D"]), min_size=1, max_size=8),
    data=st.data(),
)
def test_any_delivery_order_with_resends_ends_at_the_latest_message(texts: list[str], data: st.DataObject) -> None:
    """Messages 0..n-1 of one post in one partition, delivered at least once each, in any order and in
    batches of any size (what resends and concurrent workers can do): the current revision is always the
    latest message's text, revision numbers have no gaps, and delivering everything again changes nothing."""
    n = len(texts)
    extra = data.draw(st.lists(st.integers(0, n - 1), max_size=2 * n))
    order = data.draw(st.permutations(list(range(n)) + extra))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=4)))
    batches = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True) if order[a:b]]

    current: dict[Key, Current] = {}
    known: dict[Key, set[str]] = {}
    revisions = 0

    def deliver(batch: list[int]) -> int:
        nonlocal revisions
        plan = plan_revisions(current, known, [inc(i, texts[o], o) for i, o in enumerate(batch)])
        assert [r.revision for r in plan.made] == list(range(revisions + 1, revisions + 1 + len(plan.made)))
        revisions += len(plan.made)
        for r in plan.made:  # what store_batch writes
            known.setdefault(K, set()).add(content_hash(texts[batch[r.index]]))
        current.update(plan.final)
        return len(plan.made)

    for batch in batches:
        deliver(batch)
    assert current[K].content_hash == content_hash(texts[n - 1])
    assert current[K].source == src(n - 1)
    assert deliver(list(range(n))) == 0, "a full redelivery must not make a revision"
