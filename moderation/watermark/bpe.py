"""An exact, compiled BPE encoder for ASCII text: SentencePiece BPE (Llama 2, Mistral) and byte-level BPE
(GPT-2, Llama 3 style pre-tokenizer), the tokenizers watermarked LLMs use.

The Rust tokenizer costs more than the whole detection step (it tracks alignments for every character
and hands each post back as a Python list). For two pipelines and ASCII text, what it does reduces to a
few byte rules and the BPE merge loop, done here in one compiled pass over a whole batch, in parallel:

  Metaspace      (no normalizer; Metaspace pre-tokenizer, split false, prepend "first" or "always")
                 every space becomes "▁" and one "▁" is put before the text unless it starts with one.
                 BPE then runs over the whole text; since no merge in the vocabulary joins a symbol that
                 ends in a non-"▁" character to one that starts with "▁" (checked when loading), the
                 text falls into independent words at each such place, and each word is merged alone.
                 An ASCII character with no piece of its own becomes its byte-fallback token <0xXX>.
  ByteLevel      (no normalizer; ByteLevel pre-tokenizer with GPT-2's regex, no prefix space)
                 pre-tokens are GPT-2's pattern  's|'t|'re|'ve|'m|'ll|'d| ?L+| ?N+| ?[^\\sLN]+|\\s+(?!\\S)|\\s+
                 (for ASCII: L = letters, N = digits, \\s = tab, LF, VT, FF, CR, space); each byte is the
                 vocabulary's character for that byte.
  BPE            per word, repeatedly merge the adjacent pair of lowest merge rank, the leftmost on ties
                 (what the Rust BPE's priority queue does), until no pair has a merge.

Texts the pass does not take go to the Rust tokenizer (`FastBPE.handles` and the per-text refusal of
`encode`): non-ASCII text, text holding an added token's content (matched before anything else), and
text with a word longer than MAX_WORD bytes (the merge loop is quadratic in a word's length). The ids are
the Rust tokenizer's, token for token: tests/unit/watermark/test_bpe.py compares them on every ASCII
character, random strings, control characters and human prose.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from moderation.watermark.kernels import hash_table_size

METASPACE, BYTELEVEL = 0, 1
MAX_WORD = 256  # longer words send their text to the Rust tokenizer
_NO_MERGE = np.int64(1) << 62
_MIX = np.uint64(0x9E3779B97F4A7C15)

# Byte classes for GPT-2's pattern on ASCII.
_LETTER, _DIGIT, _SPACE, _OTHER = 0, 1, 2, 3


def _byte_classes() -> npt.NDArray[np.uint8]:
    classes = np.full(128, _OTHER, dtype=np.uint8)
    for b in range(128):
        c = chr(b)
        if c.isascii() and c.isalpha():
            classes[b] = _LETTER
        elif c.isdigit():
            classes[b] = _DIGIT
    for b in b"\t\n\x0b\x0c\r ":  # \s in the Rust regex; Python's isspace() would add \x1c-\x1f
        classes[b] = _SPACE
    return classes


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map, as the ByteLevel pre-tokenizer uses it."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


@numba.njit(cache=True)
def _slot(key: np.int64, mask: int) -> int:
    return int((np.uint64(key) * _MIX) >> np.uint64(40)) & mask


@numba.njit(cache=True)
def _build_merges(
    left: npt.NDArray[np.int64], right: npt.NDArray[np.int64], merged: npt.NDArray[np.int64], vocab_size: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Open-addressing table: key left * vocab_size + right -> (rank, merged id); key -1 where empty. The
    first listing of a pair wins, as in the Rust BPE."""
    n = left.shape[0]
    size = hash_table_size(n)
    keys = np.full(size, -1, dtype=np.int64)
    ranks = np.zeros(size, dtype=np.int64)
    ids = np.zeros(size, dtype=np.int64)
    mask = size - 1
    for r in range(n):
        key = left[r] * vocab_size + right[r]
        slot = _slot(key, mask)
        while keys[slot] != -1 and keys[slot] != key:
            slot = (slot + 1) & mask
        if keys[slot] == -1:
            keys[slot] = key
            ranks[slot] = r
            ids[slot] = merged[r]
    return keys, ranks, ids


