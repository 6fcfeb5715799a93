from __future__ import annotations

from moderation.plugins.spam import SpamPlugin
from moderation.signals import Action
from tests.unit.plugins.conftest import post, settings


def one(text: str, **options: object) -> object:
    return SpamPlugin(settings(), options).evaluate([post(1, text)])[0][0]


def test_plain_prose_is_clean() -> None:
    s = one("The meeting moved to Thursday because half the team is travelling; bring the slides.")
    assert s.label == "clean" and s.score < 0.3 and s.force_action is None  # type: ignore[attr-defined]


def test_shortened_links_and_shouting_are_spam_with_evidence() -> None:
    text = "FREE FOLLOWERS NOW!!! CLICK https://bit.ly/x1 AND https://tinyurl.com/y2 BEFORE IT ENDS"
    s = one(text)
    assert s.label == "spam"  # type: ignore[attr-defined]
    assert s.details["shorteners"] == 2 and s.details["uppercase_share"] > 0.9  # type: ignore[attr-defined]
    start, end = s.evidence["urls"][0]  # type: ignore[attr-defined]
    assert text[start:end] == "https://bit.ly/x1"


def test_blocked_domain_forces_block_unless_turned_off() -> None:
    text = "see www.malware.example/free for details"
    assert one(text, blocked_domains=["malware.example"]).force_action == Action.BLOCK  # type: ignore[attr-defined]
    s = one(text, blocked_domains=["malware.example"], block_on_blocked_domain=False)
    assert s.force_action is None and s.details["blocked_domains"] == ["malware.example"]  # type: ignore[attr-defined]


def test_repetition_and_invisible_characters_count() -> None:
    assert one("buy now " * 20).details["repeated_trigram_share"] > 0.8  # type: ignore[attr-defined]
    s = one("hel\u200blo wo\u200brld fr\u200bee")
    assert s.details["invisible_chars"] == 3 and len(s.evidence["invisible"]) == 3  # type: ignore[attr-defined]


def test_nothing_to_judge_abstains() -> None:
    s = one("🙂 123 !!!")
    assert s.abstained and s.reason == "empty" and s.score is None  # type: ignore[attr-defined]
