from __future__ import annotations

import json
from typing import Any

import pytest

from moderation.config import parse_settings
from moderation.errors import PluginError
from moderation.plugins.registry import build_plugin
from moderation.plugins.spam import SpamOptions, SpamPlugin
from moderation.plugins.text import find_invisible, find_links, host_of
from moderation.posts import Post
from moderation.signals import Action, Signal


def one(text: str, **options: Any) -> Signal:
    return build_plugin("spam", parse_settings({}), options).evaluate([Post(id="1", text=text)])[0][0]


def test_plain_prose_and_an_ordinary_link_are_clean() -> None:
    s = one("The meeting moved to Thursday because half the team is travelling; bring the slides.")
    assert (s.label, s.score, s.force_action, s.evidence) == ("clean", 0.0, None, {})
    news = one("Interesting read on the housing market: https://www.nytimes.com/2024/05/01/business/housing.html")
    assert news.label == "clean" and news.score is not None and news.score < 0.2
    assert news.details["url_count"] == 1 and news.details["shortener_links"] == 0


def test_shortened_links_and_shouting_are_spam_with_url_spans() -> None:
    text = "FREE FOLLOWERS NOW!!! CLICK https://bit.ly/x1 AND https://tinyurl.com/y2. BEFORE IT ENDS"
    s = one(text)
    assert s.label == "spam" and s.score is not None and s.score >= 0.7
    assert s.details["shortener_links"] == 2 and s.details["url_count"] == 2
    assert s.details["uppercase_ratio"] == 1.0
    spans = s.evidence["urls"]
    assert [text[a:b] for a, b, _ in spans] == ["https://bit.ly/x1", "https://tinyurl.com/y2"]  # "." left out
    assert [host for _, _, host in spans] == ["bit.ly", "tinyurl.com"]


def test_one_shortened_link_alone_is_suspicious_but_not_spam() -> None:
    plain = one("My new blog post about sourdough is up, have a look")
    short = one("My new blog post about sourdough is up: bit.ly/3xYzAbc")
    assert short.details["shortener_links"] == 1
    assert short.label == "clean" and short.score is not None and plain.score is not None
    assert short.score > plain.score


def test_repetition_alone_is_not_enough_but_with_a_shortener_it_is() -> None:
    alone = one("buy now " * 20)
    assert alone.details["repeated_trigram_ratio"] > 0.9 and alone.label == "clean"
    assert one("buy now " * 10 + "bit.ly/deal").label == "spam"


def test_blocked_domain_forces_block_unless_turned_off() -> None:
    text = "see www.evil.malware.example/free for details"
    blocked = one(text, blocked_domains=["https://Malware.example"])
    assert blocked.force_action == Action.BLOCK and blocked.score == 1.0 and blocked.label == "spam"
    assert blocked.evidence["blocked_domains"] == ["evil.malware.example"]
    softer = one(text, blocked_domains=["malware.example"], block_on_blocked_domain=False)
    assert softer.force_action is None and softer.details["blocked_domain_links"] == 1
    # A domain that merely ends with the same letters is not a subdomain.
    assert one("see notmalware.example.com today", blocked_domains=["malware.example"]).force_action is None


def test_invisible_characters_are_counted_with_spans_except_legitimate_ones() -> None:
    text = "fr\u200bee mo\u200bney cl\u200bick here"
    s = one(text)
    assert s.details["invisible_chars"] == 3 and s.label == "spam"
    assert [(a, b, cp) for a, b, cp in s.evidence["invisible"]] == [
        (2, 3, "U+200B"),
        (8, 9, "U+200B"),
        (15, 16, "U+200B"),
    ]
    assert find_invisible("Family night \U0001f468\u200d\U0001f469\u200d\U0001f467 with the kids") == []  # emoji ZWJ
    assert find_invisible("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645") == []  # Persian ZWNJ
    assert find_invisible("\ufeffHello") == []  # a leading byte-order mark
    assert find_invisible("abc\u202edcba") == [3]  # a right-to-left override is always counted
    assert find_invisible("pay\u200dpal") == [3]  # a joiner between Latin letters splits a word


