"""Detection quality at the default false-positive target, on realistic-strength watermarks.

Watermarked posts: transformers' WatermarkLogitsProcessor over a low-entropy bigram language model (see
moderation/testing/synthetic.py), demo scheme (lefthash, gamma 0.25, delta 2.0). Human posts: stretches of
English prose from the Python standard library plus repetitive posts (chants, lists, spam).
Reports the detection rate by length bucket, the measured false-positive rate, the rate under each
attack (emoji, zero-width, homoglyphs) relative to clean, and the copy-paste case (a 128-token passage
inside twice as much human text), with how often the reported span lands on the passage.
Run: `make eval` (or `python -m tests.benchmarks.eval_quality --per-bucket 300 --human 3000`).
"""

from __future__ import annotations

import argparse
import time

from moderation.config import load_settings
from moderation.testing.synthetic import (
    emoji_attack,
    homoglyph_attack,
    human_posts,
    paste_into,
    watermarked_post,
    zero_width_attack,
)
from moderation.watermark.detector import WatermarkDetector
from tests.benchmarks.common import table

BUCKETS = (25, 50, 100, 200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--per-bucket", type=int, default=300, help="watermarked posts per length bucket")
    parser.add_argument("--human", type=int, default=3000, help="human posts")
    parser.add_argument("--pasted", type=int, default=100, help="copy-paste cases")
    args = parser.parse_args()
    started = time.perf_counter()
    settings = load_settings()
    scheme = settings.watermark.schemes[0]
    detector = WatermarkDetector(settings)

    def flagged(texts: list[str]) -> list[bool]:
        return [bool(row[0].watermarked) for row in detector.detect(texts, evidence="none")]

    print(
        f"scheme {scheme.name}: {scheme.seeding_scheme}, gamma {scheme.greenlist_ratio}, delta {scheme.bias}, "
        f"family-wise false-positive target {settings.watermark.false_positive_rate:g}\n"
    )

    humans = human_posts(args.human, seed=11, repetitive_share=0.1)
    human_flags = flagged(humans)
    fp = sum(human_flags)
    print(
        f"human posts: {len(humans)} ({sum(1 for h in humans if len(set(h.split())) < 0.3 * len(h.split()))} "
        f"highly repetitive); flagged: {fp}; measured false-positive rate {fp / len(humans):.4f} "
        f"(95% upper bound {3 / len(humans):.4f} when 0)\n"
    )

    rows: list[list[object]] = [["words", "posts", "clean", "emoji", "zero-width", "homoglyphs", "worst / clean"]]
    for words in BUCKETS:
        marked = [watermarked_post(words, scheme, seed=words * 10_000 + i) for i in range(args.per_bucket)]
        rates = {}
        for name, attack in (
            ("clean", lambda t, i: t),
            ("emoji", lambda t, i: emoji_attack(t, seed=i)),
            ("zero-width", lambda t, i: zero_width_attack(t, seed=i)),
            ("homoglyphs", lambda t, i: homoglyph_attack(t, seed=i)),
        ):
            rates[name] = sum(flagged([attack(t, i) for i, t in enumerate(marked)])) / len(marked)
        worst = min(rates["emoji"], rates["zero-width"], rates["homoglyphs"])
        rows.append(
            [
                words,
                len(marked),
                f"{rates['clean']:.0%}",
                f"{rates['emoji']:.0%}",
                f"{rates['zero-width']:.0%}",
                f"{rates['homoglyphs']:.0%}",
                f"{worst / rates['clean']:.0%}" if rates["clean"] else "-",
            ]
        )
    print("detection rate by length (words ~ tokens) and attack:")
    print(table(rows))

    hits = on_span = 0
    for i in range(args.pasted):
        passage = watermarked_post(128, scheme, seed=777_000 + i)
        before, after = human_posts(2, seed=5_000 + i, repetitive_share=0.0)
        before, after = " ".join(before.split()[:128]), " ".join(after.split()[:128])
        while len(before.split()) < 128 or len(after.split()) < 128:  # short prose pieces: top up
            extra = human_posts(1, seed=9_000 + i, repetitive_share=0.0)[0]
            before, after = (
                " ".join((before + " " + extra).split()[:128]),
                " ".join((after + " " + extra).split()[:128]),
            )
        text, start, end = paste_into(passage, before, after)
        score = detector.detect([text], evidence="flagged")[0][0]
        if score.watermarked:
            hits += 1
            if score.window is not None and min(end, score.window.end_char) - max(start, score.window.start_char) > 0:
                on_span += 1
    print(
        f"\ncopy-paste: a 128-word watermarked passage between 2 x 128 words of human text: detected "
        f"{hits}/{args.pasted} ({hits / args.pasted:.0%}); reported span overlaps the passage in {on_span}/{hits or 1}"
    )
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
