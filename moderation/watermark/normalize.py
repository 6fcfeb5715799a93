"""Undo character-level attacks before tokenizing, keeping a map back to the original characters.

The seed documents describe attacks that change tokenization without changing what a reader sees, or
while leaving the text readable: emoji or symbols instead of spaces, invisible characters inside words,
decorative combining marks, fullwidth or enclosed letters, homoglyphs (Cyrillic 'а' for Latin 'a') and
text stored backwards inside a right-to-left override. Each step can be switched off per scheme
(`normalizers` in the config):

  bidi         text under a RIGHT-TO-LEFT OVERRIDE is put back in the order a reader sees (reversed,
               brackets mirrored), not just stripped of the control characters
  nfkc         Unicode compatibility form, per character (fullwidth 'Ａ' -> 'A', 'ⓐ' -> 'a', 'ﬁ' -> 'fi');
               enclosed letters without a decomposition ('🅰') are mapped by their Unicode name
  invisible    drop default-ignorable and format characters: zero-width characters, joiners, soft hyphen,
               word joiner, combining grapheme joiner, BOM, Mongolian vowel separator, every variation
               selector, tag characters, bidi controls
  separators   a symbol, emoji, exotic space, line separator or unassigned code point (any non-ASCII
               character of categories S*, Z*, Cc, Co, Cn, and blank letters such as the Hangul fillers)
               stands between words: it becomes one space, or vanishes next to existing whitespace
               ("word😀word" -> "word word", "word 😀 word" -> "word word")
  marks        drop decorative combining marks: enclosing marks, overlays (strikethrough, slashes) and
               generic diacritics that do not compose with the letter before them (stacked "Zalgo"
               marks); an accent that forms a real letter (e + ́ -> é) is kept, composed
  confusables  UTS #39, from ICU's data (the reference implementation): a word that mixes scripts, or a
               whole word in another script that is entirely made of look-alikes of the expected script
               (unless the post is mostly written in that script), has its foreign letters mapped to the
               expected-script letter with the same confusable skeleton; a non-ASCII letter of the
               expected script whose skeleton is an ASCII letter ('ɑ' -> 'a') is mapped too. Genuine
               Cyrillic, Greek or CJK text is left as it is.

Character data (categories, scripts, default-ignorables, combining classes, confusable skeletons,
normalization) all come from one source, ICU (PyICU), so the defence never depends on a table written by
hand. The "expected script" is the one the scheme's tokenizer was trained on (`dominant_script`).

Every output character keeps the index of the input character it came from; evidence offsets therefore
always point into the text the user submitted.

Speed: no step changes an ASCII character, so runs of ASCII are copied as slices and only non-ASCII
characters are looked at one by one; what each becomes is computed once per set of enabled steps and
cached. Only the steps that need context look further: separators (what is next to them), marks (the
letter before), confusables (the word, and for whole foreign words the post), bidi (only in texts that
contain an override).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import icu
import numpy as np
import numpy.typing as npt

from moderation.charclasses import is_invisible

STEPS = ("bidi", "nfkc", "invisible", "separators", "marks", "confusables")
# Names kept for configs written before the separators step replaced the emoji step.
ALIASES = {"emoji": "separators"}

_NFKC = icu.Normalizer2.getNFKCInstance()
_NFC = icu.Normalizer2.getNFCInstance()
_SPOOF = icu.SpoofChecker()
_CATEGORY = [
    icu.Char.getPropertyValueName(icu.UProperty.GENERAL_CATEGORY, value, icu.UPropertyNameChoice.SHORT_PROPERTY_NAME)
    for value in range(30)
]
_GENERIC_MARK_BLOCKS = frozenset(
    {
        icu.UBlockCode.COMBINING_DIACRITICAL_MARKS,
        icu.UBlockCode.COMBINING_DIACRITICAL_MARKS_EXTENDED,
        icu.UBlockCode.COMBINING_DIACRITICAL_MARKS_SUPPLEMENT,
        icu.UBlockCode.COMBINING_HALF_MARKS,
        icu.UBlockCode.COMBINING_MARKS_FOR_SYMBOLS,
    }
)
# Categories whose non-ASCII members stand between words (symbols are decided after NFKC).
_SEPARATOR_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Co", "Cn", "Cs"})
_LATIN_LETTER_NAME = re.compile(r"\bLATIN (CAPITAL|SMALL) LETTER ([A-Z])$")

LATIN = int(icu.UScriptCode.LATIN)
# What a character becomes (the kind of each per-character decision).
TEXT, DROP, SEPARATOR, MARK, SCRIPT_MARK, DECORATION = 0, 1, 2, 3, 4, 5
# Generic combining marks one letter may carry and keep (Vietnamese writes two: ệ = e + ̣ + ̂).
MAX_ACCENTS = 2


def category(ch: str) -> str:
    """The Unicode general category (ICU's data, which is newer than Python's unicodedata)."""
    return _CATEGORY[icu.Char.charType(ch)]


def _decide(ch: str, enabled: frozenset[str], script: int = LATIN) -> tuple[int, str]:
    """What one character becomes, whatever its neighbours: (kind, text). ASCII is always itself.
    `script` (the expected one) decides whether a symbol that folds to letters is text or a separator."""
    if ch < "\x80":
        return TEXT, ch
    cp = ord(ch)
    cat = category(ch)
    if "invisible" in enabled and (cat == "Cf" or is_invisible(ch)):
        # Blank letters (the Hangul fillers) are drawn as a space: between words they stand for one.
        return (SEPARATOR, "") if cat[0] == "L" and "separators" in enabled else (DROP, "")
    if "marks" in enabled and cat[0] == "M":
        if cat == "Me" or icu.Char.getCombiningClass(cp) == 1:  # enclosing marks, overlays
            return DECORATION, ""
        if icu.Char.getIntPropertyValue(cp, icu.UProperty.BLOCK) in _GENERIC_MARK_BLOCKS:
            return MARK, ch  # kept only where it composes with the letter before it
        return SCRIPT_MARK, ch  # a script's own mark: kept on a letter of its script
    if "separators" in enabled and (
        cat in _SEPARATOR_CATEGORIES
        or (cat[0] == "P" and icu.Char.hasBinaryProperty(cp, icu.UProperty.EXTENDED_PICTOGRAPHIC))  # '‼', '〰'
    ):
        return SEPARATOR, ""
    folded = _NFKC.normalize(ch) if "nfkc" in enabled else ch
    if cat[0] == "S":
        named = _LATIN_LETTER_NAME.search(icu.Char.charName(ch)) if "nfkc" in enabled else None
        if named:  # 'ⓐ', and '🅰' NEGATIVE SQUARED LATIN CAPITAL LETTER A, which has no decomposition
            return TEXT, named[2] if named[1] == "CAPITAL" else named[2].lower()
        if (
            any(c.isalnum() for c in folded)
            and not icu.Char.hasBinaryProperty(cp, icu.UProperty.EXTENDED_PICTOGRAPHIC)
            and all(script in mark_scripts(c) for c in folded if c.isalpha() and mark_scripts(c))
        ):
            return TEXT, folded  # '㎏' -> 'kg'; not '™' (an emoji) nor '🈯' (a CJK sign between Latin words)
        if "separators" in enabled:
            return SEPARATOR, ""
    return TEXT, folded


class _Decisions(dict[str, tuple[int, str]]):
    """Per-character decisions for one set of steps and expected script; a hit is a plain dict lookup.
    `unchanged` holds the characters decided to stay themselves, so a run made only of them (a word of
    Russian, Greek, Chinese) is copied as one slice."""

    def __init__(self, enabled: frozenset[str], script: int) -> None:
        super().__init__()
        self.enabled = enabled
        self.script = script
        self.unchanged: set[str] = set()

    def __missing__(self, ch: str) -> tuple[int, str]:
        if len(self) >= _CACHE_LIMIT:
            self.clear()
            self.unchanged.clear()
        decision = self[ch] = _decide(ch, self.enabled, self.script)
        if decision == (TEXT, ch):
            self.unchanged.add(ch)
        return decision


# Distinct characters remembered per set of steps; past this the cache starts over, so a flood of
# distinct code points cannot grow memory without bound.
_CACHE_LIMIT = 1 << 16
_DECISIONS: dict[tuple[frozenset[str], int], _Decisions] = {}
_COMPOSED: dict[tuple[str, str], str | None] = {}


_MARK_SCRIPTS: dict[str, frozenset[int]] = {}


def mark_scripts(ch: str) -> frozenset[int]:
    """Script_Extensions of a character, Common and Inherited left out (empty: it takes no side)."""
    found = _MARK_SCRIPTS.get(ch)
    if found is None:
        if len(_MARK_SCRIPTS) >= _CACHE_LIMIT:
            _MARK_SCRIPTS.clear()
        found = _MARK_SCRIPTS[ch] = frozenset(int(s) for s in icu.Script.getScriptExtensions(ch)) - {0, 1}
    return found


def compose(base: str, mark: str) -> str | None:
    """The single character `base` + `mark` compose to (canonical composition), or None."""
    key = (base, mark)
    if key not in _COMPOSED:
        if len(_COMPOSED) >= _CACHE_LIMIT:
            _COMPOSED.clear()
        composed = _NFC.normalize(base + mark)
        _COMPOSED[key] = composed if len(composed) == 1 else None
    return _COMPOSED[key]


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


def enabled_steps(steps: Iterable[str]) -> frozenset[str]:
    """The known steps among `steps` (aliases resolved); unknown names change nothing."""
    key = steps if isinstance(steps, tuple) else tuple(steps)
    found = _ENABLED.get(key)
    if found is None:
        found = _ENABLED[key] = frozenset(ALIASES.get(s, s) for s in key) & frozenset(STEPS)
    return found


_ENABLED: dict[tuple[str, ...], frozenset[str]] = {}


# -- the per-character pass -----------------------------------------------------------------------------


class Emitter:
    """Output characters with their source counts, and the rules that depend on neighbours: a separator
    becomes one space between two non-blank characters and nothing next to whitespace; a mark composes
    with the letter just before it or is dropped.

    Both the fast path (ASCII runs as slices) and the per-character reference in the tests feed it."""

    __slots__ = ("attach", "base", "dropped", "parts", "pending", "stack", "uneven")

    def __init__(self) -> None:
        self.parts: list[str] = []
        # Input characters that do not become exactly one output character: index -> how many they become.
        self.uneven: dict[int, int] = {}
        self.dropped = False  # a separator was dropped since the last character emitted
        self.pending = -1  # index of the first separator since then (its space may be due)
        self.attach = False  # the last output character came from the input character just before
        self.stack: list | None = None  # the marks on the last output character (see `mark`)
        self.base = ""  # the last output character that is not a mark

    def text(self, piece: str, index: int, length: int = 1) -> None:
        """Emit `piece` made of `length` input characters from `index` (an ASCII run, or one character)."""
        parts = self.parts
        if self.dropped and (not parts or parts[-1][-1].isspace()):
            stripped = piece.lstrip()
            if length == 1:
                if not stripped:
                    self.uneven[index] = 0
                    return
            else:
                for i in range(index, index + len(piece) - len(stripped)):
                    self.uneven[i] = 0
            piece = stripped
        if not piece:
            return
        if self.pending >= 0 and parts and not parts[-1][-1].isspace() and not piece[0].isspace():
            parts.append(" ")
            self.uneven[self.pending] = 1  # the separator stands for the space it replaced
        parts.append(piece)
        if length == 1 and len(piece) != 1:
            self.uneven[index] = len(piece)
        self.dropped = False
        self.pending = -1
        self.attach = True
        self.stack = None
        self.base = piece[-1]

    def separator(self, index: int) -> None:
        self.uneven[index] = 0
        self.dropped = True
        self.attach = False
        self.stack = None
        if self.pending < 0:
            self.pending = index

    def drop(self, index: int) -> None:
        self.uneven[index] = 0  # invisible: the neighbours stay neighbours

    def mark(self, mark: str, index: int) -> None:
        """A generic diacritic: composed into the letter before it while the letter's marks all compose and
        number at most MAX_ACCENTS; otherwise the whole stack is decoration and the bare letter stays."""
        self.uneven[index] = 0
        if not self.attach:
            return  # after a space, a separator or another dropped character: decoration
        last = self.parts[-1]
        if self.stack is None:
            self.stack = [last[-1], 0, False]  # the bare letter, marks so far, stack judged decorative
        bare, count, decorative = self.stack
        self.stack[1] = count = count + 1
        if decorative:
            return
        composed = compose(last[-1], mark) if count <= MAX_ACCENTS else None
        if composed is None:
            self.stack[2] = True
            composed = bare
        self.parts[-1] = last[:-1] + composed

    def script_mark(self, mark: str, index: int) -> None:
        """A mark of a script's own (Cyrillic, Devanagari, Hebrew...): kept on a letter it belongs with;
        on a letter of another script it is decoration, and so is the rest of that letter's stack."""
        # Latin writes its accents with the generic marks only (handled by `mark`); Unicode lets a few
        # Cyrillic marks (U+0485, U+0486) onto Latin for scholarly transliteration, which is decoration here.
        if self.attach and self.stack is None and (mark_scripts(self.base) & mark_scripts(mark)) - {LATIN}:
            base = self.base
            self.text(mark, index)
            self.base = base  # the next mark is judged by the letter too, not by this mark
        else:
            self.decoration(index)

    def decoration(self, index: int) -> None:
        """An overlay, an enclosing mark or a stray mark: dropped, and the letter under it loses its accents."""
        self.uneven[index] = 0
        if self.attach:
            last = self.parts[-1]
            if self.stack is None:
                self.stack = [last[-1], 0, True]
            else:
                self.stack[2] = True
                self.parts[-1] = last[:-1] + self.stack[0]

    def one(self, decision: tuple[int, str], index: int) -> None:
        kind, out = decision
        if kind == TEXT:
            self.text(out, index)
        elif kind == SEPARATOR:
            self.separator(index)
        elif kind == MARK:
            self.mark(out, index)
        elif kind == SCRIPT_MARK:
            self.script_mark(out, index)
        elif kind == DECORATION:
            self.decoration(index)
        else:
            self.drop(index)


