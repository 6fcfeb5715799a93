"""An exact, compiled WordPiece encoder for ASCII text: the whole-process bottleneck, taken off the hot path.

Tokenizing is most of what `moderation scan` and the workers spend per post: the Rust tokenizer tracks
alignments for every character and hands each post back as a Python list, about 2.5 µs of CPU per
token on this project's machines, more than the whole detection step. For the tokenizers whose
pipeline is BERT's (BertNormalizer, BertPreTokenizer, WordPiece) and for ASCII text, that pipeline
reduces to a few byte rules, done here in one compiled pass over a whole batch:

  normalize      lowercase A-Z (when the normalizer lowercases); accents, Chinese characters and the
                 Unicode cases cannot occur in ASCII
  pre-tokenize   split on whitespace (dropped) and on each punctuation character (a word of its own:
                 every printable ASCII character that is neither a letter, a digit nor a space)
  WordPiece      per word, greedy longest match first against the vocabulary, pieces after the first
                 looked up with the continuation prefix ("##"); a word longer than
                 max_input_chars_per_word, or one that cannot be covered, becomes the unknown token

The normalizer also deletes ASCII control characters other than tab, newline and carriage return,
which joins their neighbours into one word; so does this pass. Anything else goes to the Rust tokenizer,
text by text (`FastWordPiece.handles`): non-ASCII text, and text that contains an added token's content
(the tokenizer matches "[MASK]" and the like before anything else). The ids are the Rust tokenizer's, token for token: tests/unit/watermark/test_wordpiece.py compares
them on every printable ASCII character, random strings and the benchmark corpus. Character offsets
(only needed for evidence) still come from the Rust tokenizer, for the few posts that need them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from moderation.watermark.kernels import hash_table_size

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_CONTINUATION_SALT = np.uint64(0x9E3779B97F4A7C15)  # keeps "##ing" and "ing" apart in the table

# Byte classes of the compiled pass.
_WORD, _SPACE, _PUNCT, _DELETED = 0, 1, 2, 3
# What BertNormalizer deletes from ASCII: control characters other than tab, newline and carriage return.
_CONTROL = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f"


def _byte_classes(lowercase: bool) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """(class of each ASCII byte, what the normalizer turns it into)."""
    classes = np.full(128, _WORD, dtype=np.uint8)
    for b in b" \t\n\r":
        classes[b] = _SPACE
    for b in range(33, 127):
        if not chr(b).isalnum():
            classes[b] = _PUNCT
    for b in [*range(0, 9), 11, 12, *range(14, 32), 127]:
        classes[b] = _DELETED
    folded = np.arange(128, dtype=np.uint8)
    if lowercase:
        folded[ord("A") : ord("Z") + 1] += 32
    return classes, folded


@numba.njit(cache=True)
def _hash(buf: npt.NDArray[np.uint8], start: int, end: int, continuation: bool) -> np.uint64:
    h = _FNV_OFFSET ^ (_CONTINUATION_SALT if continuation else np.uint64(0))
    for i in range(start, end):
        h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
    return h


# The vocabulary as the compiled pass sees it: an open-addressing table (id, hash, key index per slot, id -1
# where empty) over the keys, which are `pieces[bounds[k]:bounds[k + 1]]`, continuation pieces or not.
Vocabulary = tuple[
    npt.NDArray[np.int64],  # table: id
    npt.NDArray[np.uint64],  # table: hash
    npt.NDArray[np.int64],  # table: key index
    npt.NDArray[np.uint8],  # pieces: every key's bytes, concatenated
    npt.NDArray[np.int64],  # bounds: where each key starts in pieces, and the end
    npt.NDArray[np.bool_],  # whether each key is a continuation piece (its "##" stripped)
]


@numba.njit(cache=True)
def _build_table(
    pieces: npt.NDArray[np.uint8],
    bounds: npt.NDArray[np.int64],
    continuation: npt.NDArray[np.bool_],
    ids: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    """Open-addressing table of the vocabulary: (id, hash, key index) per slot, id -1 where empty."""
    n = ids.shape[0]
    size = hash_table_size(n)
    table_id = np.full(size, -1, dtype=np.int64)
    table_hash = np.zeros(size, dtype=np.uint64)
    table_key = np.zeros(size, dtype=np.int64)
    mask = size - 1
    for k in range(n):
        h = _hash(pieces, bounds[k], bounds[k + 1], continuation[k])
        slot = np.int64(h & np.uint64(mask))
        while table_id[slot] != -1:
            slot = (slot + 1) & mask
        table_id[slot] = ids[k]
        table_hash[slot] = h
        table_key[slot] = k
    return table_id, table_hash, table_key


@numba.njit(cache=True)
def _lookup(
    word: npt.NDArray[np.uint8],
    start: int,
    end: int,
    continuation: bool,
    vocab: Vocabulary,
) -> int:
    """The id of word[start:end] (as a continuation piece or not), or -1 when not in the vocabulary."""
    table_id, table_hash, table_key, pieces, bounds, key_continuation = vocab
    h = _hash(word, start, end, continuation)
    mask = table_id.shape[0] - 1
    slot = np.int64(h & np.uint64(mask))
    length = end - start
    while table_id[slot] != -1:
        if table_hash[slot] == h:
            k = table_key[slot]
            lo = bounds[k]
            if key_continuation[k] == continuation and bounds[k + 1] - lo == length:
                same = True
                for i in range(length):
                    if pieces[lo + i] != word[start + i]:
                        same = False
                        break
                if same:
                    return table_id[slot]
        slot = (slot + 1) & mask
    return -1


@numba.njit(cache=True)
def _encode_text(
    text: npt.NDArray[np.uint8],
    i: int,
    stop: int,
    out: npt.NDArray[np.int64],
    n: int,
    word: npt.NDArray[np.uint8],
    classes: npt.NDArray[np.uint8],
    folded: npt.NDArray[np.uint8],
    vocab: Vocabulary,
    max_piece: int,
    max_chars: int,
    unk_id: int,
) -> int:
    """Token ids of text[i:stop], written to out[n:]; returns the new end of out."""
    while i < stop:
        kind = classes[text[i]]
        if kind in (_SPACE, _DELETED):
            i += 1
            continue
        # One pre-token: a punctuation character alone, or a run of word characters.
        length = 0
        if kind == _PUNCT:
            word[0] = text[i]
            length = 1
            i += 1
        else:
            # A deleted character joins its neighbours: "ab\x01cd" is the word "abcd".
            while i < stop and classes[text[i]] in (_WORD, _DELETED):
                if classes[text[i]] == _WORD:
                    if length <= max_chars:
                        word[length] = folded[text[i]]
                    length += 1
                i += 1
        if length > max_chars:
            out[n] = unk_id
            n += 1
            continue
        # WordPiece: greedy longest match first; a word that cannot be covered is one unknown token.
        word_start = n
        start = 0
        while start < length:
            end = min(length, start + max_piece)
            found = -1
            while end > start:
                found = _lookup(word, start, end, start > 0, vocab)
                if found >= 0:
                    break
                end -= 1
            if found < 0:
                n = word_start
                out[n] = unk_id
                n += 1
                break
            out[n] = found
            n += 1
            start = end
    return n


@numba.njit(cache=True, parallel=True, nogil=True)
def _encode(
    text: npt.NDArray[np.uint8],
    text_bounds: npt.NDArray[np.int64],
    classes: npt.NDArray[np.uint8],
    folded: npt.NDArray[np.uint8],
    vocab: Vocabulary,
    max_piece: int,
    max_chars: int,
    unk_id: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(token ids of every text, concatenated; tokens per text), texts in parallel. A word of L bytes
    yields at most L tokens, so each text's ids fit in the slots of its own bytes before compaction."""
    texts = text_bounds.shape[0] - 1
    scratch = np.empty(text.shape[0], dtype=np.int64)
    lengths = np.zeros(texts, dtype=np.int64)
    for t in numba.prange(texts):
        word = np.empty(max_chars + 1, dtype=np.uint8)
        lo = text_bounds[t]
        end = _encode_text(
            text,
            lo,
            text_bounds[t + 1],
            scratch,
            lo,
            word,
            classes,
            folded,
            vocab,
            max_piece,
            max_chars,
            unk_id,
        )
        lengths[t] = end - lo
    starts = np.cumsum(lengths) - lengths
    out = np.empty(lengths.sum(), dtype=np.int64)
    for t in numba.prange(texts):
        out[starts[t] : starts[t] + lengths[t]] = scratch[text_bounds[t] : text_bounds[t] + lengths[t]]
    return out, lengths


