"""Detection quality at the default false-positive target, on realistic-strength watermarks.

Watermarked posts: transformers' WatermarkLogitsProcessor over a low-entropy bigram language model (see
moderation/testing/synthetic.py), demo scheme (lefthash, gamma 0.25, delta 2.0). Human posts: stretches of
English prose from the Python standard library plus repetitive posts (chants, lists, spam).
Reports the detection rate by length bucket, the measured false-positive rate (English prose, and real
human text in other scripts: Russian, Ukrainian, Greek, Japanese, Chinese, Korean, Arabic, Hebrew from
Debian's translations), the rate under each evasion family (moderation.testing.synthetic.ATTACKS, all
built from Unicode data the defence does not read) relative to clean on the same posts, and the
copy-paste case (a 128-token passage inside twice as much human text), with how often the reported span
lands on the passage.
Run: `make eval` (or `python -m tests.benchmarks.eval_quality --per-bucket 300 --human 3000 --foreign 800`).
"""

from __future__ import annotations

import argparse
import time

from moderation.config import load_settings
from moderation.testing.synthetic import ATTACKS, foreign_human_posts, human_posts, paste_into, watermarked_post
from moderation.watermark.detector import WatermarkDetector
from tests.benchmarks.common import table

BUCKETS = (25, 50, 100, 200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--per-bucket", type=int, default=300, help="watermarked posts per length bucket")
    parser.add_argument("--human", type=int, default=3000, help="human posts")
    parser.add_argument("--pasted", type=int, default=100, help="copy-paste cases")
    parser.add_argument("--foreign", type=int, default=800, help="human posts in other scripts")
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

    foreign = foreign_human_posts(args.foreign, seed=3)
    foreign_flags = flagged([p for _, p in foreign])
    by_lang: dict[str, list[int]] = {}
    for (lang, _), hit in zip(foreign, foreign_flags, strict=True):
        by_lang.setdefault(lang, [0, 0])[0] += 1
        by_lang[lang][1] += int(hit)
    print(
        f"human posts in other scripts: {len(foreign)} ("
        + ", ".join(f"{lang} {n}" for lang, (n, _) in sorted(by_lang.items()))
        + f"); flagged: {sum(foreign_flags)}"
        + (f" (95% upper bound {3 / len(foreign):.4f} when 0)\n" if foreign else " (none found on this machine)\n")
    )

    rates: dict[str, dict[int, float]] = {name: {} for name in ("clean", *ATTACKS)}
    for words in BUCKETS:
        marked = [watermarked_post(words, scheme, seed=words * 10_000 + i) for i in range(args.per_bucket)]
        rates["clean"][words] = sum(flagged(marked)) / len(marked)
        for name, attack in ATTACKS.items():
            rates[name][words] = sum(flagged([attack(t, i) for i, t in enumerate(marked)])) / len(marked)
    rows: list[list[object]] = [["family", *(f"{w} words" for w in BUCKETS)]]
    for name, by_bucket in rates.items():
        cells: list[object] = [name]
        for words in BUCKETS:
            clean = rates["clean"][words]
            ratio = f" ({by_bucket[words] / clean:.0%})" if name != "clean" and clean else ""
            cells.append(f"{by_bucket[words]:.0%}{ratio}")
        rows.append(cells)
    worst = [
        min(rates[n][w] for n in ATTACKS) / rates["clean"][w] if rates["clean"][w] else float("nan") for w in BUCKETS
    ]
    rows.append(["worst / clean", *(f"{x:.0%}" for x in worst)])
    print(f"detection rate by evasion family and length (words ~ tokens; {args.per_bucket} posts each):")
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