# Alternating runs of ASCII and of non-ASCII characters (together they cover the whole text).
_RUNS = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]+")


def _per_character(text: str, enabled: frozenset[str], script: int) -> Emitter:
    decisions = _DECISIONS.get((enabled, script))
    if decisions is None:
        decisions = _DECISIONS.setdefault((enabled, script), _Decisions(enabled, script))
    out = Emitter()
    pos = 0
    for chunk in _RUNS.findall(text):
        if chunk[0] < "\x80" or decisions.unchanged.issuperset(chunk):
            out.text(chunk, pos, len(chunk))  # no step changes ASCII (nor these characters): one slice
        else:
            for index, ch in enumerate(chunk, pos):
                out.one(decisions[ch], index)
        pos += len(chunk)
    return out


def _source(length: int, uneven: dict[int, int]) -> npt.NDArray[np.int64]:
    source = np.arange(length, dtype=np.int64)
    if uneven:
        counts = np.ones(length, dtype=np.intp)
        counts[np.fromiter(uneven.keys(), np.intp, len(uneven))] = np.fromiter(uneven.values(), np.intp, len(uneven))
        source = np.repeat(source, counts)
    return source


def normalize(text: str, steps: Iterable[str], script: str = "Latin") -> NormalizedText:
    """Apply the enabled steps; `script` is the one the tokenizer expects (for confusables).
    Pure-ASCII text is returned as is (nothing any step would change)."""
    if text.isascii():
        return NormalizedText(text, np.arange(len(text), dtype=np.int64), changed=False)
    enabled = enabled_steps(steps)
    if not enabled:
        return NormalizedText(text, np.arange(len(text), dtype=np.int64), changed=False)
    order = None
    working = text
    if "bidi" in enabled and ("\u202e" in text or "\u202d" in text):
        working, order = undo_overrides(text)
    out = _per_character(working, enabled, script_code(script))
    return finish(text, working, order, out, enabled, script)


