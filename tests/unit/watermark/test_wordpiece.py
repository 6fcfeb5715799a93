"""The compiled WordPiece pass gives the Rust tokenizer's ids, token for token, on every text it accepts."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import numpy as np
import pytest
from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers

from moderation.config import BUNDLED_TOKENIZER
from moderation.testing.synthetic import stdlib_prose
from moderation.watermark.tokenization import encode_batch, load_tokenizer, resolve_tokenizer_path
from moderation.watermark.wordpiece import FastWordPiece


def rust_ids(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def fast_ids(fast: FastWordPiece, texts: list[str]) -> list[list[int]]:
    assert all(fast.handles(t) for t in texts)
    flat, lengths = fast.encode(texts)
    return [row.tolist() for row in np.split(flat, np.cumsum(lengths)[:-1])] if texts else []


@pytest.fixture(scope="module")
def bundled() -> tuple[FastWordPiece, Tokenizer]:
    fast = FastWordPiece.from_tokenizer_json(resolve_tokenizer_path(BUNDLED_TOKENIZER))
    assert fast is not None
    return fast, load_tokenizer(BUNDLED_TOKENIZER)


def random_ascii(rng: random.Random, length: int) -> str:
    """Words, digits, punctuation, every kind of whitespace and control character, long runs."""
    pools = [
        (string.ascii_lowercase, 30),
        (string.ascii_uppercase, 6),
        (string.digits, 3),
        (string.punctuation, 5),
        (" \t\n\r", 8),
        ("".join(map(chr, [*range(0, 9), 11, 12, *range(14, 32), 127])), 1),
    ]
    alphabet = "".join(chars * weight for chars, weight in pools)
    out = "".join(rng.choice(alphabet) for _ in range(length))
    if rng.random() < 0.1:  # a word longer than max_input_chars_per_word, or right at it
        out += " " + "x" * rng.choice([99, 100, 101, 250]) + " end"
    return out


def test_every_ascii_character_in_context(bundled: tuple[FastWordPiece, Tokenizer]) -> None:
    fast, tokenizer = bundled
    texts = [
        template.format(c=chr(code))
        for code in range(128)
        for template in ("{c}", "ab{c}cd", "x {c} y", "{c}{c}word", "The{c}Quick, brown.{c}", "don{c}t 3{c}14")
    ]
    assert fast_ids(fast, texts) == rust_ids(tokenizer, texts)


def test_random_ascii_strings(bundled: tuple[FastWordPiece, Tokenizer]) -> None:
    fast, tokenizer = bundled
    rng = random.Random(7)
    texts = [random_ascii(rng, rng.randrange(0, 300)) for _ in range(3000)]
    texts = [t for t in texts if fast.handles(t)]
    assert len(texts) > 2900  # only texts with an added token's content are left to the Rust tokenizer
    assert fast_ids(fast, texts) == rust_ids(tokenizer, texts)


def test_english_prose(bundled: tuple[FastWordPiece, Tokenizer]) -> None:
    fast, tokenizer = bundled
    words = stdlib_prose(max_chars=2_000_000).split(" ")
    texts = [" ".join(words[i : i + 150]) for i in range(0, len(words), 150)]
    handled = [t for t in texts if fast.handles(t)]
    assert len(handled) > 0.9 * len(texts)
    assert fast_ids(fast, handled) == rust_ids(tokenizer, handled)


def test_texts_it_leaves_to_the_rust_tokenizer(bundled: tuple[FastWordPiece, Tokenizer]) -> None:
    fast, _ = bundled
    assert not fast.handles("café")  # non-ASCII
    assert not fast.handles("press [MASK] now")  # an added token, matched before anything else
    assert not fast.handles("press [mask] now")  # case-insensitively, to be safe
    assert fast.handles("a [mas k] and [ cls ]")  # not an added token: punctuation and words
    assert fast.handles("ab\x01cd")  # BERT's special tokens are matched on the raw text: no splicing


def test_encode_batch_mixes_both_paths_in_order(bundled: tuple[FastWordPiece, Tokenizer]) -> None:
    _, tokenizer = bundled
    texts = ["plain ascii words", "naïve café", "a [MASK] here", "", "Ünïcödé and ASCII", "UPPER lower 123"]
    encoded = encode_batch(BUNDLED_TOKENIZER, texts)
    assert [x.tolist() for x in encoded.ids] == rust_ids(tokenizer, texts)
    # Offsets (for evidence) describe the same tokens.
    for i, text in enumerate(texts):
        assert encoded.offsets(i).shape == (len(encoded.ids[i]), 2)
        assert encoded.offsets(i).tolist() == [
            list(o) for o in tokenizer.encode(text, add_special_tokens=False).offsets
        ]


def custom_tokenizer(tmp_path: Path, *, lowercase: bool, normalized_added: bool) -> Path:
    """A tiny cased WordPiece vocabulary: many words cannot be covered and become [UNK]."""
    vocab = {"[UNK]": 0, "[SEP]": 1}
    for piece in ["a", "b", "c", "ab", "abc", "##a", "##b", "##bc", "B", "C", "##C", ",", ".", "!", "hello", "##lo"]:
        vocab.setdefault(piece, len(vocab))
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=12))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.add_special_tokens(["[SEP]"])
    tokenizer.add_tokens([AddedToken("zz", normalized=normalized_added)])
    path = tmp_path / f"tokenizer-{lowercase}-{normalized_added}.json"
    tokenizer.save(str(path))
    return path


@pytest.mark.parametrize("lowercase", [True, False])
@pytest.mark.parametrize("normalized_added", [True, False])
def test_other_wordpiece_settings(tmp_path: Path, lowercase: bool, normalized_added: bool) -> None:
    path = custom_tokenizer(tmp_path, lowercase=lowercase, normalized_added=normalized_added)
    fast = FastWordPiece.from_tokenizer_json(path)
    assert fast is not None
    tokenizer = Tokenizer.from_file(str(path))
    rng = random.Random(3)
    alphabet = "abcABC  ,.!\t\x01xyz"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40))) for _ in range(3000)]
    texts += ["abc", "abcbc", "abx", "Abc", "ABC", "helloo", "hello", "aaaaaaaaaaaaa", "aaaaaaaaaaaa", "z\x01z"]
    handled = [t for t in texts if fast.handles(t)]
    assert len(handled) > 500
    assert fast_ids(fast, handled) == rust_ids(tokenizer, handled)
    # An added token matched on normalized text could be spliced by a deleted control character.
    assert fast.handles("z\x01z") is (not normalized_added)


def test_only_bert_pipelines(tmp_path: Path) -> None:
    bpe = Tokenizer(models.BPE({"a": 0, "b": 1}, []))
    path = tmp_path / "bpe.json"
    bpe.save(str(path))
    assert FastWordPiece.from_tokenizer_json(path) is None
    spec = json.loads(resolve_tokenizer_path(BUNDLED_TOKENIZER).read_text())
    spec["pre_tokenizer"] = {"type": "Whitespace"}
    other = tmp_path / "whitespace.json"
    other.write_text(json.dumps(spec))
    assert FastWordPiece.from_tokenizer_json(other) is None
