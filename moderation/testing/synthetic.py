"""Synthetic posts for the demo, the benchmarks and the tests: human text, and watermarked text made by
transformers' own `WatermarkLogitsProcessor` over a LOW-ENTROPY language model.

Why not a random tiny transformer? It spreads probability over the whole vocabulary, so every token can
be pushed green and its watermark is far stronger than a real model's. A bigram model estimated from real
human text has few plausible next words at most steps, like a real model, so the watermark is as weak
and length-dependent as in practice — which is what detection rates should be measured on.

Human text comes from the docstrings and comments of Python's standard library (English prose present on
every machine), cut into posts of 20-400 words, plus repetitive posts (chants, lists, copy-paste spam),
the known false-positive trap for detectors that count repeated n-grams.

Every generated token is a whole lowercase word or a punctuation mark of the bundled BERT vocabulary, so
the text re-tokenizes to exactly the ids that were generated.
"""

from __future__ import annotations

import functools
import io
import json
import random
import re
import sysconfig
import tokenize
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from moderation.config import BUNDLED_TOKENIZER, WatermarkScheme
from moderation.watermark.tokenization import load_tokenizer

PUNCTUATION = (",", ".", ";", ":", "?", "!")
_WORD = re.compile(r"[a-z]+|[,.;:?!]")


