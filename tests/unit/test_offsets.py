from __future__ import annotations

from workers.offsets import OffsetBook, PartitionOffsets


def test_commit_point_is_the_first_offset_not_done() -> None:
    p = PartitionOffsets()
    assert p.committable() is None
    for o in range(10, 15):
        p.add(o)
    assert p.committable() == 10
    p.done(12)
    p.done(11)
    assert p.committable() == 10  # 10 is still in flight: nothing after it may be committed
    p.done(10)
    assert p.committable() == 13
    p.done(13)
    p.done(14)
    assert p.committable() == 15 and p.pending == 0


def test_redelivered_offsets_are_not_tracked_twice() -> None:
    p = PartitionOffsets()
    p.add(0)
    p.add(1)
    p.add(1)
    p.add(0)
    assert p.pending == 2


def test_book_reports_only_moved_partitions_and_forgets_revoked_ones() -> None:
    book = OffsetBook()
    book.add("posts", 0, 0)
    book.add("posts", 1, 5)
    book.done("posts", 0, 0)
    assert book.to_commit() == {("posts", 0): 1, ("posts", 1): 5}
    book.mark_committed(book.to_commit())
    assert book.to_commit() == {}
    book.forget([("posts", 1)])
    book.done("posts", 1, 5)  # a late result for a revoked partition is ignored
    assert list(book.partitions) == [("posts", 0)]
