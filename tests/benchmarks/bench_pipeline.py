"""End-to-end pipeline throughput and latency: produced to Kafka -> verdict committed in PostgreSQL.

One consumer, one worker with a pool process per core (Celery's default; `--worker-concurrency`), the outbox
relay, real PostgreSQL, Redis and RabbitMQ, the embedded Kafka-protocol broker; ~200-token posts that share
no passages. After a warm-up the database is analyzed, as autovacuum does in a running deployment (see
`analyze`).
1. Throughput: N posts produced as fast as the producer goes; rate = N / (last verdict's commit time -
   first produce). Compared, in the same run, with the moderation engine alone on the same posts (one
   process, no Kafka/Celery/PostgreSQL), to show what the pipeline costs.
2. Latency at half that rate: posts produced at a steady rate for a while; latency = decided_at (the
   database's clock in the storing transaction) - created_at (stamped by the producer just before send).
Run: `make bench-pipeline` (or `python -m tests.benchmarks.bench_pipeline --posts 20000`).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from moderation.config import default_config_path, parse_settings
from moderation.engine import Engine
from moderation.kafka_io import make_producer
from moderation.posts import Post
from moderation.testing.pipeline import LocalPipeline
from tests.benchmarks.common import add_tokenizer_option, demo_config_over, distinct_posts, machine
from tests.benchmarks.cpu import cpu_by_role


def post(i: int, body: str, run: str) -> dict[str, Any]:
    return {
        "id": f"{run}-{i}",
        "tenant": "bench",
        "author": f"a{i % 1000}",
        "text": body,
        "created_at": datetime.now(UTC).isoformat(),
    }


def latencies(lp: LocalPipeline, prefix: str) -> np.ndarray:
    engine = lp.database()
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT EXTRACT(EPOCH FROM v.decided_at - p.created_at) FROM verdicts v JOIN posts p"
                " USING (tenant, post_id) WHERE v.post_id LIKE :prefix"
            ),
            {"prefix": f"{prefix}-%"},
        ).all()
    engine.dispose()
    return np.array([float(r[0]) for r in rows])


def last_commit(lp: LocalPipeline, prefix: str) -> float:
    engine = lp.database()
    with engine.connect() as conn:
        t = conn.execute(
            text("SELECT EXTRACT(EPOCH FROM max(decided_at)) FROM verdicts WHERE post_id LIKE :p"), {"p": f"{prefix}-%"}
        ).scalar_one()
    engine.dispose()
    return float(t)


def analyze(lp: LocalPipeline) -> None:
    """Give the fresh database the planner statistics a running one has. Without them PostgreSQL checks each
    foreign key by scanning the tenant's posts through another index (0.35 ms per row instead of 0.01: a
    third of the pipeline's CPU); autovacuum analyzes a real deployment's tables within a minute of traffic,
    and the workers' cached plans follow."""
    engine = lp.database()
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--posts", type=int, default=20000, help="posts for the throughput run")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="length of the half-rate run")
    parser.add_argument(
        "--plugins", default="watermark,spam,flood,rate", help="comma-separated plugins to enable (default: the demo's)"
    )
    parser.add_argument(
        "--worker-concurrency", type=int, default=os.cpu_count() or 1, help="pool processes (default: one per core)"
    )
    add_tokenizer_option(parser)
    args = parser.parse_args()
    enabled = [p.strip() for p in args.plugins.split(",") if p.strip()]
    config_text = (
        default_config_path()
        .read_text(encoding="utf-8")
        .replace('enabled = ["watermark", "spam", "flood", "rate"]', f"enabled = {enabled!r}".replace("'", '"'))
    )
    config_text = demo_config_over(args.tokenizer, config_text)
    texts = distinct_posts(args.posts)
    print(
        f"machine: {machine()}; plugins: {', '.join(enabled)}; tokenizer: {args.tokenizer}; "
        f"worker pool processes: {args.worker_concurrency}"
    )

    settings = parse_settings(tomllib.loads(config_text))
    engine = Engine(settings)
    engine.moderate([Post(id="w", text=texts[0])])
    start = time.perf_counter()
    for i in range(0, len(texts), settings.detector.batch_size):
        engine.moderate([Post(id=str(j), text=t) for j, t in enumerate(texts[i : i + settings.detector.batch_size])])
    engine_rate = len(texts) / (time.perf_counter() - start)
    del engine

    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalPipeline(Path(tmp), config_text, worker_concurrency=args.worker_concurrency) as lp,
    ):
        assert lp.endpoints is not None
        # Warm-up: the worker's first batch pays for JIT compilation and green-list derivation.
        lp.produce([post(i, t, "warm") for i, t in enumerate(texts[:500])])
        lp.wait_for(500, timeout=300)
        analyze(lp)

        producer = make_producer(lp.endpoints)
        topic = lp.settings.pipeline.input_topic
        cpu_before = cpu_by_role()
        started = time.time()
        for i, body in enumerate(texts):
            producer.send(topic, json.dumps(post(i, body, "max")).encode())
        producer.flush()
        produced_in = time.time() - started
        lp.wait_for(500 + len(texts), timeout=900)
        rate = len(texts) / (last_commit(lp, "max") - started)
        cpu_after = cpu_by_role()

        half = rate / 2
        n = int(half * args.latency_seconds)
        started = time.time()
        for i in range(n):
            target = started + i / half
            delay = target - time.time()
            if delay > 0:
                time.sleep(delay)
            producer.send(topic, json.dumps(post(i, texts[i % len(texts)], "half")).encode())
        producer.flush()
        lp.wait_for(500 + len(texts) + n, timeout=600)
        lat = latencies(lp, "half")
        producer.close()

    print(f"\nthroughput: {len(texts)} posts of ~200 tokens, produced in {produced_in:.1f} s")
    print(f"  end to end (Kafka -> verdict committed in PostgreSQL): {rate:,.0f} posts/s")
    print(f"  moderation engine alone, same posts, one process:      {engine_rate:,.0f} posts/s")
    print(f"  pipeline / engine: {rate / engine_rate:.0%}")
    # What bounds it: CPU per post of every process during the throughput run (a process that started or
    # ended meanwhile counts what it used in between).
    spent = {role: cpu_after.get(role, 0.0) - cpu_before.get(role, 0.0) for role in cpu_after}
    total = sum(spent.values())
    cores = os.cpu_count() or 1
    print(
        f"  CPU per post, all processes: {total / len(texts) * 1000:.2f} ms -> ceiling on {cores} cores: "
        f"{cores / (total / len(texts)):,.0f} posts/s"
    )
    for role, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"    {role:28s} {seconds / len(texts) * 1000:6.3f} ms")
    print(f"\nlatency at half that rate ({half:,.0f} posts/s for {args.latency_seconds:.0f} s, {len(lat)} posts):")
    print(
        f"  p50 {np.percentile(lat, 50) * 1000:,.0f} ms   p99 {np.percentile(lat, 99) * 1000:,.0f} ms   "
        f"max {lat.max() * 1000:,.0f} ms"
    )


if __name__ == "__main__":
    main()