def finish(
    text: str,
    working: str,
    order: npt.NDArray[np.int64] | None,
    out: Emitter,
    enabled: frozenset[str],
    script: str,
) -> NormalizedText:
    """The word-level confusables pass and the map back to `text` (shared with the test's reference)."""
    normalized = "".join(out.parts)
    source = _source(len(working), out.uneven)
    if "confusables" in enabled and not normalized.isascii():
        normalized = map_confusables(normalized, script)  # one character for one: `source` still holds
    if order is not None:
        source = order[source]
    return NormalizedText(normalized, source, changed=normalized != text)


# -- bidi overrides ---------------------------------------------------------------------------------------

_LRE, _RLE, _PDF, _LRO, _RLO = "\u202a", "\u202b", "\u202c", "\u202d", "\u202e"
_PARAGRAPH_ENDS = frozenset("\n\r\x1c\x1d\x1e\x85\u2029")


def undo_overrides(text: str) -> tuple[str, npt.NDArray[np.int64]]:
    """The text in the order a reader sees it: the content of each RIGHT-TO-LEFT OVERRIDE (to its POP
    DIRECTIONAL FORMATTING or the end of the paragraph) is reversed by grapheme (a letter with its marks
    stays one unit) and mirrored characters are swapped ('(' <-> ')'). Nested overrides and embeddings
    are handled as the bidi algorithm nests them. Returns the text and, per character, its index in
    `text` (the control characters stay, for the invisible step to drop)."""
    Node = tuple[str, list]  # (opening control, children: indices or nested nodes)
    root: Node = ("", [])
    stack: list[Node] = [root]
    for i, ch in enumerate(text):
        if ch in (_LRE, _RLE, _LRO, _RLO):
            node: Node = (ch, [i])
            stack[-1][1].append(node)
            stack.append(node)
        elif ch == _PDF and len(stack) > 1:
            stack[-1][1].append(i)
            stack.pop()
        elif ch in _PARAGRAPH_ENDS:
            del stack[1:]
            root[1].append(i)
        else:
            stack[-1][1].append(i)

    def flatten(node: Node, reverse: bool) -> list[tuple[int, str]]:
        kind, children = node
        if kind in (_RLO, _LRO):
            reverse = kind == _RLO  # an override sets the direction of everything inside it
        units: list[list[tuple[int, str]]] = []
        for child in children:
            if isinstance(child, tuple):
                units.append(flatten(child, reverse))
                continue
            ch = text[child]
            if reverse and units and (category(ch)[0] == "M" or ch in "\u200d\ufe0e\ufe0f"):
                units[-1].append((child, ch))  # a mark or joiner stays with its base
            else:
                units.append([(child, icu.Char.charMirror(ch) if reverse else ch)])
        if kind == _RLO:  # the override's own controls stay where they are
            closing = len(units) > 1 and len(units[-1]) == 1 and units[-1][0][1] == _PDF
            units[1 : len(units) - closing] = units[1 : len(units) - closing][::-1]
        return [pair for unit in units for pair in unit]

    pairs = flatten(root, False)
    return "".join(ch for _, ch in pairs), np.fromiter((i for i, _ in pairs), np.int64, len(pairs))