class FastWordPiece:
    """The compiled encoder for one tokenizer.json; `from_tokenizer_json` says None when it does not apply."""

    def __init__(
        self,
        vocab: dict[str, int],
        *,
        unk_token: str,
        prefix: str,
        max_input_chars_per_word: int,
        lowercase: bool,
        added_tokens: Sequence[tuple[str, bool]],
    ) -> None:
        keys: list[bytes] = []
        continuation: list[bool] = []
        ids: list[int] = []
        for piece, token_id in vocab.items():
            raw = piece.encode("utf-8")
            # An entry serves a word's first piece as it is, and a later piece when it starts with the prefix.
            keys.append(raw)
            continuation.append(False)
            ids.append(token_id)
            if piece.startswith(prefix) and len(piece) > len(prefix):
                keys.append(raw[len(prefix.encode("utf-8")) :])
                continuation.append(True)
                ids.append(token_id)
        pieces = np.frombuffer(b"".join(keys), dtype=np.uint8).copy()
        bounds = np.concatenate([[0], np.cumsum([len(k) for k in keys])]).astype(np.int64)
        is_continuation = np.array(continuation, dtype=np.bool_)
        table = _build_table(pieces, bounds, is_continuation, np.array(ids, dtype=np.int64))
        self._vocab: Vocabulary = (*table, pieces, bounds, is_continuation)
        self._max_piece = max(len(k) for k in keys)
        self._max_chars = max_input_chars_per_word
        self._unk_id = vocab[unk_token]
        self._classes, self._folded = _byte_classes(lowercase)
        # Texts this encoder leaves to the Rust tokenizer, besides non-ASCII ones: those holding an added
        # token (matched before anything else), in any case. An added token that is matched on normalized
        # text could also be spliced together by a deleted control character, so with one of those any
        # control character sends the text there too.
        alternatives = [re.escape(content) for content, _ in added_tokens if content]
        if any(normalized for _, normalized in added_tokens):
            alternatives.append(f"[{_CONTROL}]")
        self._unhandled = re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None

    @classmethod
    def from_tokenizer_json(cls, path: Path) -> FastWordPiece | None:
        """The encoder for a BERT-style tokenizer.json (BertNormalizer with clean_text, BertPreTokenizer,
        WordPiece), or None for any other pipeline."""
        return cls.from_spec(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> FastWordPiece | None:
        """Like from_tokenizer_json, for the file's parsed content."""
        normalizer = spec.get("normalizer") or {}
        pre_tokenizer = spec.get("pre_tokenizer") or {}
        model = spec.get("model") or {}
        if (
            normalizer.get("type") != "BertNormalizer"
            or not normalizer.get("clean_text", True)
            or pre_tokenizer.get("type") != "BertPreTokenizer"
            or model.get("type") != "WordPiece"
            or model.get("unk_token") not in model.get("vocab", {})
        ):
            return None
        return cls(
            model["vocab"],
            unk_token=model["unk_token"],
            prefix=model.get("continuing_subword_prefix", "##"),
            max_input_chars_per_word=int(model.get("max_input_chars_per_word", 100)),
            lowercase=bool(normalizer.get("lowercase", True)),
            added_tokens=[(t["content"], bool(t.get("normalized", True))) for t in spec.get("added_tokens", [])],
        )

    def handles(self, text: str) -> bool:
        """Whether `encode` gives this text exactly the Rust tokenizer's ids."""
        return text.isascii() and (self._unhandled is None or self._unhandled.search(text) is None)

    def encode(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(ids of every text, concatenated; tokens per text), for texts that `handles` accepts."""
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        text_bounds = np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths)])
        data = np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8)
        return _encode(
            data,
            text_bounds,
            self._classes,
            self._folded,
            self._vocab,
            self._max_piece,
            self._max_chars,
            self._unk_id,
        )
