"""Undo character-level attacks before tokenizing, keeping a map back to the original characters.

The seed documents describe attacks that change tokenization without changing what a reader sees:
emoji or zero-width characters between words, and homoglyphs (Cyrillic 'а' for Latin 'a'). Each step
below can be switched off per scheme (`normalizers` in the config):

  nfkc         Unicode compatibility form, per character (fullwidth 'Ａ' -> 'A', ligature 'ﬁ' -> 'fi')
  invisible    drop format characters (zero-width space/joiners, BOM, soft hyphen, bidi controls, tags)
  emoji        drop emoji, their modifiers and variation selectors, and the extra space a dropped emoji
               leaves between two words
  confusables  map the common Cyrillic/Greek/other look-alikes of Latin letters to the Latin letter

NFKC is applied character by character so every output character keeps the index of the input
character it came from; evidence offsets therefore always point into the text the user submitted.
(Canonical composition across characters, e.g. 'e' + combining accent, is left to the tokenizer.)

No step changes an ASCII character, so runs of ASCII are copied as slices and only the non-ASCII
characters are looked at one by one; what each becomes is computed once per set of enabled steps
and cached, since real posts repeat the same few (curly quotes, accents, emoji).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Latin look-alikes (Unicode confusables, the letters attackers actually use).
CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "а": "a",
    "в": "b",
    "с": "c",
    "е": "e",
    "һ": "h",
    "і": "i",
    "ј": "j",
    "к": "k",
    "м": "m",
    "н": "h",
    "о": "o",
    "р": "p",
    "г": "r",
    "ѕ": "s",
    "т": "t",
    "у": "y",
    "х": "x",
    "ԁ": "d",
    "ԛ": "q",
    "ԝ": "w",
    "ӏ": "l",
    "ԍ": "g",
    "ү": "y",
    "ь": "b",
    "А": "A",
    "В": "B",
    "С": "C",
    "Е": "E",
    "Н": "H",
    "І": "I",
    "Ј": "J",
    "К": "K",
    "М": "M",
    "О": "O",
    "Р": "P",
    "Ѕ": "S",
    "Т": "T",
    "Х": "X",
    "У": "Y",
    "Ԁ": "D",
    "Ԍ": "G",
    "Ԛ": "Q",
    "Ԝ": "W",
    "Ү": "Y",
    # Greek
    "α": "a",
    "ο": "o",
    "ρ": "p",
    "ν": "v",
    "ι": "i",
    "κ": "k",
    "τ": "t",
    "υ": "u",
    "χ": "x",
    "γ": "y",
    "ε": "e",
    "η": "n",
    "ϲ": "c",
    "ϳ": "j",
    "Α": "A",
    "Β": "B",
    "Ε": "E",
    "Ζ": "Z",
    "Η": "H",
    "Ι": "I",
    "Κ": "K",
    "Μ": "M",
    "Ν": "N",
    "Ο": "O",
    "Ρ": "P",
    "Τ": "T",
    "Υ": "Y",
    "Χ": "X",
    "Ϲ": "C",
    # Armenian, Latin extensions and symbols that pass for letters
    "օ": "o",
    "ս": "u",
    "ց": "g",
    "ɑ": "a",
    "ɡ": "g",
    "ı": "i",
    "ȷ": "j",
    "ℓ": "l",
    "ǀ": "l",
    "‐": "-",
    "‑": "-",
    "‒": "-",
    "–": "-",
    "—": "-",
    "−": "-",
    "‘": "'",
    "’": "'",
    "‚": "'",
    "‛": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "‟": '"',
}

# Emoji blocks and the code points that only modify or join emoji.
_EMOJI_RANGES = (
    (0x1F000, 0x1FAFF),  # mahjong ... symbols & pictographs extended-A (incl. skin-tone modifiers)
    (0x2600, 0x27BF),  # miscellaneous symbols, dingbats
    (0x2B00, 0x2BFF),  # arrows and stars used as emoji
    (0x2300, 0x23FF),  # technical (watch, hourglass, ...)
    (0x1F1E6, 0x1F1FF),  # regional indicators (flags)
    (0xFE00, 0xFE0F),  # variation selectors
    (0x20E3, 0x20E3),  # combining enclosing keycap
    (0xE0020, 0xE007F),  # tag characters (flag sequences)
)


def is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _EMOJI_RANGES)


def is_invisible(ch: str) -> bool:
    # Format characters: zero-width space/joiners, word joiner, BOM, soft hyphen, bidi controls, tags.
    return unicodedata.category(ch) == "Cf" or ch in "\u034f\u115f\u1160\u3164\uffa0"


@dataclass(frozen=True)
class NormalizedText:
    text: str
    # source[i] = index in the original text of the character that produced text[i]
    source: npt.NDArray[np.int64]
    changed: bool

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Map a [start, end) span of the normalized text back to the original text."""
        if end <= start:
            anchor = (
                int(self.source[start])
                if start < len(self.source)
                else (int(self.source[-1]) + 1 if len(self.source) else 0)
            )
            return anchor, anchor
        return int(self.source[start]), int(self.source[end - 1]) + 1


