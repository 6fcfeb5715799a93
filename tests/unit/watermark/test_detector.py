from __future__ import annotations

from typing import Any

import pytest

from moderation.config import Settings, parse_settings
from moderation.errors import ConfigError, DeviceUnavailable
from moderation.watermark import WatermarkDetector
from moderation.watermark.detector import NORMALIZED_FORM_SHARE
from moderation.watermark.stats import min_green_for, power

from .conftest import human_words, make_scheme, watermarked_words

LEFT = {"name": "left", "vocab_size": 30522}
SELF = {"name": "self", "vocab_size": 30528, "seeding_scheme": "selfhash", "context_width": 2, "hashing_key": 99991}


def settings(*schemes: dict[str, Any], budget: float = 1e-5, **detector: Any) -> Settings:
    return parse_settings(
        {
            "detector": {"device": "cpu", **detector},
            "watermark": {"false_positive_rate": budget, "schemes": list(schemes)},
        }
    )


def emoji_every_word(text: str) -> str:
    return " ".join(w + " 😀" for w in text.split(" "))


@pytest.fixture(scope="module")
def detector() -> WatermarkDetector:
    return WatermarkDetector(settings(LEFT, SELF))


@pytest.fixture(scope="module")
def marked_left() -> str:
    return watermarked_words(120, make_scheme(**LEFT), seed=1)


@pytest.fixture(scope="module")
def marked_self() -> str:
    return watermarked_words(80, make_scheme(**SELF), seed=2)


def test_watermarked_text_is_flagged_by_its_own_scheme_only(detector: WatermarkDetector, marked_left: str) -> None:
    left, right = detector.detect([marked_left])[0]
    assert left.scheme == "left" and left.watermarked is True
    assert left.z_score is not None and left.z_score > 8
    assert left.p_value is not None and left.p_value < 1e-12
    assert left.green_fraction is not None and left.green_fraction > 0.7
    assert right.scheme == "self" and right.watermarked is False


def test_selfhash_text_is_flagged(detector: WatermarkDetector, marked_self: str) -> None:
    left, right = detector.detect([marked_self])[0]
    assert right.watermarked is True and left.watermarked is False


def test_human_text_is_not_flagged(detector: WatermarkDetector) -> None:
    texts = [human_words(60 + (i % 5) * 40, seed=100 + i) for i in range(150)]
    flagged = [s for row in detector.detect(texts) for s in row if s.watermarked]
    assert flagged == []


def test_repetition_counts_once_and_is_not_flagged(detector: WatermarkDetector) -> None:
    spam = "lol " * 300
    left, _ = detector.detect([spam])[0]
    assert left.num_tokens_scored <= 2  # "lol" is one or two WordPieces: at most two distinct bigrams
    assert left.watermarked is None and left.reason == "too_short"


def test_too_short_posts_abstain_rather_than_say_human(detector: WatermarkDetector) -> None:
    for score in detector.detect(["just a few words here"])[0]:
        assert score.watermarked is None
        assert score.reason == "too_short"
        assert score.p_value is None


def test_evidence_offsets_point_into_the_submitted_text(detector: WatermarkDetector, marked_left: str) -> None:
    left = detector.detect([marked_left], evidence="flagged")[0][0]
    assert left.tokens is not None
    words = marked_left.split(" ")
    assert len(left.tokens) == len(words) - 1  # the first token only seeds the next
    for (start, end, _green, _counted), word in zip(left.tokens, words[1:], strict=True):
        assert marked_left[start:end] == word
    assert sum(g for _, _, g, c in left.tokens if c) == left.num_green_tokens


def test_no_evidence_unless_asked(detector: WatermarkDetector, marked_left: str) -> None:
    assert detector.detect([marked_left], evidence="none")[0][0].tokens is None
    assert detector.detect([human_words(80, 5)], evidence="flagged")[0][0].tokens is None


@pytest.mark.parametrize(
    "attack",
    [
        emoji_every_word,
        lambda t: t.replace(" ", " \u200b"),
        lambda t: "".join({"a": "а", "e": "е", "o": "о"}.get(c, c) for c in t),
    ],
    ids=["emoji", "zero-width", "homoglyphs"],
)
def test_character_attacks_are_undone(detector: WatermarkDetector, marked_left: str, attack: Any) -> None:
    attacked = attack(marked_left)
    assert attacked != marked_left
    left = detector.detect([attacked])[0][0]
    assert left.watermarked is True
    if "\u200b" in attacked:
        # BERT's own normalizer drops zero-width characters: both forms have the same tokens, so the
        # normalized form is no test of its own (one form: a whole-text and a window test).
        assert (left.form, left.tests) == ("raw", 2)
    else:
        assert (left.form, left.tests) == ("normalized", 4)  # two forms, each with a whole-text and a window test


