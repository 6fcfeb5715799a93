from __future__ import annotations

import itertools
import random
import unicodedata
from collections.abc import Iterable

import numpy as np
import pytest

import moderation.watermark.normalize as normalize_module
from moderation.config import ALL_NORMALIZERS
from moderation.watermark.normalize import CONFUSABLES, NormalizedText, is_emoji, is_invisible, normalize


def test_ascii_passes_through_unchanged() -> None:
    out = normalize("Plain ASCII text, nothing to undo.", ALL_NORMALIZERS)
    assert not out.changed
    assert out.text == "Plain ASCII text, nothing to undo."


def test_zero_width_and_bidi_controls_are_removed() -> None:
    attacked = "wa\u200btermark\u200d text\ufeff with\u2060 joiners\u202e"
    assert normalize(attacked, ALL_NORMALIZERS).text == "watermark text with joiners"


def test_emoji_between_words_leaves_single_spaces() -> None:
    attacked = "😀 the cat 🐈 sat 👍🏽 on the mat ❤️"
    assert normalize(attacked, ALL_NORMALIZERS).text == "the cat sat on the mat "


def test_homoglyphs_map_to_latin() -> None:
    attacked = "Тhе quiсk brоwn fох"  # Cyrillic Т, е, с, о, х
    assert normalize(attacked, ALL_NORMALIZERS).text == "The quick brown fox"


def test_nfkc_folds_compatibility_forms() -> None:
    assert normalize("ｆｕｌｌｗｉｄｔｈ ﬁne", ALL_NORMALIZERS).text == "fullwidth fine"


def test_offsets_map_back_to_the_original_text() -> None:
    original = "😀 Неllo ﬁne"
    out = normalize(original, ALL_NORMALIZERS)
    assert out.text == "Hello fine"
    start = out.text.index("fine")
    a, b = out.original_span(start, start + 4)
    assert original[a:b] == "ﬁne"
    a, b = out.original_span(0, 5)
    assert original[a:b] == "Неllo"


def test_steps_can_be_switched_off() -> None:
    out = normalize("a\u200bb 😀", ("emoji",))
    assert out.text == "a\u200bb "


# -- differential test: the fast path against the plain per-character loop it replaced ------------


def reference_normalize(text: str, steps: Iterable[str]) -> NormalizedText:
    """The specification: every character through every enabled step, one at a time."""
    enabled = set(steps)
    if text.isascii() or not enabled:
        return NormalizedText(text, np.arange(len(text), dtype=np.int64), changed=False)
    out: list[str] = []
    source: list[int] = []
    dropped_emoji = False
    for index, ch in enumerate(text):
        if "invisible" in enabled and is_invisible(ch):
            continue
        if "emoji" in enabled and is_emoji(ch):
            dropped_emoji = True
            continue
        pieces = unicodedata.normalize("NFKC", ch) if "nfkc" in enabled else ch
        for piece in pieces:
            mapped = CONFUSABLES.get(piece, piece) if "confusables" in enabled else piece
            if mapped.isspace() and dropped_emoji and (not out or out[-1].isspace()):
                continue
            dropped_emoji = False
            out.append(mapped)
            source.append(index)
    normalized = "".join(out)
    return NormalizedText(normalized, np.asarray(source, dtype=np.int64), changed=normalized != text)


ALL_STEP_SUBSETS: list[tuple[str, ...]] = [
    subset for size in range(len(ALL_NORMALIZERS) + 1) for subset in itertools.combinations(ALL_NORMALIZERS, size)
]

# Pieces attacked and ordinary posts are made of; whitespace and emoji are over-represented so the
# emoji-space rule meets every neighbour (ASCII runs, NFKC-made spaces, invisibles, other emoji).
_WORDS = ["the", "cat", "Sat", "on", "mat", "x", "42", "word.", "(ok)", "a-b"]
_WHITESPACE = [" ", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u2028"]
_EMOJI = [
    "😀",
    "🐈",
    "👍🏽",
    "👍",
    "🏽",
    "❤️",
    "❤",
    "\ufe0f",
    "\ufe0e",
    "🇺🇸",
    "1️⃣",
    "👨‍👩‍👧",
    "⌚",
    "☀",
    "🀄",
    "\U000e0067",
]
_INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e", "\u034f", "\u3164", "\U000e0001"]
_HOMOGLYPHS = ["а", "е", "о", "р", "с", "Т", "Н", "α", "ο", "Ρ", "ϲ", "օ", "ı", "ℓ", "—", "–", "‘", "’", "“", "”", "„"]
_COMPAT = ["Ａ", "ｂ", "１", "ﬁ", "ﬀ", "ﬃ", "…", "½", "²", "™", "㎏", "Ⅻ", "ｶ", "\u00a0", "\u2003", "\u3000", "\u2002"]
_OTHER = ["é", "e\u0301", "\u0301", "ñ", "ß", "漢字", "日本", "Ж", "ж", "ω", "→", "€", "©", "\u0663"]
_POOLS = [_WORDS, _WORDS, _WHITESPACE, _WHITESPACE, _EMOJI, _EMOJI, _INVISIBLE, _HOMOGLYPHS, _COMPAT, _OTHER]


def random_text(rng: random.Random) -> str:
    pieces: list[str] = []
    for _ in range(rng.randint(0, 14)):
        roll = rng.random()
        if roll < 0.05:
            # Any BMP code point outside the surrogates, for what the lists above miss.
            pieces.append(chr(rng.choice([rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0xFFFD)])))
        else:
            pieces.append(rng.choice(rng.choice(_POOLS)))
    return "".join(pieces)


def assert_same(text: str, steps: tuple[str, ...]) -> None:
    expected = reference_normalize(text, steps)
    got = normalize(text, steps)
    assert got.text == expected.text, (text, steps)
    assert got.source.dtype == expected.source.dtype
    assert np.array_equal(got.source, expected.source), (text, steps)
    assert got.changed == expected.changed, (text, steps)


def test_confusables_map_to_single_characters() -> None:
    # normalize relies on this: one output character per mapped piece.
    assert all(len(latin) == 1 for latin in CONFUSABLES.values())


def test_matches_the_per_character_reference_on_random_text() -> None:
    rng = random.Random(20240611)
    texts = [random_text(rng) for _ in range(1500)]
    texts += ["", "😀", "😀 ", " 😀 ", "😀\u200b x", "a 😀\u00a0b", "a 😀 ﬁ", "😀\u3000\u3000x", "x😀\t\u200b\n y"]
    for text in texts:
        for steps in ALL_STEP_SUBSETS:
            assert_same(text, steps)


def test_unknown_step_names_change_nothing() -> None:
    for text in ["Тhе 😀 ﬁne", "plain", "\u200b"]:
        assert_same(text, ("no-such-step",))
        assert_same(text, ("emoji", "no-such-step"))


def test_results_survive_the_decision_cache_starting_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(normalize_module, "_CACHE_LIMIT", 3)
    rng = random.Random(7)
    for _ in range(200):
        text = random_text(rng)
        for steps in ALL_STEP_SUBSETS:
            assert_same(text, steps)
