"""Every scored token's green/red outcome is what the generator's own code draws.

References: transformers' WatermarkLogitsProcessor._get_greenlist_ids (the code that watermarks text with
model.generate(watermarking_config=...)), and lm-watermarking's published seeding (additive_prf and
anchored_minhash_prf with its key-independent table), re-derived here straight from its definition with
plain torch calls, one token at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import WatermarkLogitsProcessor

from moderation.watermark.scoring import score_tokens
from moderation.watermark.seeding import LM_WATERMARKING_TABLE_SEED, TABLE_SIZE

from .conftest import make_scheme, runtime_for

BIG_KEY = 2**62 + 12345  # large enough that key * token overflows 64 bits


def random_posts(vocab: int, lengths: list[int], seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # Draw from a small slice of ids too, so repeated n-grams and large token ids both occur.
    return [
        np.concatenate([rng.integers(0, vocab, n // 2), rng.integers(vocab - 40, vocab, n - n // 2)]).astype(np.int64)
        for n in lengths
    ]


def our_green(fields: dict[str, Any], posts: list[np.ndarray]) -> tuple[list[tuple[int, int, bool]], int]:
    scheme = make_scheme(**fields)
    seeder, greenlists = runtime_for(scheme)
    scored = score_tokens(posts, seeder, greenlists, counting="all")
    rows = zip(scored.post.tolist(), scored.position.tolist(), scored.green.tolist(), strict=True)
    return list(rows), seeder.ngram_size


TRANSFORMERS_CASES = [
    {},
    {"vocab_size": 30528},  # model vocab padded beyond the tokenizer's 30522
    {"hashing_key": BIG_KEY},
    {"greenlist_ratio": 0.5, "vocab_size": 1000},
    {"context_width": 3},  # lefthash still seeds from the last token only, but skips 3 tokens
    {"seeding_scheme": "selfhash"},  # default key: the int64 product wraps for some tokens
    {"seeding_scheme": "selfhash", "context_width": 2},
    {"seeding_scheme": "selfhash", "context_width": 4, "hashing_key": 987654321987},
    {"seeding_scheme": "selfhash", "vocab_size": 32000, "greenlist_ratio": 0.1},
]


@pytest.mark.parametrize(
    "fields", TRANSFORMERS_CASES, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "defaults"
)
def test_matches_transformers_processor(fields: dict[str, Any]) -> None:
    scheme = make_scheme(**fields)
    posts = random_posts(scheme.vocab_size, [1, 2, 5, 40, 40])
    ours, m = our_green(fields, posts)
    processor = WatermarkLogitsProcessor(
        vocab_size=scheme.vocab_size,
        device="cpu",
        greenlist_ratio=scheme.greenlist_ratio,
        hashing_key=scheme.key,
        seeding_scheme=scheme.seeding_scheme,
        context_width=scheme.effective_context_width,
    )
    selfhash = scheme.seeding_scheme == "selfhash"
    expected = []
    for p, ids in enumerate(posts):
        t = torch.from_numpy(ids)
        # transformers' WatermarkDetector: n-grams of context_width + 1 - selfhash tokens; the first cannot be scored.
        for i in range(m - 1, len(ids)):
            prefix = t[i - m + 1 : i + 1] if selfhash else t[i - m + 1 : i]
            green_ids = processor._get_greenlist_ids(prefix)  # type: ignore[arg-type]  # a LongTensor at run time
            expected.append((p, i, bool((green_ids == t[i]).any())))
    assert ours == expected
    assert len(ours) == sum(max(0, len(x) - m + 1) for x in posts)


def test_selfhash_products_really_wrap() -> None:
    # Guard for the case above: with the default key some products exceed int64 and wrap.
    scheme = make_scheme(seeding_scheme="selfhash")
    seeder, _ = runtime_for(scheme)
    assert seeder.table is not None
    hashed = (seeder.table[:30522] + 1).astype(np.float64)
    assert (15485863 * hashed * hashed > 2**63).any()


def lm_watermarking_green(prefix_and_target: list[int], fields: dict[str, Any]) -> bool:
    """lm-watermarking's detector, from its published definition: PRF -> manual_seed -> randperm[:gamma V]."""
    scheme = make_scheme(**fields)
    key, width, vocab = scheme.key, scheme.effective_context_width, scheme.vocab_size
    gamma_size = int(vocab * scheme.greenlist_ratio)
    ids = torch.tensor(prefix_and_target)
    if scheme.seeding_scheme == "selfhash":  # anchored_minhash_prf over the n-gram, the target included
        table_rng = torch.Generator().manual_seed(LM_WATERMARKING_TABLE_SEED)
        table = torch.randperm(TABLE_SIZE, generator=table_rng)
        hashed = table[ids[-width:] % TABLE_SIZE] + 1
        seed = (key * hashed * hashed[-1]).min().item()
    else:  # additive_prf over the context before the target
        seed = key * ids[:-1][-width:].sum().item()
    rng = torch.Generator().manual_seed(int(seed) % (2**64 - 1))
    return bool((torch.randperm(vocab, generator=rng)[:gamma_size] == ids[-1]).any())


LM_CASES = [
    {"generator": "lm-watermarking", "seeding_scheme": "simple_1"},
    {"generator": "lm-watermarking", "seeding_scheme": "lefthash", "context_width": 3},  # sums the context
    {"generator": "lm-watermarking", "seeding_scheme": "selfhash"},  # published default: context 4
    {"generator": "lm-watermarking", "seeding_scheme": "selfhash", "context_width": 2, "hashing_key": BIG_KEY // 7},
]


@pytest.mark.parametrize("fields", LM_CASES, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_matches_lm_watermarking(fields: dict[str, Any]) -> None:
    scheme = make_scheme(**fields)
    posts = random_posts(scheme.vocab_size, [3, 30, 30], seed=7)
    ours, m = our_green(fields, posts)
    if scheme.seeding_scheme == "selfhash":
        assert m == scheme.effective_context_width == fields.get("context_width", 4)
    expected = [
        (p, i, lm_watermarking_green(ids[i - m + 1 : i + 1].tolist(), fields))
        for p, ids in enumerate(posts)
        for i in range(m - 1, len(ids))
    ]
    assert ours == expected


def test_simple_1_and_transformers_lefthash_agree() -> None:
    posts = random_posts(30522, [50])
    a, _ = our_green({"generator": "lm-watermarking", "seeding_scheme": "simple_1"}, posts)
    b, _ = our_green({}, posts)
    assert a == b