# Alternating runs of ASCII and of non-ASCII characters (together they cover the whole text).
_RUNS = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]+")

_STEPS = frozenset({"nfkc", "invisible", "emoji", "confusables"})

# Distinct characters remembered per set of steps; past this the cache starts over, so a flood of
# distinct code points cannot grow memory without bound.
_CACHE_LIMIT = 1 << 16


def _decide(ch: str, enabled: frozenset[str]) -> str | None:
    """What one character becomes: None for an emoji (dropped), else its replacement ("" = dropped)."""
    if "invisible" in enabled and is_invisible(ch):
        return ""  # dropped, but unlike an emoji it leaves the emoji-space rule alone
    if "emoji" in enabled and is_emoji(ch):
        return None
    pieces = unicodedata.normalize("NFKC", ch) if "nfkc" in enabled else ch
    if "confusables" in enabled:
        # Every CONFUSABLES value is one character, so each piece still yields one output character.
        pieces = "".join(CONFUSABLES.get(piece, piece) for piece in pieces)
    return pieces


class _Decisions(dict[str, str | None]):
    """Per-character decisions for one set of steps; a hit is a plain dict lookup."""

    def __init__(self, enabled: frozenset[str]) -> None:
        super().__init__()
        self.enabled = enabled

    def __missing__(self, ch: str) -> str | None:
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        decision = self[ch] = _decide(ch, self.enabled)
        return decision


_DECISIONS: dict[frozenset[str], _Decisions] = {}


def normalize(text: str, steps: Iterable[str]) -> NormalizedText:
    """Apply the enabled steps. Pure-ASCII text is returned as is (nothing any step would change)."""
    enabled = frozenset(steps) & _STEPS  # unknown names change nothing
    if text.isascii() or not enabled:
        return NormalizedText(text, np.arange(len(text), dtype=np.int64), changed=False)
    decisions = _DECISIONS.get(enabled)
    if decisions is None:
        decisions = _DECISIONS.setdefault(enabled, _Decisions(enabled))
    parts: list[str] = []
    # Input characters that do not become exactly one output character: index -> how many they become.
    uneven: dict[int, int] = {}
    # Set by a dropped emoji: whitespace is then skipped while the output is empty or ends in
    # whitespace ("word 😀 word" -> "word word", not "word  word"), until a character is emitted.
    dropped_emoji = False
    pos = 0  # index in `text` where `chunk` starts
    for chunk in _RUNS.findall(text):
        length = len(chunk)
        if chunk[0] < "\x80":
            # ASCII: no step changes it, only the emoji-space rule can trim its head.
            if dropped_emoji and (not parts or parts[-1][-1].isspace()):
                stripped = chunk.lstrip()
                for index in range(pos, pos + length - len(stripped)):
                    uneven[index] = 0  # usually the one space the emoji leaves
                chunk = stripped
            if chunk:
                dropped_emoji = False
                parts.append(chunk)
        else:
            for index, ch in enumerate(chunk, pos):
                replacement = decisions[ch]
                if replacement is None:
                    dropped_emoji = True
                    uneven[index] = 0
                    continue
                if dropped_emoji and (not parts or parts[-1][-1].isspace()):
                    replacement = replacement.lstrip()
                if replacement:
                    dropped_emoji = False
                    parts.append(replacement)
                if len(replacement) != 1:
                    uneven[index] = len(replacement)
        pos += length
    normalized = "".join(parts)
    source = np.arange(len(text), dtype=np.int64)
    if uneven:
        counts = np.ones(len(text), dtype=np.intp)
        counts[np.fromiter(uneven.keys(), np.intp, len(uneven))] = np.fromiter(uneven.values(), np.intp, len(uneven))
        source = np.repeat(source, counts)
    return NormalizedText(normalized, source, changed=normalized != text)