def test_shares_of_the_false_positive_budget() -> None:
    """Weighted Bonferroni: one form takes the whole budget; a normalized form that tokenizes differently
    takes NORMALIZED_FORM_SHARE of it; a window test halves its form's share."""
    single = WatermarkDetector(settings(LEFT))
    short = watermarked_words(40, make_scheme(**LEFT), seed=5)  # under 64 tokens: no window is searched
    clean, attacked = (row[0] for row in single.detect([short, emoji_every_word(short)]))
    assert (clean.form, clean.tests) == ("raw", 1)
    assert clean.p_value_adjusted == pytest.approx(clean.p_value, rel=1e-9)
    # The emoji make the submitted form long enough (an [UNK] each) for a window test of its own.
    assert (attacked.form, attacked.tests) == ("normalized", 3)
    assert attacked.p_value is not None
    assert attacked.p_value_adjusted == pytest.approx(attacked.p_value / NORMALIZED_FORM_SHARE, rel=1e-9)
    assert clean.watermarked is attacked.watermarked is True


def test_family_wise_false_positive_rate_holds_with_every_test() -> None:
    """At a loose target the rule can be checked by counting: human posts of every length, tested in two
    forms (emoji between words) and with windows, are flagged at most at the target rate."""
    alpha = 0.05
    loose = WatermarkDetector(settings(LEFT, budget=alpha))
    texts = [human_words(20 + (i % 8) * 40, seed=5_000 + i) for i in range(1500)]
    texts += [emoji_every_word(t) for t in texts[:500]]
    scores = [row[0] for row in loose.detect(texts, evidence="none")]
    assert max(s.tests for s in scores) == 4  # two forms, each with a window test, for the long attacked ones
    rate = sum(bool(s.watermarked) for s in scores) / len(scores)
    assert rate <= alpha + 3 * (alpha * (1 - alpha) / len(scores)) ** 0.5


def test_copy_paste_passage_is_found_by_the_window_test(detector: WatermarkDetector) -> None:
    passage = watermarked_words(60, make_scheme(**LEFT), seed=9, bias=3.0)
    before, after = human_words(150, 11), human_words(150, 12)
    text = f"{before} {passage} {after}"
    left = detector.detect([text])[0][0]
    assert left.watermarked is True
    assert left.window is not None
    start, end = text.index(passage), text.index(passage) + len(passage)
    overlap = min(end, left.window.end_char) - max(start, left.window.start_char)
    assert overlap > 0.5 * (left.window.end_char - left.window.start_char)
    assert left.p_value_adjusted is not None and left.window.p_value < left.p_value_adjusted


def test_batching_never_changes_a_result(detector: WatermarkDetector, marked_left: str) -> None:
    texts = [marked_left, "tiny", human_words(300, 3), marked_left[:200]]
    together = detector.detect(texts)
    alone = [detector.detect([t])[0] for t in texts]
    assert together == alone


def test_tiny_green_list_cache_gives_identical_results(marked_left: str) -> None:
    texts = [marked_left, human_words(400, 4)]
    roomy = WatermarkDetector(settings(LEFT)).detect(texts)
    cramped_detector = WatermarkDetector(settings(LEFT, greenlist_cache_mib=1))
    cramped_detector.schemes[0].greenlists.capacity = 16  # force eviction within one batch
    assert cramped_detector.detect(texts) == roomy


def test_family_wise_budget_is_split_across_schemes(detector: WatermarkDetector, marked_left: str) -> None:
    left, right = detector.detect([marked_left])[0]
    assert left.alpha == right.alpha == pytest.approx(1e-5 / 2)


def test_long_posts_are_truncated_and_say_so(marked_left: str) -> None:
    score = WatermarkDetector(settings(LEFT, max_tokens_per_post=32)).detect([marked_left])[0][0]
    assert score.truncated is True
    assert score.num_tokens_scored <= 31


def test_vocab_size_smaller_than_tokenizer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="smaller than the tokenizer's 30522"):
        WatermarkDetector(settings({"name": "x", "vocab_size": 30000}))


def test_cuda_generator_scheme_refuses_without_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal path cannot be exercised here")
    with pytest.raises(DeviceUnavailable, match="CUDA generator"):
        WatermarkDetector(settings({"name": "gpu", "vocab_size": 30522, "generator": "transformers-cuda"}))


def test_z_threshold_states_a_rate_decided_by_the_exact_tail(marked_left: str) -> None:
    """z_threshold = z is the target P(N(0,1) >= z), within the post-level budget, decided exactly: at 16
    tokens "z >= 4" would flag 12 green of 16, whose real rate is 9x the nominal 3.2e-5."""
    lenient = WatermarkDetector(settings({**LEFT, "z_threshold": 4.0}, budget=1e-4))
    assert lenient.schemes[0].alpha == pytest.approx(3.167e-5, rel=1e-3)
    marked = lenient.detect([marked_left])[0][0]
    assert marked.watermarked is True and marked.alpha == pytest.approx(3.167e-5, rel=1e-3)
    # 12 of 16 green: z = 4.0 exactly, yet P(X >= 12) = 3.4e-5 > 3.2e-5: the exact rule does not flag it.
    assert min_green_for(16, 0.25, 3.167e-5) == 13
    strict = WatermarkDetector(settings({**LEFT, "z_threshold": 30.0}))
    assert strict.detect([marked_left])[0][0].watermarked is False


