"""Looking a batch's posts up by key: the worker's join on `unnest(tenants, post_ids)` against the reference
`(tenant, post_id) IN (pairs)` that SQLAlchemy's `tuple_().in_()` renders, on the same keys in the same run.
PostgreSQL plans the IN list as an OR of pairs, at a cost per key that grows with the batch; the worker looks
each batch up twice (the redelivery pre-check, then `FOR UPDATE`), so this is paid on every batch.

    python -m tests.benchmarks.bench_key_lookup --posts 30000
"""

from __future__ import annotations

import argparse
import time

from sqlalchemy import Connection, Select, select, text, tuple_

from moderation.storage.keys import key_table, matches
from moderation.storage.models import PostRow
from tests.benchmarks.common import machine, scratch_database

Key = tuple[str, str]


def in_pairs(keys: list[Key]) -> Select[str, str]:
    return select(PostRow.tenant, PostRow.post_id).where(tuple_(PostRow.tenant, PostRow.post_id).in_(keys))


def joined(keys: list[Key]) -> Select[str, str]:
    wanted = key_table(keys)
    return select(PostRow.tenant, PostRow.post_id).join(wanted, matches(wanted, PostRow.tenant, PostRow.post_id))


def best_ms(conn: Connection, query: Select[str, str], expected: int, repeat: int) -> float:
    """The fastest of `repeat` runs, with FOR UPDATE as the worker's second lookup takes it."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        found = len(conn.execute(query.with_for_update(of=PostRow)).all())
        times.append(time.perf_counter() - started)
        assert found == expected, (found, expected)
    return 1000 * min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=30_000, help="posts in the table")
    ap.add_argument("--sizes", default="32,64,128,256,512", help="batch sizes to look up")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with scratch_database(pool_size=1) as db:
        with db.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO posts (tenant, post_id, author, text, content_hash) SELECT 'bench', 'p-' || i,"
                    " 'a' || (i % 1000), repeat('word ', 150), md5(i::text) FROM generate_series(0, :n - 1) i"
                ),
                {"n": args.posts},
            )
        with db.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
        print(f"machine: {machine()}; {args.posts:,d} posts in the table; best of {args.repeat}")
        print("   keys   IN (pairs) ms   us/key     join ms   us/key   IN / join")
        with db.begin() as conn:
            for size in sizes:
                keys = sorted(("bench", f"p-{i}") for i in range(args.posts // 3, args.posts // 3 + size))
                ref = best_ms(conn, in_pairs(keys), size, args.repeat)
                ours = best_ms(conn, joined(keys), size, args.repeat)
                print(
                    f"{size:7d} {ref:14.1f} {1000 * ref / size:8.0f} {ours:11.1f} {1000 * ours / size:8.0f}"
                    f" {ref / ours:10.1f}x"
                )


if __name__ == "__main__":
    main()