# -- confusables (UTS #39) ------------------------------------------------------------------------------

# UTS #39 augmented script sets: Han writes Japanese and Korean along with kana and hangul.
_JPAN, _KORE, _HANB = -1, -2, -3
_AUGMENT = {
    icu.UScriptCode.HAN: (_JPAN, _KORE, _HANB),
    icu.UScriptCode.HIRAGANA: (_JPAN,),
    icu.UScriptCode.KATAKANA: (_JPAN,),
    icu.UScriptCode.HANGUL: (_KORE,),
    icu.UScriptCode.BOPOMOFO: (_HANB,),
}
_NEUTRAL = frozenset({icu.UScriptCode.COMMON, icu.UScriptCode.INHERITED})
_WORD = re.compile(r"[^\W_]+")


@cache
def script_code(name: str) -> int:
    """ICU's code for a script name ('Latin', 'Latn', 'Cyrillic', ...); ValueError for an unknown one."""
    codes = icu.Script.getCode(name)
    if len(codes) != 1:
        raise ValueError(f"unknown Unicode script {name!r} (use a name such as 'Latin' or 'Cyrillic')")
    return int(codes[0])


def dominant_script(vocabulary: Iterable[str]) -> str:
    """The script most letters of a tokenizer's vocabulary are written in (its expected script).
    Byte-level vocabularies spell every byte as a Latin-1 letter and so count as Latin."""
    counts: Counter[int] = Counter()
    for ch, n in Counter("".join(vocabulary)).items():
        if category(ch)[0] == "L":
            counts[icu.Script.getScript(ch).getScriptCode()] += n
    return icu.Script(counts.most_common(1)[0][0]).getName() if counts else "Latin"


