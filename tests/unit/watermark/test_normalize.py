from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

import numpy as np
import pytest

import moderation.watermark.normalize as normalize_module
from moderation.config import ALL_NORMALIZERS
from moderation.watermark.normalize import (
    Emitter,
    NormalizedText,
    dominant_script,
    enabled_steps,
    finish,
    normalize,
    script_code,
    undo_overrides,
)


def test_ascii_passes_through_unchanged() -> None:
    out = normalize("Plain ASCII text, nothing to undo.", ALL_NORMALIZERS)
    assert not out.changed
    assert out.text == "Plain ASCII text, nothing to undo."


def test_invisibles_inside_words_are_removed() -> None:
    attacked = "wa\u200btermark\u200d te\u00adxt\ufeff wi\u034fth\u2060 jo\u180einers\ufe0f\U000e0101\U000e0041"
    assert normalize(attacked, ALL_NORMALIZERS).text == "watermark text with joiners"


def test_separators_become_one_space() -> None:
    attacked = "😀 the cat 🐈 sat 👍🏽 on the mat ❤️"
    assert normalize(attacked, ALL_NORMALIZERS).text == "the cat sat on the mat "
    assert normalize("word😀word⠀word\u2028word\u3164word∑word", ALL_NORMALIZERS).text == (
        "word word word word word word"
    )


def test_decorative_marks_go_and_real_accents_stay() -> None:
    struck = "h\u0336e\u0336l\u0336l\u0336o\u0336"
    zalgo = "z\u0301\u0302\u0303\u0304a\u0300\u0301\u0302"
    assert normalize(f"{struck} {zalgo}", ALL_NORMALIZERS).text == "hello za"
    # Decomposed accents that form real letters compose; Vietnamese carries two on one letter.
    assert normalize("cafe\u0301 Vie\u0323\u0302t", ALL_NORMALIZERS).text == "café Việt"


def test_enclosed_and_fullwidth_forms_are_mapped_not_deleted() -> None:
    assert (
        normalize("ｆｕｌｌｗｉｄｔｈ ﬁne ⓗⓔⓛⓛⓞ 🅷🅴🅻🅻🅾 10㎏", ALL_NORMALIZERS).text == "fullwidth fine hello HELLO 10kg"
    )


def test_homoglyphs_in_mixed_words_map_to_latin() -> None:
    attacked = "Тhе quiсk brоwn fох"  # Cyrillic Т, е, с, о, о, х
    assert normalize(attacked, ALL_NORMALIZERS).text == "The quick brown fox"


def test_whole_foreign_look_alike_words_map_in_a_latin_post_only() -> None:
    assert normalize("the сор and ɑpple", ALL_NORMALIZERS).text == "the cop and apple"
    russian = "Это сор и мусор, а не текст."  # 'сор' is a Russian word made only of look-alikes
    assert normalize(russian, ALL_NORMALIZERS).text == russian


@pytest.mark.parametrize(
    "genuine",
    [
        "Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.",
        "Καλημέρα κόσμε, η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
        "日本語のテキスト、漢字とかなの混じった文。",
        "한국어 문장입니다.",
        "नमस्ते दुनिया, हिन्दी में लिखा गया पाठ।",
        "שָׁלוֹם עוֹלָם",
        "مرحبا بالعالم",
    ],
)
def test_genuine_non_latin_text_is_left_alone(genuine: str) -> None:
    assert normalize(genuine, ALL_NORMALIZERS).text == genuine


def test_right_to_left_override_is_undone_not_dropped() -> None:
    assert normalize("abc \u202eolleh dlrow\u202c xyz", ALL_NORMALIZERS).text == "abc world hello xyz"
    # Without a closing PDF the override runs to the end of the paragraph; word by word works too.
    assert normalize("\u202etxet\nnext", ALL_NORMALIZERS).text == "text\nnext"
    assert normalize("\u202eeno\u202c \u202eowt\u202c", ALL_NORMALIZERS).text == "one two"
    text, order = undo_overrides("a\u202eb(c\u0301)\u202cd")
    assert text == "a\u202e(c\u0301)b\u202cd"  # brackets mirrored, the accent stays on its letter
    assert "".join("a\u202eb(c\u0301)\u202cd"[i] for i in order).replace("(", "").replace(")", "") == text.replace(
        "(", ""
    ).replace(")", "")


def test_offsets_map_back_to_the_original_text() -> None:
    original = "😀 Неllo ﬁne \u202eesrever\u202c"
    out = normalize(original, ALL_NORMALIZERS)
    assert out.text == "Hello fine reverse"
    start = out.text.index("fine")
    a, b = out.original_span(start, start + 4)
    assert original[a:b] == "ﬁne"
    a, b = out.original_span(0, 5)
    assert original[a:b] == "Неllo"
    start, stored = out.text.index("reverse"), original.index("esrever")
    assert [int(i) for i in out.source[start : start + 7]] == list(range(stored + 6, stored - 1, -1))


def test_steps_can_be_switched_off() -> None:
    assert normalize("a\u200bb 😀", ("separators",)).text == "a\u200bb "
    assert normalize("a\u200bb 😀", ("emoji",)).text == "a\u200bb "  # the old name of the step


