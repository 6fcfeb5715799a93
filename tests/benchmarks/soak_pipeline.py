"""Soak: many posts through the whole pipeline at a steady rate; the memory curve of the consumer and the
workers, and the committed lag (as `moderation lag` measures it) until it returns to 0.

One consumer and two worker processes (`--workers`), real PostgreSQL, RabbitMQ and Redis, the embedded
Kafka-protocol broker. Posts are produced in rounds of `--round` posts (distinct ~150-word posts, each id
once); every `--sample` seconds it prints: elapsed s, posts produced, verdicts stored, committed lag,
RSS (MiB) of the consumer and of the worker processes (parent + pool). At the end: every post has
exactly one verdict, and the lag is 0.

Run: `python -m tests.benchmarks.soak_pipeline --posts 100000` (about 2 minutes per 10,000 posts here).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from moderation.kafka_io import make_consumer, make_producer
from moderation.testing.pipeline import LocalPipeline, _pids_of_children
from tests.benchmarks.common import add_tokenizer_option, demo_config_over, distinct_posts, machine
from workers.lag import measure


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--round", type=int, default=5_000, help="posts produced per round")
    parser.add_argument("--rate", type=float, default=400.0, help="posts/s produced (steady)")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--workers", type=int, default=2, help="worker pool processes")
    add_tokenizer_option(parser)
    args = parser.parse_args()
    texts = distinct_posts(min(args.round, args.posts))
    print(
        f"machine: {machine()}; {args.posts} posts at {args.rate:.0f}/s; plugins: the demo config's;"
        f" tokenizer: {args.tokenizer}"
    )
    config = demo_config_over(args.tokenizer)
    with tempfile.TemporaryDirectory() as tmp, LocalPipeline(Path(tmp), config, worker_concurrency=args.workers) as lp:
        assert lp.endpoints is not None and lp.consumer is not None and lp.worker is not None
        consumer_pid, worker_pid = lp.consumer.pid, lp.worker.pid
        producer = make_producer(lp.endpoints)
        topic = lp.settings.pipeline.input_topic
        lag_client = make_consumer(lp.endpoints, lp.settings.pipeline.group_id)
        db = lp.database()
        started = time.time()
        next_sample = started
        produced = 0
        print("     s  produced    stored    lag  consumer MiB  workers MiB")

        def sample() -> tuple[int, int]:
            with db.connect() as conn:
                stored = int(conn.execute(text("SELECT count(*) FROM verdicts")).scalar_one())
            lag = sum(r.lag for r in measure(lag_client, lp.settings.pipeline.group_id, [topic]))
            workers = [worker_pid, *_pids_of_children(worker_pid)]
            print(
                f"{time.time() - started:6.0f} {produced:9,d} {stored:9,d} {lag:6,d} {rss_mib(consumer_pid):13.0f}"
                f" {sum(rss_mib(p) for p in workers):12.0f}",
                flush=True,
            )
            return stored, lag

        while produced < args.posts:
            body = texts[produced % len(texts)]
            post = {
                "id": f"soak-{produced}",
                "tenant": "soak",
                "author": f"a{produced % 997}",
                "text": f"{body} {produced}",
                "created_at": datetime.now(UTC).isoformat(),
            }
            producer.send(topic, json.dumps(post).encode())
            produced += 1
            delay = started + produced / args.rate - time.time()
            if delay > 0:
                time.sleep(delay)
            if time.time() >= next_sample:
                producer.flush()
                sample()
                next_sample += args.sample
        producer.flush()
        while True:
            stored, lag = sample()
            if stored >= args.posts and lag == 0:
                break
            time.sleep(args.sample)
        print(f"done: {stored:,d} verdicts for {args.posts:,d} posts, committed lag {lag}")
        lag_client.close()
        db.dispose()
        producer.close()


if __name__ == "__main__":
    main()