def _skeleton(ch: str) -> str:
    return _NFC.normalize(_SPOOF.getSkeleton(0, ch))


@cache
def _prototypes(script: int) -> dict[str, list[str]]:
    """Letters of `script` by confusable skeleton."""
    found: dict[str, list[str]] = {}
    for ch in icu.UnicodeSet(f"[[:Script={icu.Script(script).getShortName()}:]&[:L:]]"):
        found.setdefault(_skeleton(ch), []).append(ch)
    return found


class _Letter:
    """What the confusables pass needs to know about one letter, for one expected script."""

    __slots__ = ("ascii_target", "expected", "primary", "scripts", "target")

    def __init__(self, ch: str, script: int) -> None:
        extensions = {int(s) for s in icu.Script.getScriptExtensions(ch)} - _NEUTRAL
        for s in list(extensions):
            extensions.update(_AUGMENT.get(s, ()))
        self.scripts = frozenset(extensions)  # empty: Common or Inherited, takes no side
        self.primary = icu.Script.getScript(ch).getScriptCode()
        self.expected = script in self.scripts
        # The expected-script letter with the same skeleton: ASCII first, then the prototype, then same case.
        candidates = _prototypes(script).get(_skeleton(ch), [])
        ranked = sorted(
            candidates,
            key=lambda c: (not c.isascii(), _skeleton(c) != c, c.isupper() != ch.isupper(), ord(c)),
        )
        self.target = ranked[0] if ranked and ranked[0] != ch else None
        if script == LATIN and self.target is not None and not self.target.isascii():
            self.target = None  # 'м' -> 'ʍ' helps no tokenizer: only plain letters are worth mapping to
        self.ascii_target = self.target is not None and self.target.isascii()