def test_shouting_needs_enough_letters_and_is_not_spam_alone() -> None:
    loud = one("THIS IS ABSOLUTELY OUTRAGEOUS AND EVERYONE SHOULD KNOW ABOUT IT")
    assert loud.details["uppercase_ratio"] == 1.0 and loud.score == 0.25 and loud.label == "clean"
    assert one("LOL OK").score == 0.0
    assert one("THIS IS ABSOLUTELY OUTRAGEOUS AND EVERYONE SHOULD KNOW", threshold=0.2).label == "spam"


def test_character_runs() -> None:
    s = one("sooooooo goooooood!!!!!!!!")
    assert s.details["longest_char_run"] == 8
    assert one("The prize is 1000000 dollars").details["longest_char_run"] == 0  # digits are not runs


def test_link_finding() -> None:
    text = "mail bob@example.com, e.g. (see file.txt) or (https://en.wikipedia.org/wiki/Python_(language))."
    links = find_links(text)
    assert [text[link.start : link.end] for link in links] == ["https://en.wikipedia.org/wiki/Python_(language)"]
    assert host_of("https://user@WWW.Bit.ly:8080/x?y") == "bit.ly"
    assert [link.host for link in find_links("go to t.co/abc or is.gd/x now")] == ["t.co", "is.gd"]


def test_extra_shorteners_option() -> None:
    assert one("go to sho.rt.example/x", extra_shorteners=["rt.example"]).details["shortener_links"] == 1


def test_nothing_to_judge_abstains_but_a_bare_link_does_not() -> None:
    for text in ["\U0001f642 123 !!!", "", "   "]:
        s = one(text)
        assert s.abstained and s.reason == "empty" and s.score is None and s.label is None
    assert not one("https://bit.ly/x").abstained


def test_one_signal_per_post_in_order_and_json_safe() -> None:
    plugin = SpamPlugin(parse_settings({}), SpamOptions(blocked_domains=("bad.example",)))
    posts = [Post(id=str(i), text=t) for i, t in enumerate(["hello there friend", "", "x bad.example y", "ok"])]
    out = plugin.evaluate(posts)
    assert [len(signals) for signals in out] == [1, 1, 1, 1]
    assert [s[0].label for s in out] == ["clean", None, "spam", "clean"]
    for signals in out:
        json.dumps(signals[0].to_json())
        assert all(isinstance(v, int | float) for v in signals[0].details.values())


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"threshold": 2}, "threshold"),
        ({"threshold": "high"}, "threshold"),
        ({"blocked_domains": "evil.com"}, "blocked_domains"),
        ({"block_on_blocked_domain": "yes"}, "block_on_blocked_domain"),
    ],
)
def test_bad_options_fail_at_start(options: dict[str, Any], field: str) -> None:
    with pytest.raises(PluginError, match=f"plugins.spam.{field}"):
        build_plugin("spam", parse_settings({}), options)


def test_the_moderators_explanation_reads_the_numbers_the_plugin_emits() -> None:
    """An all-caps post with two shortener links was once explained as "nothing typical of spam"."""
    from moderation.review.explain import explain

    s = one("CLAIM YOUR PRIZE TODAY ONLY AT https://bit.ly/a1 OR https://tinyurl.com/b2 HURRY UP NOW FRIENDS")
    words = explain(s.to_json())
    assert "2 shortened link(s)" in words and "capital letters" in words and "nothing typical" not in words


def test_invisible_characters_come_from_unicode_data_with_legitimate_uses_exempt() -> None:
    # Default_Ignorable code points from Unicode's data, placed inside ASCII words: each one counts.
    attack = "pa\u00adss w\u034ford ca\u2060sh fr\ufe0fee mo\U000e0041ney bo\u3164nus"
    assert len(find_invisible(attack)) == 6
    # Emoji presentation selectors, a subdivision flag's tags and ZWJ emoji sequences are what writers use.
    assert (
        find_invisible(
            "I \u2764\ufe0f it \U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f \U0001f468\u200d\U0001f469"
        )
        == []
    )