Merges = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]


@numba.njit(cache=True)
def _rank(a: np.int64, b: np.int64, merges: Merges, vocab_size: int) -> tuple[np.int64, np.int64]:
    keys, ranks, ids = merges
    key = a * vocab_size + b
    mask = keys.shape[0] - 1
    slot = _slot(key, mask)
    while keys[slot] != -1:
        if keys[slot] == key:
            return ranks[slot], ids[slot]
        slot = (slot + 1) & mask
    return _NO_MERGE, np.int64(-1)


@numba.njit(cache=True)
def _merge_word(
    sym: npt.NDArray[np.int64],
    length: int,
    rank: npt.NDArray[np.int64],
    into: npt.NDArray[np.int64],
    merges: Merges,
    vocab_size: int,
) -> int:
    """BPE on sym[:length] in place; returns the new length. rank[j] / into[j]: the merge of pair (j, j+1)."""
    for j in range(length - 1):
        rank[j], into[j] = _rank(sym[j], sym[j + 1], merges, vocab_size)
    while length > 1:
        best = 0
        for j in range(1, length - 1):
            if rank[j] < rank[best]:
                best = j
        if rank[best] == _NO_MERGE:
            break
        sym[best] = into[best]
        for j in range(best + 1, length - 1):
            sym[j] = sym[j + 1]
            rank[j] = rank[j + 1]
            into[j] = into[j + 1]
        length -= 1
        if best > 0:
            rank[best - 1], into[best - 1] = _rank(sym[best - 1], sym[best], merges, vocab_size)
        if best < length - 1:
            rank[best], into[best] = _rank(sym[best], sym[best + 1], merges, vocab_size)
    return length


@numba.njit(cache=True)
def _pretoken_end(text: npt.NDArray[np.uint8], i: int, stop: int, classes: npt.NDArray[np.uint8]) -> int:
    """End of the GPT-2 pre-token that starts at text[i] (ASCII)."""
    c = text[i]
    if c == 39 and i + 1 < stop:  # an apostrophe: 's 't 're 've 'm 'll 'd
        n1 = text[i + 1]
        if n1 in (115, 116, 109, 100):  # s t m d
            return i + 2
        if i + 2 < stop:
            n2 = text[i + 2]
            if (n1 == 114 and n2 == 101) or (n1 == 118 and n2 == 101) or (n1 == 108 and n2 == 108):  # re ve ll
                return i + 3
    start = i
    kind = classes[c]
    if c == 32 and i + 1 < stop and classes[text[i + 1]] != _SPACE:
        start = i + 1  # " ?X+": the space joins the run that follows it
        kind = classes[text[start]]
    if kind != _SPACE:
        j = start + 1
        while j < stop and classes[text[j]] == kind:
            j += 1
        return j
    j = i + 1
    while j < stop and classes[text[j]] == _SPACE:
        j += 1
    if j < stop and j - i >= 2:
        return j - 1  # \s+(?!\S): the last blank before a word is left to it
    return j