_LETTERS: dict[int, dict[str, _Letter | None]] = {}


def _letter(ch: str, script: int) -> _Letter | None:
    table = _LETTERS.setdefault(script, {})
    if ch not in table:
        if len(table) >= _CACHE_LIMIT:
            table.clear()
        table[ch] = _Letter(ch, script) if category(ch)[0] == "L" else None
    return table[ch]


# What a word is, for the confusables pass.
_NOTHING, _CHANGE, _LOOK_ALIKE, _GENUINE = 0, 1, 2, 3


class _Word(NamedTuple):
    kind: int  # _NOTHING, _CHANGE (map now), _LOOK_ALIKE (a whole foreign word: map unless the post is in
    # that script), _GENUINE (an ordinary word of another script)
    changes: tuple[tuple[int, str], ...]  # (offset in the word, expected-script letter)
    primary: int  # the foreign script (for _LOOK_ALIKE and _GENUINE)
    letters: int


_WORDS: dict[tuple[str, int], _Word] = {}
_NONE = _Word(_NOTHING, (), 0, 0)


def _classify(word: str, script: int) -> _Word:
    letters = [(i, info) for i, ch in enumerate(word) if (info := _letter(ch, script))]
    scripts = [info.scripts for _, info in letters if info.scripts]
    if not scripts:
        return _NONE
    resolved = frozenset.intersection(*scripts)
    # Non-ASCII look-alikes of ASCII letters within the expected script ('ɑ'), in any word.
    own = [
        (i, info.target)
        for i, info in letters
        if info.expected and info.target is not None and info.ascii_target and not word[i].isascii()
    ]
    if script in resolved:  # a word of the expected script
        return _Word(_CHANGE, tuple(own), 0, len(letters)) if own else _NONE
    foreign = [(i, info) for i, info in letters if info.scripts and not info.expected]
    changes = [(i, info.target) for i, info in foreign if info.target is not None]
    primary = foreign[0][1].primary
    if not resolved:  # mixed scripts: the UTS #39 signal of a spoof
        return _Word(_CHANGE, tuple(changes + own), primary, len(letters))
    if len(changes) == len(foreign):  # every letter a look-alike: decided once the post is known
        return _Word(_LOOK_ALIKE, tuple(changes), primary, len(letters))
    return _Word(_GENUINE, (), primary, len(letters))


