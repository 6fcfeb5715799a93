"""Whole-process `moderation scan` throughput against transformers' WatermarkDetector, same posts, same run.

`moderation scan` runs as a separate process (start-up, torch import, JSON in and out, tokenization,
normalization, both text forms, windows, evidence for flagged posts: everything a user pays for). The
reference is what a user of transformers must do for the same posts: tokenize each post and call
WatermarkDetector on it, one at a time (ragged posts cannot share its batch).
Run: `make bench-scan` (or `python -m tests.benchmarks.bench_scan --posts 20000`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from moderation.watermark.tokenization import encode_batch, load_tokenizer
from tests.benchmarks.common import distinct_posts, machine, peak_rss_mib, reference_detector, settings_for, table


def scheme_config(seeding: str) -> str:
    return (
        '[detector]\ndevice = "cpu"\n\n[[watermark.schemes]]\n'
        f'name = "{seeding}"\nvocab_size = 30522\nseeding_scheme = "{seeding}"\n'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--posts", type=int, default=20000)
    parser.add_argument("--reference-posts", type=int, default=60)
    args = parser.parse_args()
    posts = distinct_posts(args.posts)
    print(f"machine: {machine()}")
    rows: list[list[object]] = [
        ["scheme", "posts", "tokens", "scan s", "scan tok/s", "reference tok/s", "ratio", "scan peak RSS MiB"]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "posts.jsonl"
        path.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(posts)))
        for seeding in ("lefthash", "selfhash"):
            config = Path(tmp) / f"{seeding}.toml"
            config.write_text(scheme_config(seeding))
            scheme = settings_for(seeding).watermark.schemes[0]
            tokens = sum(len(x) for x in encode_batch(scheme.tokenizer, posts).ids)

            start = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "moderation.cli",
                    "scan",
                    "--config",
                    str(config),
                    "--input",
                    str(path),
                    "--output",
                    str(Path(tmp) / "out.jsonl"),
                ],
                capture_output=True,
                check=True,
            )
            scan_s = time.perf_counter() - start
            rss = peak_rss_mib(children=True)  # the largest child so far: the scans run one after the other

            reference = reference_detector(scheme)
            tokenizer = load_tokenizer(scheme.tokenizer)
            sample = posts[: args.reference_posts]
            reference(encode_batch(scheme.tokenizer, sample[:1]).ids[0])
            start = time.perf_counter()
            ref_tokens = 0
            for text in sample:  # what a transformers user does per post: tokenize, then detect
                import numpy as np

                ids = np.array(tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)
                reference(ids)
                ref_tokens += len(ids)
            ref_rate = ref_tokens / (time.perf_counter() - start)
            scan_rate = tokens / scan_s
            rows.append(
                [
                    seeding,
                    args.posts,
                    tokens,
                    f"{scan_s:.1f}",
                    f"{scan_rate:,.0f}",
                    f"{ref_rate:,.0f}",
                    f"{scan_rate / ref_rate:,.0f}x",
                    f"{rss:,.0f}",
                ]
            )
            print(done.stderr.decode().strip().splitlines()[-1])
    print(table(rows))


if __name__ == "__main__":
    main()
