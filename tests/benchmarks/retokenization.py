"""Re-tokenization: a platform sees only decoded text. How often does tokenizing a model's output give other
ids than the model generated, and what does that cost in detection?

Two generators, both watermarked by transformers' own code:
- "bigram": a token-level bigram language model estimated from human prose tokenized by the tokenizer itself
  (so, like a trained LLM, it has learned canonical tokenizations and has few plausible next tokens), whose
  logits go through `WatermarkLogitsProcessor` before sampling: realistic strength and realistic junctures;
- "tiny-llama": `model.generate(..., watermarking_config=...)` with a tiny random Llama, which picks tokens
  with no regard to how text is usually split (the worst case for re-tokenization).

For each post it compares the ids generated with the ids of tokenizer.encode(tokenizer.decode(ids)), and
scores both with the detector's default counting: green fraction, z, and detection at the default
false-positive target (one test, p <= 1e-5).
Run: `python -m tests.benchmarks.retokenization --tokenizer mistral` (or bytebpe).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, WatermarkingConfig
from transformers.generation.logits_process import WatermarkLogitsProcessor

from moderation.config import WatermarkScheme
from moderation.testing.synthetic import stdlib_prose
from moderation.watermark.scoring import score_tokens
from moderation.watermark.seeding import seeder_for
from moderation.watermark.stats import log_binomial_tail, z_scores
from moderation.watermark.tokenization import load_tokenizer
from tests.benchmarks.bench_detector import fresh_greenlists
from tests.benchmarks.common import add_tokenizer_option, scheme_fields, settings_for, table

ALPHA = 1e-5


class BigramLM:
    """Next-token counts over tokenized prose; each step keeps the `top` most frequent successors."""

    def __init__(self, ids: np.ndarray, vocab_size: int, top: int = 40) -> None:
        self.vocab_size = vocab_size
        pairs = ids[:-1].astype(np.int64) * vocab_size + ids[1:]
        keys, counts = np.unique(pairs, return_counts=True)
        prev, nxt = keys // vocab_size, keys % vocab_size
        self.successors: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        bounds = np.flatnonzero(np.diff(prev)) + 1
        for group in np.split(np.arange(len(keys)), bounds):
            if group.size == 0:
                continue
            order = group[np.argsort(-counts[group])][:top]
            self.successors[int(prev[group[0]])] = (nxt[order], np.log(counts[order].astype(np.float64)))
        unigram = np.bincount(ids, minlength=vocab_size)
        order = np.argsort(-unigram)[:top]
        self.fallback = (order, np.log(unigram[order].astype(np.float64) + 1))

    def logits(self, last: list[int]) -> torch.Tensor:
        out = torch.full((len(last), self.vocab_size), float("-inf"))
        for row, token in enumerate(last):
            nxt, logp = self.successors.get(token, self.fallback)
            out[row, torch.from_numpy(nxt)] = torch.from_numpy(logp).float()
        return out


def bigram_posts(lm: BigramLM, scheme: WatermarkScheme, starts: list[int], length: int) -> list[list[int]]:
    processor = WatermarkLogitsProcessor(
        vocab_size=scheme.vocab_size,
        device="cpu",
        greenlist_ratio=scheme.greenlist_ratio,
        bias=scheme.bias,
        hashing_key=scheme.key,
        seeding_scheme=scheme.seeding_scheme,
        context_width=scheme.effective_context_width,
    )
    rng = torch.Generator().manual_seed(0)
    ids = torch.tensor([[s] for s in starts])
    for _ in range(length):
        scores = processor(ids, lm.logits(ids[:, -1].tolist()))
        ids = torch.cat([ids, torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=rng)], dim=1)
    return [row.tolist() for row in ids]


def llama_posts(scheme: WatermarkScheme, special: list[int], starts: list[int], length: int) -> list[list[int]]:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=scheme.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=length + 8,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(config).eval()
    wm = WatermarkingConfig(
        greenlist_ratio=scheme.greenlist_ratio,
        bias=scheme.bias,
        hashing_key=scheme.key,
        seeding_scheme=scheme.seeding_scheme,
        context_width=scheme.effective_context_width,
    )
    out: Any = model.generate(
        torch.tensor([[s] for s in starts]),
        watermarking_config=wm,
        do_sample=True,
        max_new_tokens=length,
        min_new_tokens=length,
        suppress_tokens=special,
    )
    return [row.tolist() for row in out]


def measure(scheme: WatermarkScheme, posts: list[list[int]]) -> dict[str, float]:
    tokenizer = load_tokenizer(scheme.tokenizer)
    texts = tokenizer.decode_batch(posts, skip_special_tokens=True)
    again = [e.ids for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
    differ = sum(a != b for a, b in zip(posts, again, strict=True))
    changed_tokens = sum(_changed(a, b) for a, b in zip(posts, again, strict=True))
    seeder = seeder_for(scheme)

    def scored(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        greenlists = fresh_greenlists(scheme, 64 << 20)
        arrays = [np.array(s, dtype=np.int64) for s in seqs]
        s, g = score_tokens(arrays, seeder, greenlists, counting=scheme.repeat_counting).counts()
        return (
            g / np.maximum(s, 1),
            z_scores(g, s, scheme.greenlist_ratio),
            log_binomial_tail(g, s, scheme.greenlist_ratio),
        )

    frac_gen, z_gen, logp_gen = scored(posts)
    frac_re, z_re, logp_re = scored(again)
    return {
        "posts differ": differ / len(posts),
        "tokens changed": changed_tokens / sum(len(p) for p in posts),
        "green gen": float(frac_gen.mean()),
        "green text": float(frac_re.mean()),
        "z gen": float(z_gen.mean()),
        "z text": float(z_re.mean()),
        "detected gen": float((logp_gen <= math.log(ALPHA)).mean()),
        "detected text": float((logp_re <= math.log(ALPHA)).mean()),
    }


def _changed(a: list[int], b: list[int]) -> int:
    """Tokens of `a` not kept in `b`: len(a) minus the longest common subsequence, counted on the diff."""
    import difflib

    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    return len(a) - sum(block.size for block in matcher.get_matching_blocks())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--length", type=int, default=200, help="tokens generated per post")
    parser.add_argument("--selfhash-posts", type=int, default=40, help="selfhash generation is ~40x slower")
    add_tokenizer_option(parser)
    args = parser.parse_args()
    fields = scheme_fields(args.tokenizer)
    tokenizer = load_tokenizer(fields["tokenizer"])
    prose = stdlib_prose(max_chars=2_000_000)
    corpus = np.array(tokenizer.encode(prose, add_special_tokens=False).ids, dtype=np.int64)
    lm = BigramLM(corpus, fields["vocab_size"])
    special = sorted(tokenizer.get_added_tokens_decoder())
    rng = np.random.default_rng(0)
    print(f"tokenizer: {args.tokenizer}, vocab_size {fields['vocab_size']}, {args.length} tokens per post\n")
    columns = [
        "posts differ",
        "tokens changed",
        "green gen",
        "green text",
        "z gen",
        "z text",
        "detected gen",
        "detected text",
    ]
    rows: list[list[object]] = [["generator", "scheme", "posts", *columns]]
    for seeding in ("lefthash", "selfhash"):
        scheme = settings_for(seeding, **fields).watermark.schemes[0]
        n = args.posts if seeding == "lefthash" else args.selfhash_posts
        starts = rng.choice(corpus, n).tolist()
        for name, posts in (
            ("bigram", bigram_posts(lm, scheme, starts, args.length)),
            ("tiny-llama", llama_posts(scheme, special, starts, args.length)),
        ):
            result = measure(scheme, [p[1:] for p in posts])  # the prompt token is not the model's output
            rows.append(
                [name, seeding, n, *(f"{result[c]:.3f}" if "z" not in c else f"{result[c]:.2f}" for c in columns)]
            )
            print(table(rows), flush=True)
            print()


if __name__ == "__main__":
    main()
