from __future__ import annotations

from moderation.config import default_config_path, load_settings
from moderation.plugins.registry import build_plugin
from moderation.posts import Post
from moderation.review.evidence import passages, segments
from moderation.review.explain import explain


def test_segments_cover_the_text_and_mark_green_tokens_and_the_passage() -> None:
    text = "one two three four"
    signal = {
        "evidence": {"tokens": [[0, 3, 1, 1], [4, 7, 0, 1], [8, 13, 1, 0], [14, 18, 1, 1]]},
        "window": {"start_char": 4, "end_char": 13},
    }
    parts = segments(text, signal)
    assert "".join(p["text"] for p in parts) == text
    green = [p["text"] for p in parts if p["green"]]
    assert green == ["one", "four"]  # "three" is green but not counted (a repeated n-gram): not highlighted
    runs = passages(parts)
    assert [r["passage"] for r in runs] == [False, True, False]
    assert "".join(p["text"] for p in runs[1]["parts"]) == "two three"


def test_no_evidence_is_plain_text() -> None:
    assert segments("<b>hi</b>", None) == [{"text": "<b>hi</b>", "green": False, "scored": False, "passage": False}]


def test_explanations_are_plain_words() -> None:
    # Signals as the plugins make them (details complete, as stored), not hand-picked keys.
    detector = build_plugin("watermark", load_settings(default_config_path()), {})
    (short_signal,) = detector.evaluate([Post(id="s", text="Too short.")])[0]
    short = explain(short_signal.to_json())
    assert short_signal.reason == "too_short" and "not evidence that a person wrote it" in short
    details = {"cluster_size": 7, "similar_posts": 6, "distinct_authors": 6, "max_similarity": 0.8}
    flood = explain({"plugin": "flood", "label": "flood", "score": 1.0, **details, "candidates": 9, "shingles": 20})
    assert "7 near-identical posts" in flood and "6 author(s)" in flood
