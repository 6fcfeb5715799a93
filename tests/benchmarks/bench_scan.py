"""Whole-process `moderation scan` throughput against transformers' WatermarkDetector, same posts, same run.

`moderation scan` runs as a separate process (start-up, torch import, JSON in and out, tokenization,
normalization, both text forms, windows, evidence for flagged posts: everything a user pays for). The
reference is what a user of transformers must do for the same posts: tokenize each post and call
WatermarkDetector on it, one at a time (ragged posts cannot share its batch). Running the reference on all
posts would take many minutes, so it runs on a sample spread evenly over them (its rate varies by 1.5x
between stretches of the corpus, so a sample from one stretch would be misleading). The start-up of
`moderation scan` (interpreter, imports, config; scanning an empty input) is reported on its own too: it
is inside the whole-process figure.
Run: `make bench-scan` (or `python -m tests.benchmarks.bench_scan --posts 20000`).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from moderation.watermark.tokenization import encode_batch, load_tokenizer
from tests.benchmarks.common import (
    add_tokenizer_option,
    distinct_posts,
    machine,
    peak_rss_mib,
    reference_detector,
    scheme_fields,
    settings_for,
    table,
)


def scheme_config(seeding: str, tokenizer: str, vocab_size: int) -> str:
    return (
        '[detector]\ndevice = "cpu"\n\n[[watermark.schemes]]\n'
        f'name = "{seeding}"\ntokenizer = {json.dumps(tokenizer)}\nvocab_size = {vocab_size}\n'
        f'seeding_scheme = "{seeding}"\n'
    )


def run_scan(config: Path, source: Path, output: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds) that `moderation scan` takes as a process of its own, and the summary
    line it prints. CPU seconds (user + system, all its threads) are what a shared machine cannot inflate."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = ["moderation.cli", "scan", "--config", str(config), "--input", str(source), "--output", str(output)]
    done = subprocess.run([sys.executable, "-m", *command], capture_output=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stderr.decode().strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--posts", type=int, default=20000)
    parser.add_argument("--reference-posts", type=int, default=200, help="posts, spread evenly, for the reference")
    parser.add_argument("--repeat", type=int, default=1, help="scan each scheme this many times (the spread)")
    add_tokenizer_option(parser)
    args = parser.parse_args()
    fields = scheme_fields(args.tokenizer)
    posts = distinct_posts(args.posts)
    print(f"machine: {machine()}")
    print(f"tokenizer: {args.tokenizer} ({fields['tokenizer']}), vocab_size {fields['vocab_size']}")
    rows: list[list[object]] = [
        [
            "scheme",
            "posts",
            "tokens",
            "scan s",
            "start-up s",
            "scan tok/s",
            "reference tok/s",
            "ratio",
            "scan CPU s",
            "ref CPU tok/s",
            "CPU ratio",
            "scan peak RSS MiB",
        ]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "posts.jsonl"
        path.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(posts)))
        for seeding in ("lefthash", "selfhash"):
            config = Path(tmp) / f"{seeding}.toml"
            config.write_text(scheme_config(seeding, fields["tokenizer"], fields["vocab_size"]))
            scheme = settings_for(seeding, **fields).watermark.schemes[0]
            tokens = sum(len(x) for x in encode_batch(scheme.tokenizer, posts).ids)

            empty = Path(tmp) / "empty.jsonl"
            empty.write_text("")
            reference = reference_detector(scheme)
            tokenizer = load_tokenizer(scheme.tokenizer)
            sample = posts[:: max(1, len(posts) // args.reference_posts)][: args.reference_posts]
            reference(encode_batch(scheme.tokenizer, sample[:1]).ids[0])
            for run in range(args.repeat):
                startup_s, _, _ = run_scan(config, empty, Path(tmp) / "out.jsonl")
                scan_s, scan_cpu, summary = run_scan(config, path, Path(tmp) / "out.jsonl")
                rss = peak_rss_mib(children=True)  # the largest child so far: the scans run one after the other
                # Right after the scan, so that both see the same load on a shared machine.
                start, start_cpu = time.perf_counter(), time.process_time()
                ref_tokens = 0
                for text in sample:  # what a transformers user does per post: tokenize, then detect
                    ids = np.array(tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)
                    reference(ids)
                    ref_tokens += len(ids)
                ref_rate = ref_tokens / (time.perf_counter() - start)
                ref_cpu_rate = ref_tokens / (time.process_time() - start_cpu)
                scan_rate = tokens / scan_s
                rows.append(
                    [
                        seeding if run == 0 else f"  run {run + 1}",
                        args.posts,
                        tokens,
                        f"{scan_s:.1f}",
                        f"{startup_s:.1f}",
                        f"{scan_rate:,.0f}",
                        f"{ref_rate:,.0f}",
                        f"{scan_rate / ref_rate:,.0f}x",
                        f"{scan_cpu:.1f}",
                        f"{ref_cpu_rate:,.0f}",
                        f"{tokens / scan_cpu / ref_cpu_rate:,.0f}x",
                        f"{rss:,.0f}",
                    ]
                )
                print(summary)
    print(table(rows))


if __name__ == "__main__":
    main()
