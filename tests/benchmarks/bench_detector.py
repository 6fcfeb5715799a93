"""Detector throughput against transformers' WatermarkDetector, same posts, same CPU, same run.

For each seeding scheme it measures, in tokens per second:
- reference: transformers' WatermarkDetector, one post at a time (ragged posts cannot share its batch);
- detection step: our scoring of the same token ids (green lists, n-gram dedup, counts, exact p-values),
  with a cold green-list cache (a fresh process: every list derived on first use) and warm (a third set of
  different posts, after the cache has seen two: a running worker's steady state);
- detect(): our whole detector call from text (normalization, tokenization, both text forms, windows).

Posts share no passages (consecutive stretches of human prose), so no cache gets credit for repeated text.
Run: `make bench-detector` (or `python -m tests.benchmarks.bench_detector --posts 2000`).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from moderation.config import WatermarkScheme
from moderation.watermark.detector import WatermarkDetector
from moderation.watermark.greenlists import GreenLists
from moderation.watermark.scoring import score_tokens
from moderation.watermark.seeding import Seeder, seeder_for
from moderation.watermark.stats import log_binomial_tail, z_scores
from moderation.watermark.tokenization import encode_batch
from tests.benchmarks.common import (
    add_tokenizer_option,
    distinct_posts,
    machine,
    peak_rss_mib,
    reference_detector,
    scheme_fields,
    settings_for,
    table,
    timed,
)


def detection_step(
    ids: list[np.ndarray], seeder: Seeder, greenlists: GreenLists, scheme: WatermarkScheme
) -> np.ndarray:
    """Token ids in, exact p-values out: what the detector does after tokenizing."""
    tokens = score_tokens(ids, seeder, greenlists, counting=scheme.repeat_counting)
    scored, green = tokens.counts()
    z_scores(green, scored, scheme.greenlist_ratio)
    return log_binomial_tail(green, scored, scheme.greenlist_ratio)


def fresh_greenlists(scheme: WatermarkScheme, cache_bytes: int) -> GreenLists:
    return GreenLists(
        scheme.vocab_size,
        scheme.greenlist_ratio,
        cuda_generator=False,
        device=torch.device("cpu"),
        cache_bytes=cache_bytes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--posts", type=int, default=2000, help="posts per set (three distinct sets: cold, fill, warm)")
    parser.add_argument(
        "--reference-posts", type=int, default=200, help="posts given to transformers' detector, spread over the set"
    )
    parser.add_argument("--vocab-size", type=int, help="the model's vocab_size (default: the tokenizer's)")
    add_tokenizer_option(parser)
    args = parser.parse_args()
    fields = scheme_fields(args.tokenizer)
    if args.vocab_size is not None:
        fields["vocab_size"] = args.vocab_size

    cold_posts = distinct_posts(args.posts)
    fill_posts = distinct_posts(args.posts, offset=args.posts)
    warm_posts = distinct_posts(args.posts, offset=2 * args.posts)
    print(f"machine: {machine()}")
    print(f"tokenizer: {args.tokenizer} ({fields['tokenizer']}), vocab_size {fields['vocab_size']}")
    print(f"posts: 3 x {args.posts} distinct posts of 150 words\n")
    rows: list[list[object]] = [
        ["scheme", "reference tok/s", "step cold tok/s", "step warm tok/s", "detect() tok/s", "step/ref", "detect/ref"]
    ]
    for seeding in ("lefthash", "selfhash"):
        settings = settings_for(seeding, **fields)
        scheme = settings.watermark.schemes[0]
        cold_ids = encode_batch(scheme.tokenizer, cold_posts).ids
        fill_ids = encode_batch(scheme.tokenizer, fill_posts).ids
        warm_ids = encode_batch(scheme.tokenizer, warm_posts).ids

        reference = reference_detector(scheme)
        reference(cold_ids[0])  # first-call overheads out of the measurement
        # Spread over the set: transformers' rate varies by 1.5x between stretches of the corpus.
        ref_ids = cold_ids[1 :: max(1, len(cold_ids) // args.reference_posts)][: args.reference_posts]
        ref_seconds, _ = timed(lambda ids: [reference(x) for x in ids], ref_ids)  # noqa: B023 - called at once
        ref_rate = sum(len(x) for x in ref_ids) / ref_seconds

        seeder = seeder_for(scheme)
        cache_bytes = settings.detector.greenlist_cache_mib * 2**20
        detection_step(cold_ids[:2], seeder, fresh_greenlists(scheme, cache_bytes), scheme)  # compile the kernels
        greenlists = fresh_greenlists(scheme, cache_bytes)
        cold_s, _ = timed(detection_step, cold_ids, seeder, greenlists, scheme)
        detection_step(fill_ids, seeder, greenlists, scheme)  # more traffic, as a running worker has seen
        warm_s, _ = timed(detection_step, warm_ids, seeder, greenlists, scheme)
        cold_rate = sum(len(x) for x in cold_ids) / cold_s
        warm_rate = sum(len(x) for x in warm_ids) / warm_s

        detector = WatermarkDetector(settings)
        detector.detect(cold_posts[:64])
        detect_s, _ = timed(detector.detect, warm_posts, evidence="flagged")
        detect_rate = sum(len(x) for x in warm_ids) / detect_s
        rows.append(
            [
                seeding,
                f"{ref_rate:,.0f}",
                f"{cold_rate:,.0f}",
                f"{warm_rate:,.0f}",
                f"{detect_rate:,.0f}",
                f"{warm_rate / ref_rate:,.0f}x",
                f"{detect_rate / ref_rate:,.0f}x",
            ]
        )
    print(table(rows))
    print(f"\npeak RSS of this process: {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