# A word (as `_WORD` finds them) with a non-ASCII letter or digit: for Latin, only those need a look.
# The possessive ASCII prefix keeps the engine from backtracking through the ASCII words it skips.
_NON_ASCII_WORD = re.compile(r"[0-9A-Za-z]*+[^\W\x00-\x7f_][^\W_]*")
_NON_ASCII_ALNUM = re.compile(r"[^\W\x00-\x7f_]")


def map_confusables(text: str, script_name: str = "Latin") -> str:
    """Map look-alike letters to the expected script, word by word (see the module docstring)."""
    script = script_code(script_name)
    if script == LATIN and not _NON_ASCII_ALNUM.search(text):
        return text  # quotes, dashes, emoji: no letter to look at
    words = ((m.start(), m[0]) for m in (_NON_ASCII_WORD if script == LATIN else _WORD).finditer(text))
    genuine: Counter[int] = Counter()  # letters of ordinary words of each other script
    look_alike: Counter[int] = Counter()  # letters of whole words of look-alikes, by script
    changes: list[tuple[int, str]] = []
    deferred: list[tuple[int, int, _Word]] = []
    for start, word in words:
        key = (word, script)
        info = _WORDS.get(key)
        if info is None:
            if len(_WORDS) >= _CACHE_LIMIT:
                _WORDS.clear()
            info = _WORDS[key] = _classify(word, script)
        if info.kind == _CHANGE:
            changes += [(start + i, target) for i, target in info.changes]
        elif info.kind == _LOOK_ALIKE:
            deferred.append((start, info.primary, info))
            look_alike[info.primary] += info.letters
        elif info.kind == _GENUINE:
            genuine[info.primary] += info.letters
    for start, primary, info in deferred:
        # Written in that script (its ordinary words outweigh the all-look-alike ones, as in any real
        # Russian or Greek text): left alone. Otherwise they are spoofs of the expected script.
        if genuine[primary] == 0 or genuine[primary] < look_alike[primary]:
            changes += [(start + i, target) for i, target in info.changes]
    if not changes:
        return text
    chars = list(text)
    for i, target in changes:
        chars[i] = target
    return "".join(chars)