@numba.njit(cache=True)
def _encode_text(
    text: npt.NDArray[np.uint8],
    lo: int,
    stop: int,
    out: npt.NDArray[np.int64],
    n: int,
    mode: int,
    prepend: bool,
    initial: npt.NDArray[np.int64],
    space_id: int,
    classes: npt.NDArray[np.uint8],
    merges: Merges,
    vocab_size: int,
    sym: npt.NDArray[np.int64],
    rank: npt.NDArray[np.int64],
    into: npt.NDArray[np.int64],
) -> int:
    """Token ids of text[lo:stop] written to out[n:]; returns the new end of out, or -1 to refuse the text."""
    i = lo
    first = True
    while i < stop:
        length = 0
        if mode == METASPACE:
            # A word: a run of spaces ("▁"), then a run of anything else.
            if first and prepend and text[i] != 32:
                sym[0] = space_id
                length = 1
            j = i
            while j < stop and text[j] == 32:
                j += 1
            while j < stop and text[j] != 32:
                j += 1
            if j - i + length > MAX_WORD:
                return -1
            for k in range(i, j):
                sym[length] = space_id if text[k] == 32 else initial[text[k]]
                length += 1
        else:
            j = _pretoken_end(text, i, stop, classes)
            if j - i > MAX_WORD:
                return -1
            for k in range(i, j):
                sym[length] = initial[text[k]]
                length += 1
        first = False
        i = j
        length = _merge_word(sym, length, rank, into, merges, vocab_size)
        for k in range(length):
            out[n] = sym[k]
            n += 1
    return n