def test_expected_script_of_a_tokenizer() -> None:
    assert dominant_script(["hello", "##ing", "мир", "Ġthe"]) == "Latin"
    assert dominant_script(["привет", "мир", "a"]) == "Cyrillic"
    with pytest.raises(ValueError, match="unknown Unicode script"):
        script_code("Klingon")


def test_confusables_come_from_unicode_data_not_a_hand_table() -> None:
    # Look-alikes no hand table would list: every mapping comes from ICU's UTS #39 data.
    assert normalize("Ꭺpple ꓑie", ALL_NORMALIZERS).text == "Apple Pie"  # Cherokee and Lisu look-alikes


# -- differential test: the fast path against the plain per-character loop it replaced ------------


def reference_normalize(text: str, steps: Iterable[str], script: str = "Latin") -> NormalizedText:
    """The specification: every character, ASCII included, through the uncached per-character decision,
    one at a time; the same context rules (Emitter) and word-level confusables pass."""
    enabled = enabled_steps(steps)
    if text.isascii() or not enabled:
        return NormalizedText(text, np.arange(len(text), dtype=np.int64), changed=False)
    order = None
    working = text
    if "bidi" in enabled and ("\u202e" in text or "\u202d" in text):
        working, order = undo_overrides(text)
    out = Emitter()
    code = script_code(script)
    for index, ch in enumerate(working):
        out.one(normalize_module._decide(ch, enabled, code), index)
    return finish(text, working, order, out, enabled, script)


ALL_STEP_SUBSETS: list[tuple[str, ...]] = [
    subset for size in range(len(ALL_NORMALIZERS) + 1) for subset in itertools.combinations(ALL_NORMALIZERS, size)
]
# Every subset for the cheaper checks; for the long random run, all steps, none, and each step left out.
SOME_STEP_SUBSETS: list[tuple[str, ...]] = [ALL_NORMALIZERS, ()]
SOME_STEP_SUBSETS += [tuple(s for s in ALL_NORMALIZERS if s != left) for left in ALL_NORMALIZERS]

# Pieces attacked and ordinary posts are made of; whitespace and emoji are over-represented so the
# emoji-space rule meets every neighbour (ASCII runs, NFKC-made spaces, invisibles, other emoji).
_WORDS = ["the", "cat", "Sat", "on", "mat", "x", "42", "word.", "(ok)", "a-b"]
_WHITESPACE = [" ", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u2028", "\u2800", "\u3164"]
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
_INVISIBLE = [
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u00ad",
    "\u202e",
    "\u202d",
    "\u202c",
    "\u034f",
    "\U000e0001",
]
_MARKS = ["\u0301", "\u0302", "\u0323", "\u0336", "\u20dd", "\u0486", "\u0952", "\ua67d", "\u05b8", "\u064e"]
_HOMOGLYPHS = ["а", "е", "о", "р", "с", "Т", "Н", "α", "ο", "Ρ", "ϲ", "օ", "ı", "ℓ", "—", "–", "‘", "’", "“", "”", "„"]
_COMPAT = ["Ａ", "ｂ", "１", "ﬁ", "ﬀ", "ﬃ", "…", "½", "²", "™", "㎏", "Ⅻ", "ｶ", "\u00a0", "\u2003", "\u3000", "\u2002"]
_OTHER = [
    "é",
    "e\u0301",
    "\u0301",
    "ñ",
    "ß",
    "漢字",
    "日本",
    "Ж",
    "ж",
    "ω",
    "→",
    "€",
    "©",
    "\u0663",
    "сор",
    "мир",
    "नम",
    "🅰",
    "ⓐ",
    "™",
    "‼",
]
_POOLS = [_WORDS, _WORDS, _WHITESPACE, _WHITESPACE, _EMOJI, _EMOJI, _INVISIBLE, _HOMOGLYPHS, _COMPAT, _OTHER, _MARKS]


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


def test_matches_the_per_character_reference_on_random_text() -> None:
    rng = random.Random(20240611)
    texts = [random_text(rng) for _ in range(1500)]
    texts += ["", "😀", "😀 ", " 😀 ", "😀\u200b x", "a 😀\u00a0b", "a 😀 ﬁ", "😀\u3000\u3000x", "x😀\t\u200b\n y"]
    for text in texts:
        for steps in SOME_STEP_SUBSETS:
            assert_same(text, steps)
    for text in texts[:200]:
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
        for steps in SOME_STEP_SUBSETS:
            assert_same(text, steps)


def test_the_fast_word_finder_finds_exactly_the_non_ascii_words() -> None:
    # map_confusables looks only at words with a non-ASCII letter or digit (for Latin); the regex that
    # finds them must agree with "every word, ASCII ones skipped".
    rng = random.Random(11)
    for _ in range(3000):
        text = random_text(rng)
        fast = [(m.start(), m[0]) for m in normalize_module._NON_ASCII_WORD.finditer(text)]
        slow = [(m.start(), m[0]) for m in normalize_module._WORD.finditer(text) if not m[0].isascii()]
        assert fast == slow, text
