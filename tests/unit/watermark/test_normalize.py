from __future__ import annotations

from moderation.config import ALL_NORMALIZERS
from moderation.watermark.normalize import normalize


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