@functools.cache
def stdlib_prose(max_chars: int = 3_000_000) -> str:
    """Docstrings and comments of the standard library (then of installed packages), in a fixed order."""
    paths = sysconfig.get_paths()
    stdlib = Path(paths["stdlib"])
    # The standard library first (on every machine); then installed packages when more text is asked for.
    files = sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")) + sorted(Path(paths["purelib"]).glob("**/*.py"))
    chunks: list[str] = []
    total = 0
    for path in files:
        if {"test", "tests", "idlelib"} & set(path.parts[:-1]) or path.name.startswith("test_"):
            continue  # test code is full of fixtures, not prose
        try:
            source = path.read_text(encoding="utf-8")
            for tok in tokenize.generate_tokens(io.StringIO(source).readline):
                if tok.type == tokenize.STRING and tok.string.startswith(('"""', "'''", 'r"""')):
                    text = tok.string.strip("rR").strip("\"'")
                elif tok.type == tokenize.COMMENT:
                    text = tok.string.lstrip("#").strip()
                else:
                    continue
                if len(text.split()) >= 4 and not text.startswith(("!", "-*-", "noqa", "type:")):
                    chunks.append(" ".join(text.split()))
                    total += len(chunks[-1])
        except (SyntaxError, UnicodeDecodeError, tokenize.TokenError):
            continue
        if total >= max_chars:
            break
    return "\n".join(chunks)


@functools.cache
def _vocab() -> dict[str, int]:
    return dict(load_tokenizer(BUNDLED_TOKENIZER).get_vocab())


def words_of(text: str) -> list[str]:
    """Lowercase words and punctuation that are single tokens of the bundled vocabulary."""
    vocab = _vocab()
    return [w for w in _WORD.findall(text.lower()) if w in vocab]


def render(words: list[str]) -> str:
    """Words back to text: punctuation attached to the previous word (BERT re-splits it the same way)."""
    out = ""
    for w in words:
        out += w if (w in PUNCTUATION or not out) else " " + w
    return out


def human_posts(n: int, seed: int = 0, repetitive_share: float = 0.1) -> list[str]:
    """n human posts of 20-400 words; `repetitive_share` of them repetitive (chants, lists, spam)."""
    rng = random.Random(seed)
    prose = stdlib_prose().split("\n")
    posts: list[str] = []
    while len(posts) < n:
        if rng.random() < repetitive_share:
            posts.append(_repetitive_post(rng))
            continue
        length = int(rng.choice((20, 40, 60, 100, 150, 200, 300, 400)) * rng.uniform(0.8, 1.2))
        start = rng.randrange(len(prose))
        text = ""
        i = start
        while len(text.split()) < length and i < start + 400:
            text += " " + prose[i % len(prose)]
            i += 1
        posts.append(" ".join(text.split()[:length]))
    return posts


def _repetitive_post(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        chant = rng.choice(["go team go", "lol", "buy now", "this is the way", "we want more"])
        return " ".join([chant] * rng.randint(10, 60))
    if kind == 1:
        item = rng.choice(["eggs", "milk", "bread", "apples", "coffee", "rice"])
        return "shopping list: " + ", ".join(f"{item} {k}" for k in range(rng.randint(10, 60)))
    return " ".join(["click here for free followers and likes, limited offer, act now!"] * rng.randint(3, 15))


class BigramModel:
    """P(next word | word) from counts over human prose, with add-k smoothing over the words seen after it.

    Its logits are over the model vocabulary (vocab_size of the scheme): words never seen after the current
    one get -inf, as a confident real model gives them vanishing probability.
    """

    def __init__(self, text: str, smoothing: float = 0.1, top_k: int = 50) -> None:
        vocab = _vocab()
        words = words_of(text)
        ids = np.array([vocab[w] for w in words], dtype=np.int64)
        self.id_to_word = {i: w for w, i in vocab.items()}
        pairs: dict[int, dict[int, int]] = {}
        for a, b in zip(ids[:-1].tolist(), ids[1:].tolist(), strict=True):
            row = pairs.setdefault(a, {})
            row[b] = row.get(b, 0) + 1
        self.next: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for a, row in pairs.items():
            items = sorted(row.items(), key=lambda kv: -kv[1])[:top_k]
            nxt = np.array([k for k, _ in items], dtype=np.int64)
            counts = np.array([c for _, c in items], dtype=np.float64) + smoothing
            self.next[a] = (nxt, np.log(counts / counts.sum()))
        unigram = np.bincount(ids, minlength=max(vocab.values()) + 1).astype(np.float64)
        top = np.argsort(-unigram)[:top_k]
        self.fallback = (top.astype(np.int64), np.log((unigram[top] + smoothing) / (unigram[top] + smoothing).sum()))
        self.starts = ids[np.isin(ids, [vocab[w] for w in ("the", "a", "this", "it", "we", "you", "if")])]

    def logits(self, last: int, vocab_size: int) -> Any:
        import torch

        nxt, logp = self.next.get(last, self.fallback)
        out = torch.full((1, vocab_size), float("-inf"))
        out[0, torch.from_numpy(nxt)] = torch.from_numpy(logp).float()
        return out


@functools.cache
def default_model() -> BigramModel:
    return BigramModel(stdlib_prose())


def watermarked_post(n_words: int, scheme: WatermarkScheme, seed: int, bias: float | None = None) -> str:
    """n_words generated by the bigram model through transformers' WatermarkLogitsProcessor (sampling)."""
    import torch
    from transformers.generation.logits_process import WatermarkLogitsProcessor

    model = default_model()
    processor = WatermarkLogitsProcessor(
        vocab_size=scheme.vocab_size,
        device="cpu",
        greenlist_ratio=scheme.greenlist_ratio,
        bias=scheme.bias if bias is None else bias,
        hashing_key=scheme.key,
        seeding_scheme=scheme.seeding_scheme,
        context_width=scheme.effective_context_width,
    )
    gen = torch.Generator().manual_seed(seed)
    ids = [int(model.starts[seed % len(model.starts)])]
    while len(ids) < n_words:
        scores = processor(torch.tensor([ids]), model.logits(ids[-1], scheme.vocab_size))
        probs = torch.softmax(scores[0], dim=-1)
        ids.append(int(torch.multinomial(probs, 1, generator=gen)))
    return render([model.id_to_word[i] for i in ids])


def unwatermarked_post(n_words: int, seed: int) -> str:
    """The same bigram model without a watermark: machine-like text no key has touched."""
    import torch

    model = default_model()
    gen = torch.Generator().manual_seed(seed)
    ids = [int(model.starts[seed % len(model.starts)])]
    while len(ids) < n_words:
        probs = torch.softmax(model.logits(ids[-1], 30522)[0], dim=-1)
        ids.append(int(torch.multinomial(probs, 1, generator=gen)))
    return render([model.id_to_word[i] for i in ids])


def post_stream(
    n: int, scheme: WatermarkScheme, seed: int = 0, watermarked_share: float = 0.3, tenant: str = "demo"
) -> Iterator[dict[str, Any]]:
    """Kafka-format posts (id, tenant, author, text, created_at), a share of them watermarked; each says
    which it is in metadata.truth (for evaluation; the pipeline ignores metadata)."""
    rng = random.Random(seed)
    humans = iter(human_posts(n, seed=seed))
    for i in range(n):
        marked = rng.random() < watermarked_share
        text = watermarked_post(rng.choice((60, 120, 200)), scheme, seed=seed * 100_003 + i) if marked else next(humans)
        yield {
            "id": f"post-{seed}-{i}",
            "tenant": tenant,
            "author": f"user{rng.randrange(max(1, n // 5))}",
            "text": text,
            "created_at": datetime.now(UTC).isoformat(),
            "metadata": {"truth": "watermarked" if marked else "human"},
        }


def write_sample(path: Path, scheme: WatermarkScheme, n: int = 40) -> None:
    """The bundled sample for `make scan-demo`."""
    with path.open("w", encoding="utf-8") as f:
        for post in post_stream(n, scheme, seed=7, watermarked_share=0.5):
            f.write(json.dumps({k: post[k] for k in ("id", "author", "text")}) + "\n")


# -- attacks the seed documents describe (character-level evasion and copy-paste) -----------------------

EMOJI = ("😀", "🔥", "👍", "🚀", "✨", "😂")
HOMOGLYPHS = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "i": "і"}  # Latin -> Cyrillic


def emoji_attack(text: str, every: int = 3, seed: int = 0) -> str:
    """An emoji after every few words (the "emoji attack": ask the model to emit emoji, then delete them —
    here the platform sees them still in place)."""
    rng = random.Random(seed)
    words = text.split(" ")
    return " ".join(w + (" " + rng.choice(EMOJI) if i % every == every - 1 else "") for i, w in enumerate(words))


def zero_width_attack(text: str, share: float = 0.5, seed: int = 0) -> str:
    """Zero-width spaces and joiners inside a share of the words: invisible, but they split tokens."""
    rng = random.Random(seed)
    out = []
    for w in text.split(" "):
        if len(w) > 2 and rng.random() < share:
            k = rng.randrange(1, len(w))
            w = w[:k] + rng.choice(("\u200b", "\u200c", "\u200d", "\u2060")) + w[k:]
        out.append(w)
    return " ".join(out)


def homoglyph_attack(text: str, share: float = 0.5, seed: int = 0) -> str:
    """Latin letters swapped for look-alike Cyrillic ones in a share of the words."""
    rng = random.Random(seed)
    return " ".join("".join(HOMOGLYPHS.get(c, c) for c in w) if rng.random() < share else w for w in text.split(" "))


def paste_into(passage: str, human_before: str, human_after: str) -> tuple[str, int, int]:
    """A watermarked passage inside human text; returns the text and the passage's character span."""
    text = f"{human_before} {passage} {human_after}"
    start = len(human_before) + 1
    return text, start, start + len(passage)
