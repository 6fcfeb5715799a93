"""The storage write of one batch (workers/processing.py's transaction without the moderation): posts as
revisions, verdicts with signals, outbox rows and the receipt, on the local PostgreSQL. Prints posts/s
for new posts, true redeliveries and edits, so the cost of revisions and the outbox can be compared with
the pipeline's target (1,000 posts/s end to end).

    python -m tests.benchmarks.bench_storage --batches 40 --batch-size 256
"""

from __future__ import annotations

import argparse
import time

from sqlalchemy import text

from moderation.posts import Post
from moderation.signals import Action, Signal, Verdict
from moderation.storage.database import translate_errors
from moderation.storage.writes import Source, claim_receipt, finish_receipt, store_batch
from moderation.testing.synthetic import human_posts
from tests.benchmarks.common import scratch_database
from tests.benchmarks.cpu import cpu_by_role


def verdict(post: Post) -> Verdict:
    signals = (
        Signal(
            "watermark",
            "1.0",
            0.1,
            "human",
            details={"scheme": "demo", "z_score": 0.3, "p_value": 0.4, "num_tokens_scored": 180},
            # Token evidence is stored for flagged posts only (the watermark plugin's default): one in ten here.
            evidence={"tokens": [[i, i + 3, i % 2, 1] for i in range(0, 600, 4)]} if post.id.endswith("0") else {},
        ),
        Signal("spam", "1.0", 0.0, "clean", details={"url_count": 0, "caps_ratio": 0.02}),
        Signal("flood", "1.0", 0.0, "unique", details={"near_duplicates": 0, "window_seconds": 600}),
        Signal("rate", "1.0", 0.0, "normal", details={"posts_in_window": 1, "limit": 30}),
    )
    return Verdict(post.id, post.tenant, Action.ALLOW, 0.1, "bench-v1", signals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    with scratch_database(pool_size=2) as db:
        n = args.batches * args.batch_size
        texts = human_posts(n, seed=1)
        posts = [Post(id=f"p{i}", text=t, tenant="bench", author=f"a{i % 50}") for i, t in enumerate(texts)]
        verdicts = [verdict(p) for p in posts]

        def run(label: str, ps: list[Post], offset: int) -> float:
            started, cpu_before = time.perf_counter(), cpu_by_role()
            for b in range(args.batches):
                lo, hi = b * args.batch_size, (b + 1) * args.batch_size
                with translate_errors(), db.begin() as conn:
                    claim_receipt(conn, f"{label}-{b}")
                    store_batch(
                        conn,
                        ps[lo:hi],
                        verdicts[lo:hi],
                        [Source("posts", 0, offset + i) for i in range(lo, hi)],
                        outbox_topic="verdicts",
                    )
                    finish_receipt(conn, f"{label}-{b}", {"posts": hi - lo})
            rate = n / (time.perf_counter() - started)
            cpu_after = cpu_by_role()
            client, server = (
                1000 * (cpu_after[r] - cpu_before.get(r, 0.0)) / n for r in ("this benchmark", "PostgreSQL")
            )
            print(
                f"{label:12s} {n:7d} posts  {rate:9,.0f} posts/s  CPU per post: {client:.3f} ms here, {server:.3f} ms PostgreSQL"
            )
            return rate

        # Planner statistics, as a running database has (bench_pipeline.analyze says why): a first batch of
        # other posts, then ANALYZE.
        warm = [Post(id=f"warm{i}", text=t, tenant="bench", author=f"a{i % 50}") for i, t in enumerate(texts)]
        with translate_errors(), db.begin() as conn:
            store_batch(conn, warm[: args.batch_size], [verdict(p) for p in warm[: args.batch_size]])
        with db.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
        new = run("new", posts, 0)
        again = run("redelivered", posts, 0)
        edited = [Post(id=p.id, text=p.text + " (edited)", tenant=p.tenant, author=p.author) for p in posts]
        edits = run("edits", edited, n)
        print(f"redelivered/new {again / new:.1f}x, edits/new {edits / new:.2f}x")


if __name__ == "__main__":
    main()
