from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import pytest

from moderation.config import parse_settings
from moderation.errors import PluginError
from moderation.plugins.flood import FloodOptions, FloodPlugin, MinHasher, normalise_words, shingle_hashes
from moderation.plugins.registry import build_plugin
from moderation.posts import Post
from moderation.signals import Signal
from tests.unit.plugins.test_rate import BrokenStore

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# A campaign: one template, a few words swapped in every copy, each copy innocent on its own.
TEMPLATE = (
    "Hi everyone, I just wanted to share that our {a} community meetup is happening this weekend at the old "
    "library downtown. We will have {b} coffee, snacks and a short talk about local history, so bring your "
    "{c} and come say hello, everyone is welcome and it is completely free to attend"
)
SLOTS = {
    "a": ["neighbourhood", "friendly", "local", "monthly", "small"],
    "b": ["free", "hot", "fresh", "great", "good"],
    "c": ["friends", "family", "kids", "neighbours", "questions"],
}
# A harder one: two-word swaps, so some pairs of copies fall under the threshold (see the chaining test).
HARD_TEMPLATE = (
    "Great news everyone, the {a} giveaway is live today and you can claim your free {b} by visiting our page "
    "and sharing this message with {c} friends before the offer ends tonight at midnight"
)
HARD_SLOTS = {
    "a": ["holiday", "winter", "big", "mega", "annual"],
    "b": ["gift card", "phone", "voucher", "laptop", "prize"],
    "c": ["five", "ten", "three", "all your", "twenty"],
}
HUMAN = [
    "The meeting moved to Thursday because half the team is travelling this week.",
    "I finally finished the book you lent me and the ending was not what I expected at all.",
    "Does anyone know a good plumber in the north end who can come out on short notice?",
    "Our tomatoes are finally ripening after weeks of cold weather and far too much rain.",
    "The new bike lane on Elm Street has made my commute so much calmer in the mornings.",
    "Reminder that the school bake sale starts at nine, please bring labelled containers.",
    "We adopted a retired greyhound last month and she already owns the entire sofa.",
    "Has the library changed its opening hours, I went on Sunday and the doors were locked?",
    "My grandmother's soup recipe uses far more garlic than any recipe I have found online.",
    "The council vote on the park renovation was postponed again until after the summer.",
    "Just watched the documentary about deep sea creatures and now I cannot stop thinking about squid.",
    "If you left a blue umbrella at the cafe on Friday afternoon, the owner is keeping it behind the till.",
    "Traffic on the bridge was backed up for an hour because of a broken down delivery truck.",
    "The choir is looking for two more tenors for the winter concert, rehearsals are on Tuesdays.",
    "Found a lovely hiking trail behind the reservoir, it is steep but the view is worth it.",
    "Can someone recommend a laptop for a student that will not break the bank this autumn?",
    "Power was out on our street for most of the evening so we played board games by candlelight.",
    "The farmers market now takes cards, which is great news for people who never carry cash.",
    "My daughter scored her first goal today and has not stopped talking about it since dinner.",
    "Is it just me or are the geese by the pond getting braver and louder every single year?",
]


def copies(template: str, slots: dict[str, list[str]], n: int, seed: int = 1) -> list[Post]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = template.format(**{k: rng.choice(v) for k, v in slots.items()})
        out.append(Post(id=f"c{i}", text=text, tenant="t", author=f"bot{i}", created_at=T0 + timedelta(seconds=i)))
    return out


def plugin(**options: Any) -> FloodPlugin:
    return cast(FloodPlugin, build_plugin("flood", parse_settings({}), options))


def one_by_one(p: FloodPlugin, posts: list[Post]) -> list[Signal]:
    return [p.evaluate([post])[0][0] for post in posts]


def test_a_paraphrased_campaign_from_many_authors_is_a_flood_from_the_fifth_copy() -> None:
    posts = copies(TEMPLATE, SLOTS, 20)
    assert len({p.text for p in posts}) > 10  # really paraphrased, not exact copies
    for signals in (one_by_one(plugin(), posts), [s[0] for s in plugin().evaluate(posts)]):  # streamed / one batch
        assert [s.label for s in signals[:4]] == ["unique", "near_duplicate", "near_duplicate", "near_duplicate"]
        assert all(s.label == "flood" and s.score == 1.0 for s in signals[4:])
        assert [s.details["cluster_size"] for s in signals[:5]] == [1, 2, 3, 4, 5]
        assert [s.score for s in signals[:3]] == [0.0, 0.25, 0.5]
        last = signals[-1]
        assert last.details["cluster_size"] == 20 and last.details["distinct_authors"] == 20
        assert last.details["max_similarity"] >= 0.6
        assert len(last.evidence["similar_posts"]) == 10 and "c19" not in last.evidence["similar_posts"]
        assert last.evidence["similarities"] == sorted(last.evidence["similarities"], reverse=True)


def test_chaining_catches_a_campaign_whose_copies_are_not_all_pairwise_similar() -> None:
    posts = copies(HARD_TEMPLATE, HARD_SLOTS, 20)
    chained = one_by_one(plugin(), posts)
    direct = one_by_one(plugin(chain=False), posts)
    assert all(s.label == "flood" for s in chained[10:])
    assert sum(s.label == "flood" for s in direct) < sum(s.label == "flood" for s in chained)
    assert all(s.details["cluster_size"] == s.details["similar_posts"] + 1 for s in direct)


