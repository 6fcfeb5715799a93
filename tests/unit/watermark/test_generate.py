"""End to end against the real generator: text made by `model.generate(..., watermarking_config=...)` with a
tiny Llama built from a config, scored by our detector and by transformers' own WatermarkDetector: the same
green counts, token for token, in every setting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, WatermarkDetector, WatermarkingConfig

from moderation.watermark.scoring import score_tokens

from .conftest import make_scheme, runtime_for

VOCAB = 30528  # padded beyond the bundled tokenizer's 30522, as real models often are


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize(
    "fields",
    [
        {"seeding_scheme": "lefthash"},
        {"seeding_scheme": "selfhash"},
        {"seeding_scheme": "selfhash", "context_width": 3, "hashing_key": 2**61 + 7},
        {"seeding_scheme": "lefthash", "greenlist_ratio": 0.5, "bias": 1.0},
    ],
    ids=["lefthash", "selfhash", "selfhash-ctx3-bigkey", "lefthash-gamma0.5"],
)
@pytest.mark.parametrize("ignore_repeated", [True, False])
def test_generated_text_scores_exactly_as_transformers_detector(
    model: LlamaForCausalLM, fields: dict[str, Any], ignore_repeated: bool
) -> None:
    scheme = make_scheme(vocab_size=VOCAB, ignore_repeated_ngrams=ignore_repeated, **fields)
    wm = WatermarkingConfig(
        greenlist_ratio=scheme.greenlist_ratio,
        bias=scheme.bias,
        hashing_key=scheme.key,
        seeding_scheme=scheme.seeding_scheme,
        context_width=scheme.effective_context_width,
    )
    torch.manual_seed(1)
    prompt = torch.randint(3, VOCAB, (3, 5))
    out: Any = model.generate(  # type: ignore[misc]  # transformers' own annotation of generate()
        prompt, watermarking_config=wm, do_sample=True, max_new_tokens=48, min_new_tokens=48
    )
    reference = WatermarkDetector(model.config, "cpu", wm, ignore_repeated_ngrams=ignore_repeated)
    seeder, greenlists = runtime_for(scheme)
    posts = [row.numpy().astype(np.int64) for row in out]
    tokens = score_tokens(posts, seeder, greenlists, counting=scheme.repeat_counting)
    scored, green = (t.tolist() for t in tokens.counts())
    for i, row in enumerate(out):
        ref: Any = reference(row.unsqueeze(0), return_dict=True)
        assert (scored[i], green[i]) == (int(ref.num_tokens_scored[0]), int(ref.num_green_tokens[0])), i
    # A random tiny model spreads probability everywhere, so its watermark is strong: every row is green-heavy.
    assert all(g / s > scheme.greenlist_ratio + 0.2 for g, s in zip(green, scored, strict=True))