@numba.njit(cache=True, parallel=True, nogil=True)
def _encode(
    text: npt.NDArray[np.uint8],
    text_bounds: npt.NDArray[np.int64],
    mode: int,
    prepend: bool,
    initial: npt.NDArray[np.int64],
    space_id: int,
    classes: npt.NDArray[np.uint8],
    merges: Merges,
    vocab_size: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(ids of every text, concatenated; tokens per text, -1 for a refused text), texts in parallel. A text
    of L bytes yields at most L + 1 tokens (the prepended "▁"), so its ids fit in its own slots."""
    texts = text_bounds.shape[0] - 1
    scratch = np.empty(text.shape[0] + texts, dtype=np.int64)
    lengths = np.zeros(texts, dtype=np.int64)
    for t in numba.prange(texts):
        sym = np.empty(MAX_WORD + 1, dtype=np.int64)
        rank = np.empty(MAX_WORD + 1, dtype=np.int64)
        into = np.empty(MAX_WORD + 1, dtype=np.int64)
        lo = text_bounds[t] + t
        end = _encode_text(
            text,
            text_bounds[t],
            text_bounds[t + 1],
            scratch,
            lo,
            mode,
            prepend,
            initial,
            space_id,
            classes,
            merges,
            vocab_size,
            sym,
            rank,
            into,
        )
        lengths[t] = end - lo if end >= 0 else -1
    kept = np.maximum(lengths, 0)
    starts = np.cumsum(kept) - kept
    out = np.empty(kept.sum(), dtype=np.int64)
    for t in numba.prange(texts):
        lo = text_bounds[t] + t
        out[starts[t] : starts[t] + kept[t]] = scratch[lo : lo + kept[t]]
    return out, lengths


class FastBPE:
    """The compiled encoder for one tokenizer.json; `from_tokenizer_json` says None when it does not apply."""

    def __init__(
        self,
        vocab: dict[str, int],
        merges: list[tuple[str, str]],
        *,
        mode: int,
        prepend: bool,
        byte_fallback: bool,
        added_tokens: list[str],
    ) -> None:
        self.mode = mode
        self._prepend = prepend
        size = max(vocab.values()) + 1
        self._vocab_size = size
        initial = np.full(128, -1, dtype=np.int64)
        if mode == METASPACE:
            for b in range(128):
                piece = chr(b)
                if piece in vocab:
                    initial[b] = vocab[piece]
                elif byte_fallback and f"<0x{b:02X}>" in vocab:
                    initial[b] = vocab[f"<0x{b:02X}>"]
            self._space_id = vocab["▁"]
        else:
            byte_chars = bytes_to_unicode()
            for b in range(128):
                initial[b] = vocab.get(byte_chars[b], -1)
            self._space_id = -1
        self._initial = initial
        left = np.array([vocab[a] for a, _ in merges], dtype=np.int64)
        right = np.array([vocab[b] for _, b in merges], dtype=np.int64)
        merged = np.array([vocab[a + b] for a, b in merges], dtype=np.int64)
        self._merges: Merges = _build_merges(left, right, merged, size)
        self._classes = _byte_classes()
        # Bytes with no initial symbol (no piece and no byte fallback) are left to the Rust tokenizer.
        missing = "".join(re.escape(chr(b)) for b in range(128) if initial[b] < 0)
        alternatives = [re.escape(t) for t in added_tokens if t]
        if missing:
            alternatives.append(f"[{missing}]")
        self._unhandled = re.compile("|".join(alternatives)) if alternatives else None

    @classmethod
    def from_tokenizer_json(cls, path: Path) -> FastBPE | None:
        """The encoder for a SentencePiece-style (Metaspace) or byte-level BPE tokenizer.json, or None for
        any other pipeline."""
        return cls.from_spec(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> FastBPE | None:
        """Like from_tokenizer_json, for the file's parsed content."""
        model = spec.get("model") or {}
        pre = spec.get("pre_tokenizer") or {}
        if (
            spec.get("normalizer") is not None
            or model.get("type") != "BPE"
            or model.get("dropout") is not None
            or model.get("continuing_subword_prefix")
            or model.get("end_of_word_suffix")
            or model.get("ignore_merges")
        ):
            return None
        vocab: dict[str, int] = model["vocab"]
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
        if any(len(m) != 2 or m[0] not in vocab or m[1] not in vocab or m[0] + m[1] not in vocab for m in merges):
            return None
        pairs: list[tuple[str, str]] = [(m[0], m[1]) for m in merges]
        added = [t["content"] for t in spec.get("added_tokens", [])]
        if (
            pre.get("type") == "Metaspace"
            and pre.get("replacement") == "▁"
            and pre.get("split") is False
            and pre.get("prepend_scheme") in ("first", "always")
            and "▁" in vocab
            # Words are merged independently: no merge may join "x" and "▁..." (x not "▁").
            and not any(a[-1] != "▁" and b[0] == "▁" for a, b in pairs)
        ):
            return cls(
                vocab,
                pairs,
                mode=METASPACE,
                prepend=True,
                byte_fallback=bool(model.get("byte_fallback")),
                added_tokens=added,
            )
        if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", True):
            return cls(vocab, pairs, mode=BYTELEVEL, prepend=False, byte_fallback=False, added_tokens=added)
        return None

    # -- a cache of the built tables: parsing a 3.5 MB tokenizer.json costs more than the rest of start-up --

    def save(self, path: Path) -> None:
        """Write the built tables (atomically: a concurrent reader sees the old file or the new one)."""
        keys, ranks, ids = self._merges
        pattern = self._unhandled.pattern if self._unhandled is not None else ""
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as out:
            np.savez(
                out,
                header=np.array([self.mode, int(self._prepend), self._vocab_size, self._space_id], dtype=np.int64),
                initial=self._initial,
                keys=keys,
                ranks=ranks,
                ids=ids,
                unhandled=np.array(pattern),
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> FastBPE:
        with np.load(path, allow_pickle=False) as saved:
            self = cls.__new__(cls)
            mode, prepend, vocab_size, space_id = (int(x) for x in saved["header"])
            self.mode, self._prepend, self._vocab_size, self._space_id = mode, bool(prepend), vocab_size, space_id
            self._initial = saved["initial"]
            self._merges = (saved["keys"], saved["ranks"], saved["ids"])
            pattern = str(saved["unhandled"])
        self._classes = _byte_classes()
        self._unhandled = re.compile(pattern) if pattern else None
        return self

    def handles(self, text: str) -> bool:
        """Whether `encode` may take this text (it can still refuse one with a very long word)."""
        return text.isascii() and (self._unhandled is None or self._unhandled.search(text) is None)

    def encode(self, texts: list[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(ids of every text, concatenated; tokens per text, -1 where the text is refused), for texts that
        `handles` accepts."""
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        text_bounds = np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths)])
        data = np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8)
        return _encode(
            data,
            text_bounds,
            self.mode,
            self._prepend,
            self._initial,
            self._space_id,
            self._classes,
            self._merges,
            self._vocab_size,
        )