def test_unrelated_human_posts_are_unique() -> None:
    posts = [Post(id=str(i), text=t, author=f"u{i}", created_at=T0 + timedelta(seconds=i)) for i, t in enumerate(HUMAN)]
    signals = [s[0] for s in plugin().evaluate(posts)]
    assert [s.label for s in signals] == ["unique"] * len(HUMAN)
    assert all(s.score == 0.0 and s.evidence["similar_posts"] == [] for s in signals)


def test_links_numbers_case_and_invisible_characters_do_not_hide_a_copy() -> None:
    base = "Claim your reward of 500 dollars now by following the link https://example.com/a1 before Friday ends"
    evasive = (
        "CLAIM your reward of 1,000 dollars now by fol\u200blowing the link https://example.com/zz9 before Friday ends!"
    )
    assert normalise_words(base) == normalise_words(evasive.replace("1,000", "500"))
    p = plugin()
    p.evaluate([Post(id="a", text=base, created_at=T0)])
    s = p.evaluate([Post(id="b", text=evasive, created_at=T0)])[0][0]
    assert s.label == "near_duplicate" and s.details["max_similarity"] >= 0.7


def test_redelivery_never_counts_a_post_as_its_own_duplicate() -> None:
    p = plugin()
    posts = copies(TEMPLATE, SLOTS, 6)
    first = one_by_one(p, posts)
    again = p.evaluate([posts[2], posts[2]])  # redelivered, twice in one batch
    for s in (again[0][0], again[1][0]):
        assert "c2" not in s.evidence["similar_posts"]
        assert s.details["cluster_size"] >= first[2].details["cluster_size"]
    lone = Post(id="solo", text=TEMPLATE, created_at=T0)
    q = plugin()
    assert [q.evaluate([lone])[0][0].details["cluster_size"] for _ in range(3)] == [1, 1, 1]
    # The next copy still sees exactly the five distinct earlier posts, not redeliveries.
    assert p.evaluate(copies(TEMPLATE, SLOTS, 7)[6:])[0][0].details["similar_posts"] == 6


def test_tenants_and_the_window_separate_clusters() -> None:
    p = plugin(window_seconds=600, min_cluster=2)
    a, b = copies(TEMPLATE, SLOTS, 2)
    other = Post(id="x", text=b.text, tenant="other", author="z", created_at=b.created_at)
    assert [s[0].label for s in p.evaluate([a, other])] == ["unique", "unique"]
    soon = Post(id="soon", text=b.text, tenant="t", author="z", created_at=T0 + timedelta(minutes=5))
    assert p.evaluate([soon])[0][0].label == "flood"  # within 600 s of the first copy
    late = Post(id="late", text=b.text, tenant="t", author="z", created_at=T0 + timedelta(hours=2))
    assert p.evaluate([late])[0][0].label == "unique"  # every earlier copy has left the window


def test_short_posts_abstain() -> None:
    out = plugin().evaluate([Post(id="1", text="hi there, how are you"), Post(id="2", text="")])
    assert [(s[0].abstained, s[0].reason, s[0].score) for s in out] == [(True, "too_short", None)] * 2
    assert not plugin(min_shingles=2).evaluate([Post(id="1", text="hi there, how are you")])[0][0].abstained


def test_minhash_estimates_jaccard_and_is_the_same_in_every_process() -> None:
    rng = np.random.default_rng(0)
    hasher, again = MinHasher(64, 16, seed=1), MinHasher(64, 16, seed=1)
    errors = []
    for _ in range(200):
        common = rng.integers(0, 2**63, size=30, dtype=np.uint64)
        a = np.concatenate([common, rng.integers(0, 2**63, size=10, dtype=np.uint64)])
        b = np.concatenate([common, rng.integers(0, 2**63, size=10, dtype=np.uint64)])
        errors.append(float((hasher.signature(a) == hasher.signature(b)).mean()) - 30 / 50)
        assert np.array_equal(hasher.signature(a), again.signature(a))
    assert abs(float(np.mean(errors))) < 0.02 and float(np.std(errors)) < 0.09
    shingles = shingle_hashes(normalise_words(TEMPLATE), 3)
    assert len(shingles) == len(normalise_words(TEMPLATE)) - 2
    assert hasher.band_hashes(hasher.signature(shingles)) == again.band_hashes(again.signature(shingles))


def test_an_unreachable_store_makes_the_batch_abstain_instead_of_failing() -> None:
    p = FloodPlugin(parse_settings({}), FloodOptions(), store=BrokenStore())
    out = p.evaluate([Post(id="1", text=TEMPLATE), Post(id="2", text="too short")])
    assert [s[0].reason for s in out] == ["state_unavailable", "too_short"]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"similarity": 1.5}, "similarity"),
        ({"min_cluster": 1}, "min_cluster"),
        ({"num_perm": 60, "bands": 16}, "num_perm"),
        ({"chain": "yes"}, "chain"),
        ({"state": "mysql://db"}, "state"),
    ],
)
def test_bad_options_fail_at_start(options: dict[str, Any], field: str) -> None:
    with pytest.raises(PluginError, match=field):
        plugin(**options)
