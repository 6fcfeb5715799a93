"""`make demo`: the whole pipeline end to end on this machine.

Starts the embedded Kafka-protocol broker (or uses MODERATION_KAFKA_BOOTSTRAP), creates and migrates a
database on the local PostgreSQL, starts a consumer and a worker, produces a stream of human and
watermarked posts plus a few malformed messages, waits until every post has its verdict, prints the
summary read back from PostgreSQL and where metrics are served, and stops everything it started (also
on Ctrl-C). Options: `python -m moderation.demo --help`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from moderation.config import default_config_path, load_settings
from moderation.storage.queries import VerdictFilter, action_counts, verdict_rows
from moderation.testing.pipeline import LocalPipeline
from moderation.testing.synthetic import post_stream

MALFORMED = [
    b"this is not JSON",
    b'{"id": "no-text", "tenant": "demo", "author": "x", "created_at": "2026-11-23T00:00:00Z"}',
    b'{"id": 42, "tenant": "demo", "author": "x", "text": "id is a number", "created_at": "2026-11-23T00:00:00Z"}',
    b"\xff\xfe not utf-8",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=300, help="posts to produce (default 300)")
    parser.add_argument("--config", default=str(default_config_path()))
    parser.add_argument("--keep", action="store_true", help="keep the demo database afterwards")
    args = parser.parse_args(argv)

    settings = load_settings(args.config)
    scheme = settings.watermark.schemes[0]
    print(f"generating {args.posts} posts (about 30% watermarked with scheme {scheme.name!r}) ...", flush=True)
    posts = list(post_stream(args.posts, scheme, seed=1))
    truth = {p["id"]: p["metadata"]["truth"] for p in posts}

    workdir = Path(tempfile.mkdtemp(prefix="moderation-demo-"))
    print(f"starting broker, database, worker and consumer (logs in {workdir}) ...", flush=True)
    with LocalPipeline(workdir, Path(args.config).read_text(encoding="utf-8"), keep_database=args.keep) as lp:
        assert lp.endpoints is not None
        started = time.monotonic()
        lp.produce(posts)
        lp.produce(MALFORMED)
        lp.wait_for(len(posts), timeout=300)
        elapsed = time.monotonic() - started
        engine = lp.database()
        with engine.connect() as conn:
            counts = action_counts(conn)
            rows = verdict_rows(conn, VerdictFilter())
        engine.dispose()

        print(f"\nall {len(posts)} posts have a verdict in PostgreSQL ({elapsed:.1f} s after the first was produced)")
        print(f"database: {lp.endpoints.database_url.rsplit('@', 1)[-1]}")
        print("\nverdicts by action:")
        for (tenant, action), n in sorted(counts.items()):
            print(f"  {tenant:8} {action:10} {n}")
        confusion: Counter[tuple[str, str]] = Counter((truth[r["id"]], r["action"]) for r in rows)
        print("\ntruth -> action:")
        for (t, a), n in sorted(confusion.items()):
            print(f"  {t:12} -> {a:10} {n}")
        flagged = [r for r in rows if r["action"] != "allow"][:3]
        for r in flagged:
            wm: dict[str, Any] = next((s for s in r["signals"] if s["plugin"] == "watermark"), {})
            print(
                f"\nexample: {r['id']} by {r['author']}: {r['action']}  z={wm.get('z_score'):.1f}  p={wm.get('p_value'):.2e}"
                f"  green {wm.get('num_green_tokens')}/{wm.get('num_tokens_scored')}"
            )
        print(
            f"\n{len(MALFORMED)} malformed messages went to the dead-letter topic {settings.pipeline.dead_letter_topic!r}"
        )
        print("\nmetrics (Prometheus text format):")
        print(f"  consumer: http://127.0.0.1:{lp.consumer_port}/metrics")
        print(f"  worker:   http://127.0.0.1:{lp.worker_port}/metrics")
        try:
            import urllib.request

            body = urllib.request.urlopen(f"http://127.0.0.1:{lp.consumer_port}/metrics", timeout=5).read().decode()
            for line in body.splitlines():
                if line.startswith(("moderation_posts_consumed_total", "moderation_dead_letters_total")):
                    print(f"    {line}")
        except OSError as exc:
            print(f"    (could not read: {exc})")
        print("\nstopping everything the demo started ...")
    print(json.dumps({"posts": len(posts), "seconds": round(elapsed, 2)}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