def test_z_threshold_beyond_the_budget_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"schemes\[left\]\.z_threshold \(3\.17e-05\).*false_positive_rate \(1e-05\)"):
        settings({**LEFT, "z_threshold": 4.0})


def test_per_scheme_targets_are_deducted_from_the_budget() -> None:
    both = settings({**LEFT, "false_positive_rate": 4e-6}, SELF)
    left, right = both.watermark.schemes
    assert both.watermark.alpha_for(left) == 4e-6
    assert both.watermark.alpha_for(right) == pytest.approx(6e-6)  # what is left of 1e-5
    assert sum(both.watermark.alpha_for(s) for s in both.watermark.schemes) == pytest.approx(1e-5)
    with pytest.raises(ConfigError, match=r"schemes\[left\]\.false_positive_rate.*leaving nothing for the 1 other"):
        settings({**LEFT, "false_positive_rate": 1e-5}, SELF)
    with pytest.raises(ConfigError, match=r"add up to 1\.2e-05"):
        settings({**LEFT, "false_positive_rate": 6e-6}, {**SELF, "false_positive_rate": 6e-6})


def test_short_posts_that_are_not_flagged_say_insufficient_evidence(detector: WatermarkDetector) -> None:
    """Not flagging a 16-token post is no evidence it is human: its test had about 1% power."""
    short, long = (row[0] for row in detector.detect([human_words(17, 41), human_words(400, 42)]))
    assert short.num_tokens_scored == 16 and short.watermarked is False
    assert short.outcome == "insufficient_evidence"
    assert short.power is not None and short.power < 0.05
    # At 16 tokens, 13 green (81%) are needed at the scheme's 5e-6 share of the budget.
    assert short.min_detectable_green_fraction == pytest.approx(13 / 16)
    assert long.watermarked is False and long.outcome == "not_watermarked"
    assert long.power is not None and long.power >= 0.8
    # The power is the binomial chance of reaching the threshold at the expected green fraction.
    scheme = detector.settings.watermark.schemes[0]
    assert scheme.power_green_fraction == pytest.approx(0.4806, abs=1e-4)
    assert short.power == pytest.approx(power(16, 0.25, short.alpha, scheme.power_green_fraction))


def test_outcome_of_flagged_and_abstained_posts(detector: WatermarkDetector, marked_left: str) -> None:
    flagged, tiny = (row[0] for row in detector.detect([marked_left, "a few words"]))
    assert (flagged.watermarked, flagged.outcome) == (True, "watermarked")
    assert (tiny.watermarked, tiny.outcome, tiny.power) == (None, "abstained", None)


def test_a_repeated_pair_counts_once_whatever_its_context() -> None:
    """transformers' lefthash with context 3 seeds on the previous token only: "x a b" and "y a b" are
    distinct n-grams but one (seed, target) pair. The default counts it once; "ngrams" counts it twice."""
    text = " ".join(f"{w} next word" for w in ("alpha", "beta", "gamma", "delta", "omega", "sigma", "theta", "kappa"))
    fields = {**LEFT, "context_width": 3, "windowed": False, "min_scored_tokens": 1}
    pairs = WatermarkDetector(settings(fields)).detect([text], evidence="all")[0][0]
    ngrams = WatermarkDetector(settings({**fields, "repeat_counting": "ngrams"})).detect([text], evidence="all")[0][0]
    every = WatermarkDetector(settings({**fields, "ignore_repeated_ngrams": False})).detect([text])[0][0]
    assert every.num_tokens_scored == 24 - 3
    # Scoring starts at the 4th token ("beta"). Distinct (previous token, target) pairs among the 21:
    # (word, w) for the 7 later words, (w, next) for the same 7, and (next, word) once.
    assert pairs.num_tokens_scored == 7 + 7 + 1
    assert ngrams.num_tokens_scored == 21  # every 4-gram differs
    assert pairs.tokens is not None and sum(c for *_, c in pairs.tokens) == 15


def test_legacy_ignore_repeated_ngrams_maps_to_a_counting() -> None:
    assert settings({**LEFT, "ignore_repeated_ngrams": True}).watermark.schemes[0].repeat_counting == "ngrams"
    assert settings({**LEFT, "ignore_repeated_ngrams": False}).watermark.schemes[0].repeat_counting == "all"
    assert settings(LEFT).watermark.schemes[0].repeat_counting == "pairs"
    with pytest.raises(ConfigError, match="ignore_repeated_ngrams = true means repeat_counting = 'ngrams'"):
        settings({**LEFT, "ignore_repeated_ngrams": True, "repeat_counting": "pairs"})
