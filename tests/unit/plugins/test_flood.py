from __future__ import annotations

import random

from moderation.plugins.flood import FloodPlugin
from moderation.posts import Post
from moderation.synthetic import human_posts
from tests.unit.plugins.conftest import post, settings

TEMPLATE = (
    "Great news everyone, the {a} giveaway is live today and you can claim your free {b} by visiting our page "
    "and sharing this message with {c} friends before the offer ends tonight at midnight"
)
WORDS = {
    "a": ["holiday", "winter", "big", "mega", "annual"],
    "b": ["gift card", "phone", "voucher", "laptop", "prize"],
    "c": ["five", "ten", "three", "all your", "twenty"],
}


def campaign(n: int, seed: int = 1) -> list[Post]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = TEMPLATE.format(**{k: rng.choice(v) for k, v in WORDS.items()})
        out.append(post(f"c{i}", text, author=f"bot{i}", seconds=i))
    return out


def test_a_paraphrased_campaign_from_many_authors_is_caught_from_the_fifth_copy() -> None:
    plugin = FloodPlugin(settings(), {})
    signals = [s[0] for s in plugin.evaluate(campaign(20))]
    assert [s.label for s in signals[:4]] == ["unique", "near_duplicate", "near_duplicate", "near_duplicate"]
    assert all(s.label == "flood" for s in signals[4:])
    assert signals[-1].details["distinct_authors"] == 20
    assert signals[-1].details["cluster_size"] >= 15
    assert signals[-1].evidence["similar_posts"][0]["similarity"] >= 0.5


def test_unrelated_human_posts_are_not_a_flood() -> None:
    plugin = FloodPlugin(settings(), {})
    texts = human_posts(300, seed=2, repetitive_share=0.0)
    labels = [s[0].label for s in plugin.evaluate([post(i, t, seconds=i) for i, t in enumerate(texts)])]
    assert labels.count("flood") == 0
    assert labels.count("unique") + labels.count(None) >= 290


def test_redelivery_does_not_count_a_post_as_its_own_duplicate() -> None:
    plugin = FloodPlugin(settings(), {})
    copy = campaign(1)[0]
    first = plugin.evaluate([copy])[0][0]
    again = plugin.evaluate([copy])[0][0]
    assert first.details["cluster_size"] == again.details["cluster_size"] == 1


def test_tenants_and_windows_are_separate() -> None:
    plugin = FloodPlugin(settings(), {"window_seconds": 60, "min_cluster": 2})
    a = campaign(2)
    other_tenant = Post(id="x", text=a[1].text, tenant="other", author="z", created_at=a[1].created_at)
    assert plugin.evaluate([a[0], other_tenant])[1][0].label == "unique"
    late = Post(id="late", text=a[1].text, tenant="t", author="z", created_at=a[0].created_at.replace(hour=13))  # type: ignore[union-attr]
    assert plugin.evaluate([late])[0][0].label == "unique"  # the first copy left the window


def test_short_posts_abstain() -> None:
    s = FloodPlugin(settings(), {}).evaluate([post(1, "hi there")])[0][0]
    assert s.abstained and s.reason == "too_short"
