"""The tokenizers watermarked LLMs use: Mistral 7B's SentencePiece BPE (from the `mistral-common` package) and a
GPT-2-style byte-level BPE (trained here by `tokenizers`), both built offline into a temporary folder.

1. The compiled BPE pass (moderation/watermark/bpe.py) gives the Rust tokenizer's ids token for token: on
   every ASCII character and pair, random strings with control characters, apostrophes and blank runs, and
   human prose; `encode_batch` also on non-ASCII text, added tokens and over-long words (the Rust path).
2. Text made by `model.generate(..., watermarking_config=...)` with a tiny random Llama whose vocabulary is
   the tokenizer's: our green counts equal transformers' WatermarkDetector's, on the generated ids and on the
   text a platform sees (decoded, then tokenized by us / by the Rust tokenizer for the reference).
   transformers' detector counts every scored n-gram (its `ignore_repeated_ngrams` hashes tensors by
   identity, so it never merges repeats), which is our repeat_counting = "all".
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, WatermarkDetector, WatermarkingConfig

from moderation.config import parse_settings
from moderation.testing.synthetic import stdlib_prose
from moderation.testing.tokenizers import build_bytebpe, build_mistral
from moderation.watermark.bpe import FastBPE
from moderation.watermark.detector import WatermarkDetector as OurDetector
from moderation.watermark.scoring import score_tokens
from moderation.watermark.tokenization import encode_batch, fast_encoder, load_tokenizer

from .conftest import make_scheme, runtime_for


@pytest.fixture(scope="session")
def tokenizer_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokenizers")


@pytest.fixture(scope="session", params=["mistral", "bytebpe"])
def spec(request: pytest.FixtureRequest, tokenizer_cache: Path) -> str:
    build = build_mistral if request.param == "mistral" else build_bytebpe
    return str(build(tokenizer_cache))


def rust_ids(spec: str, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in load_tokenizer(spec).encode_batch(texts, add_special_tokens=False)]


def test_the_compiled_pass_applies(spec: str) -> None:
    fast = fast_encoder(spec)
    assert isinstance(fast, FastBPE)
    assert fast.handles("Plain ASCII prose, with punctuation; and\ttabs.\n")
    assert not fast.handles("café")


def ascii_cases() -> list[str]:
    rng = random.Random(8)
    everything = "".join(chr(b) for b in range(128))
    tricky = " \t\n\r\x0b\x0c'sdtmrevlLL.,!?-_aAzZ09 \x00\x1c\x1f\x7f"
    cases = [chr(b) for b in range(128)] + [chr(a) + chr(b) for a in range(128) for b in range(128)]
    cases += ["".join(rng.choice(everything) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    cases += ["".join(rng.choice(tricky) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    cases += ["don't we'll they're I've she'd it's 'tis O'Neil 'S", "  leading", "trailing  ", "a  \n  b", ""]
    words = stdlib_prose().split()
    cases += [" ".join(words[i * 120 : (i + 1) * 120]) for i in range(0, 60_000, 40)]  # ~1,500 prose posts
    return cases


def test_compiled_pass_equals_rust_on_ascii(spec: str) -> None:
    fast = fast_encoder(spec)
    assert isinstance(fast, FastBPE)
    texts = [t for t in ascii_cases() if fast.handles(t)]
    flat, lengths = fast.encode(texts)
    assert (lengths >= 0).all()  # nothing here has a word long enough to be refused
    ends = np.cumsum(lengths)
    ours = [flat[e - n : e].tolist() for e, n in zip(ends.tolist(), lengths.tolist(), strict=True)]
    expected = rust_ids(spec, texts)
    mismatches = [t for t, a, b in zip(texts, ours, expected, strict=True) if a != b]
    assert not mismatches, f"{len(mismatches)} texts differ, e.g. {mismatches[:3]!r}"
    assert len(texts) > 19_000  # the ASCII cases really went through the compiled pass


def test_cached_tables_encode_as_freshly_built_ones(spec: str, tmp_path: Path) -> None:
    fresh = FastBPE.from_tokenizer_json(Path(spec))
    assert fresh is not None
    fresh.save(tmp_path / "tables.npz")
    loaded = FastBPE.load(tmp_path / "tables.npz")
    texts = ascii_cases()[::7]
    assert [loaded.handles(t) for t in texts] == [fresh.handles(t) for t in texts]
    taken = [t for t in texts if fresh.handles(t)]
    for a, b in zip(loaded.encode(taken), fresh.encode(taken), strict=True):
        assert np.array_equal(a, b)


def test_encode_batch_equals_rust_on_everything(spec: str) -> None:
    """Mixed batches: what the compiled pass refuses (non-ASCII, added tokens, over-long words) goes to Rust,
    and every text keeps its place."""
    tokenizer = load_tokenizer(spec)
    added = [t.content for t in tokenizer.get_added_tokens_decoder().values()]
    texts = [
        "Привет, мир — and English",
        "emoji 🙂 between\u2800words\u200b",
        "日本語のテキスト",
        "x" * 300 + " after a very long word",
        "tabs\tand\nnewlines " + "y" * 257,
        *(f"before {token} after" for token in added),
        "plain ascii in between",
        "",
        "café naïve façade",
    ]
    rng = random.Random(3)
    texts += ["".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(0, 30))) for _ in range(300)]
    rng.shuffle(texts)
    got = [ids.tolist() for ids in encode_batch(spec, texts).ids]
    assert got == rust_ids(spec, texts)


# -- exactness against transformers' generator and detector --------------------------------------------


def tiny_llama(vocab_size: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
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


def suppressed_ids(spec: str, model_vocab: int, ascii_only: bool) -> list[int]:
    """Ids generation must not emit: special tokens, the model's padding rows beyond the tokenizer, and
    (ascii_only) tokens whose text is not ASCII, so that the decoded text takes the compiled pass."""
    tokenizer = load_tokenizer(spec)
    special = set(tokenizer.get_added_tokens_decoder())
    out = []
    for i in range(model_vocab):
        unusable = i in special or tokenizer.id_to_token(i) is None
        if unusable or (ascii_only and not tokenizer.decode([i], skip_special_tokens=False).isascii()):
            out.append(i)
    return out


GENERATIONS = [
    {"seeding_scheme": "lefthash"},
    {"seeding_scheme": "selfhash"},
    {"seeding_scheme": "selfhash", "context_width": 3, "hashing_key": 2**61 + 7},
]


@pytest.mark.parametrize("fields", GENERATIONS, ids=["lefthash", "selfhash", "selfhash-ctx3-bigkey"])
@pytest.mark.parametrize("ascii_only", [True, False], ids=["ascii", "any-token"])
def test_generated_text_scores_exactly_as_transformers(spec: str, fields: dict[str, Any], ascii_only: bool) -> None:
    tokenizer = load_tokenizer(spec)
    vocab = tokenizer.get_vocab_size(with_added_tokens=True) + 8  # the model's rows padded, as real models do
    model = tiny_llama(vocab)
    scheme = make_scheme(vocab_size=vocab, tokenizer=spec, repeat_counting="all", **fields)
    wm = WatermarkingConfig(
        greenlist_ratio=scheme.greenlist_ratio,
        bias=scheme.bias,
        hashing_key=scheme.key,
        seeding_scheme=scheme.seeding_scheme,
        context_width=scheme.effective_context_width,
    )
    suppress = suppressed_ids(spec, vocab, ascii_only)
    allowed = np.setdiff1d(np.arange(vocab), suppress)
    torch.manual_seed(1)
    prompt = torch.from_numpy(np.random.default_rng(1).choice(allowed, (3, 4)))
    out: Any = model.generate(  # type: ignore[misc]  # transformers' own annotation of generate()
        prompt,
        watermarking_config=wm,
        do_sample=True,
        max_new_tokens=48,
        min_new_tokens=48,
        suppress_tokens=suppress,
    )
    reference = WatermarkDetector(model.config, "cpu", wm, ignore_repeated_ngrams=False)

    def ref_counts(ids: list[int]) -> tuple[int, int]:
        result: Any = reference(torch.tensor([ids]), return_dict=True)  # type: ignore[arg-type]  # a LongTensor at run time
        return int(result.num_tokens_scored[0]), int(result.num_green_tokens[0])

    # On the ids the model generated.
    seeder, greenlists = runtime_for(scheme)
    generated = [row.numpy().astype(np.int64) for row in out]
    scored, green = (t.tolist() for t in score_tokens(generated, seeder, greenlists, counting="all").counts())
    assert list(zip(scored, green, strict=True)) == [ref_counts(row.tolist()) for row in generated]
    assert all(g / s > scheme.greenlist_ratio + 0.2 for g, s in zip(green, scored, strict=True))

    # On the text a platform sees: decoded, then tokenized by our detector / by the Rust tokenizer.
    texts = tokenizer.decode_batch([row.tolist() for row in out], skip_special_tokens=False)
    if ascii_only:
        assert all(isinstance(fast_encoder(spec), FastBPE) and fast_encoder(spec).handles(t) for t in texts)  # type: ignore[union-attr]
    settings = parse_settings(
        {
            "detector": {"device": "cpu"},
            "watermark": {
                "schemes": [
                    {
                        "name": "s",
                        "tokenizer": spec,
                        "vocab_size": vocab,
                        "repeat_counting": "all",
                        "normalizers": [],
                        "windowed": False,
                        "min_scored_tokens": 1,
                        **fields,
                    }
                ]
            },
        }
    )
    scores = [s[0] for s in OurDetector(settings).detect(texts, evidence="none")]
    expected = [ref_counts(ids) for ids in rust_ids(spec, texts)]
    assert [(s.num_tokens_scored, s.num_green_tokens) for s in scores] == expected
    assert all(s.form == "raw" for s in scores)
