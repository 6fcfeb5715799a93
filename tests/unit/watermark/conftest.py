from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from moderation.config import WatermarkScheme
from moderation.watermark import mt19937
from moderation.watermark.greenlists import GreenLists
from moderation.watermark.seeding import Seeder, seeder_for


@pytest.fixture(autouse=True, scope="session")
def _private_check_memos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The torch checks record their passes in a folder of the test session, not the user's cache."""
    folder = tmp_path_factory.mktemp("moderation-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(mt19937.CACHE_DIR_ENV, str(folder))
        yield folder


def make_scheme(**fields: Any) -> WatermarkScheme:
    fields.setdefault("name", "test")
    fields.setdefault("vocab_size", 30522)
    return WatermarkScheme(**fields)


def runtime_for(scheme: WatermarkScheme, cache_bytes: int = 1 << 24) -> tuple[Seeder, GreenLists]:
    greenlists = GreenLists(
        scheme.vocab_size,
        scheme.greenlist_ratio,
        cuda_generator=False,
        device="cpu",
        cache_bytes=cache_bytes,
    )
    return seeder_for(scheme), greenlists


# -- watermarked text from transformers' own processor --------------------------------------------

import functools  # noqa: E402

import numpy as np  # noqa: E402
from transformers.generation.logits_process import WatermarkLogitsProcessor  # noqa: E402

from moderation.config import BUNDLED_TOKENIZER  # noqa: E402
from moderation.watermark.tokenization import load_tokenizer  # noqa: E402


@functools.cache
def word_ids() -> np.ndarray:
    """Ids of whole lowercase words in the bundled BERT vocabulary: text made of them re-tokenizes exactly."""
    vocab = load_tokenizer(BUNDLED_TOKENIZER).get_vocab()
    return np.array(sorted(i for t, i in vocab.items() if t.isalpha() and t.isascii() and t.islower() and len(t) > 1))


def words_text(ids: list[int]) -> str:
    tokenizer = load_tokenizer(BUNDLED_TOKENIZER)
    return " ".join(tokenizer.id_to_token(i) or "" for i in ids)


def watermarked_words(n: int, scheme: WatermarkScheme, seed: int = 0, bias: float = 4.0) -> str:
    """n words from a toy language model that finds 32 random words plausible at each step (uniform
    among them), watermarked by transformers' WatermarkLogitsProcessor with the scheme's settings (the
    real generator code). Few candidates per step keep selfhash's 40-candidate rejection loop effective."""
    processor = WatermarkLogitsProcessor(
        vocab_size=scheme.vocab_size,
        device="cpu",
        greenlist_ratio=scheme.greenlist_ratio,
        bias=bias,
        hashing_key=scheme.key,
        seeding_scheme=scheme.seeding_scheme,
        context_width=scheme.effective_context_width,
    )
    rng = torch.Generator().manual_seed(seed)
    allowed = torch.from_numpy(word_ids())
    ids = [int(allowed[seed % len(allowed)])]
    while len(ids) < n:
        base = torch.full((1, scheme.vocab_size), float("-inf"))
        base[0, allowed[torch.randint(len(allowed), (32,), generator=rng)]] = 0.0
        scores = processor(torch.tensor([ids]), base)
        probs = torch.softmax(scores[0], dim=-1)
        ids.append(int(torch.multinomial(probs, 1, generator=rng)))
    return words_text(ids)


def human_words(n: int, seed: int) -> str:
    """n uniformly random whole words: text no watermark key has touched."""
    rng = np.random.default_rng(seed)
    return words_text(rng.choice(word_ids(), n).tolist())
