"""Real LLM tokenizers for tests and benchmarks, built offline from files that PyPI packages ship.

- `mistral`: Mistral 7B's SentencePiece BPE (`mistral_common/data/tokenizer.model.v1`, 32,000 ids), converted
  by transformers' own SentencePieceExtractor into a LlamaTokenizer, whose save_pretrained writes the
  tokenizer.json that a Llama-2/Mistral checkpoint carries (Metaspace pre-tokenizer, byte fallback).
  Needs the dev extras `mistral-common`, `sentencepiece` and `protobuf`.
- `bytebpe`: a GPT-2-style byte-level BPE (ByteLevel pre-tokenizer and decoder, the pipeline of GPT-2,
  Llama 3 and Qwen) trained here by the `tokenizers` library on human prose, 32,000 ids by default.

Each build is written once into a cache folder (a temporary folder unless one is given) and reused; nothing
is downloaded and nothing generated is committed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from moderation.testing.synthetic import stdlib_prose

TOKENIZER_KINDS = ("bundled", "mistral", "bytebpe")


def default_cache() -> Path:
    return Path(os.environ.get("MODERATION_TOKENIZER_CACHE", Path(tempfile.gettempdir()) / "moderation-tokenizers"))


def mistral_model_file() -> Path:
    """Mistral's SentencePiece model as the `mistral-common` package ships it."""
    import mistral_common

    return Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"


def build_mistral(cache: Path | None = None) -> Path:
    """tokenizer.json of Mistral 7B's tokenizer (SentencePiece BPE, 32,000 ids); built once per cache folder."""
    source = mistral_model_file()
    folder = (cache or default_cache()) / f"mistral-v1-{_digest(source.read_bytes())}"
    target = folder / "tokenizer.json"
    if not target.is_file():
        from tokenizers.models import BPE
        from transformers import LlamaTokenizer
        from transformers.convert_slow_tokenizer import SentencePieceExtractor

        # transformers 5 returns a dict (its annotation still says a tuple).
        extracted: Any = SentencePieceExtractor(str(source)).extract(BPE)
        tokenizer = LlamaTokenizer(vocab=extracted["vocab"], merges=extracted["merges"])
        _publish(folder, lambda tmp: tokenizer.save_pretrained(tmp))
    return target


def build_bytebpe(cache: Path | None = None, vocab_size: int = 32000, corpus_chars: int = 4_000_000) -> Path:
    """tokenizer.json of a byte-level BPE (GPT-2's pipeline) trained on human prose; built once per cache folder."""
    corpus = stdlib_prose(max_chars=corpus_chars)[:corpus_chars]
    folder = (cache or default_cache()) / f"bytebpe-{vocab_size}-{_digest(corpus.encode())}"
    target = folder / "tokenizer.json"
    if not target.is_file():
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte has an id: no unknown tokens
            special_tokens=["<|endoftext|>"],
            show_progress=False,
        )
        lines = corpus.splitlines()
        tokenizer.train_from_iterator((lines[i : i + 1000] for i in range(0, len(lines), 1000)), trainer)
        _publish(folder, lambda tmp: tokenizer.save(str(Path(tmp) / "tokenizer.json")))
    return target


def tokenizer_spec(kind: str, cache: Path | None = None) -> str:
    """The config's `tokenizer` value for a kind of TOKENIZER_KINDS."""
    from moderation.config import BUNDLED_TOKENIZER

    if kind == "bundled":
        return BUNDLED_TOKENIZER
    if kind == "mistral":
        return str(build_mistral(cache))
    if kind == "bytebpe":
        return str(build_bytebpe(cache))
    raise ValueError(f"tokenizer kind {kind!r}: expected one of {TOKENIZER_KINDS}")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _publish(folder: Path, write: object) -> None:
    """Write into a fresh folder beside `folder`, then rename it into place: concurrent builders never see a
    half-written file, and the first one to finish wins."""
    assert callable(write)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".tmp-"))
    write(str(tmp))
    try:
        tmp.rename(folder)
    except OSError:  # another process published it first
        for item in tmp.iterdir():
            item.unlink()
        tmp.rmdir()
