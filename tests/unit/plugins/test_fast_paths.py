"""The plugins' fast paths must give exactly what the plain definitions give, on any text an attacker can send.

Each fast path skips work when a cheap check says there is nothing to find (no URL, no run of characters) or
takes an ASCII-only shortcut. A shortcut that disagreed with the full check would be a free bypass (a link
the spam plugin does not see) or a false signal, so each is compared with its plain definition on generated
text. The alphabets come from Python's own `re` and Unicode data, not from the shortcuts: every character
that `re.IGNORECASE` matches to an ASCII letter (the long s, the Kelvin sign, dotted and dotless i ...), the
characters around URLs, Unicode spaces, digits from other scripts.
"""

from __future__ import annotations

import re
import sys

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moderation.plugins.flood import (
    MinHasher,
    batch_shingle_hashes,
    mix64,
    normalise_words,
    shingle_hashes,
    word_hashes,
)
from moderation.plugins.spam import _CHAR_RUN, _case_counts, _has_letter, _longest_char_run
from moderation.plugins.state import key_part
from moderation.plugins.text import URL, domains_pattern, lower_words, may_contain_url


def _case_folds_to_ascii() -> str:
    """Every code point that re.IGNORECASE matches to an ASCII letter, found by asking re itself."""
    letter = re.compile("[a-z]", re.IGNORECASE)
    return "".join(chr(c) for c in range(128, sys.maxunicode + 1) if letter.fullmatch(chr(c)))


FOLDS = _case_folds_to_ascii()
URLISH = st.sampled_from(
    [
        "http://",
        "https://",
        "HTTPS://",
        "www.",
        "WwW.",
        ".com",
        ".CoM",
        ".ly",
        ".io/",
        "bit.ly/x",
        "example.org",
        "evil.example",
        "ſhop",
        ".ſt",
        "@",
        "-",
        "/",
        "?",
        "#",
        ":",
        ".",
        "..",
        "e.g.",
        "os.path",
        "a.b",
    ]
)
PIECES = st.one_of(
    URLISH,
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCXYZ0123456789", min_size=1, max_size=8),
    st.text(alphabet=FOLDS, min_size=1, max_size=3),
    st.sampled_from([" ", "\n", "\u00a0", "\u2003", "\u3000", "\t"]),
    st.text(min_size=1, max_size=3),  # anything at all
)
TEXT = st.lists(PIECES, max_size=30).map("".join)


def test_the_alphabet_really_holds_non_ascii_letters_that_match_ascii_ones() -> None:
    assert {"\u017f", "\u212a", "\u0130", "\u0131"} <= set(FOLDS)  # long s, Kelvin sign, dotted/dotless i


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
def test_the_url_prefilter_never_hides_a_url(text: str) -> None:
    if URL.search(text):
        assert may_contain_url(text)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_the_configured_domains_prefilter_never_hides_a_mention(text: str) -> None:
    pattern = domains_pattern(["evil.example", "bit.ly", "shop.example"])
    assert pattern is not None
    assert [m.span() for m in pattern.finditer(text)] == [m.span() for m in pattern.full.finditer(text)]


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_spam_ascii_shortcuts_agree_with_the_plain_definitions(text: str) -> None:
    upper = sum(map(str.isupper, text))
    assert _case_counts(text) == (upper, upper + sum(map(str.islower, text)))
    assert _has_letter(text) == any(c.isalpha() for c in text)
    assert _longest_char_run(text) == max((len(m.group()) for m in _CHAR_RUN.finditer(text)), default=0)


# Text made of runs: each piece is one character repeated 1-6 times, from every ASCII character (blanks,
# digits, \x1c-\x1f, letters of both cases) and a few others.
RUNS = st.lists(
    st.tuples(st.sampled_from([chr(c) for c in range(128)] + ["\u00e9", "\u00c9", "\u212a"]), st.integers(1, 6)),
    max_size=12,
).map(lambda runs: "".join(c * n for c, n in runs))


@settings(max_examples=400, deadline=None)
@given(st.one_of(RUNS, st.text(alphabet="aAbB-! 0\u00e9\u00c9\t\x1c\x1f\x0b7", max_size=40)))
def test_character_runs_ignore_case_like_the_pattern(text: str) -> None:
    """Runs of blanks (\\s, including \\x1c-\\x1f) and digits do not count, whatever the prefilter skips."""
    assert _longest_char_run(text) == max((len(m.group()) for m in _CHAR_RUN.finditer(text)), default=0)


def _reference_word_hash(word: str) -> int:
    """The documented word hash, written out the slow way: polynomial in the UTF-8 bytes modulo 2**64, mixed
    with the length; a word of ASCII digits only is the word "0"."""
    if word.isascii() and word.isdigit():
        word = "0"
    h = 0
    for byte in word.encode("utf-8", "surrogatepass"):
        h = (h * 0x9E3779B97F4A7C15 + byte) % 2**64
    return int(mix64(np.array([h ^ len(word.encode("utf-8", "surrogatepass"))], dtype=np.uint64))[0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters=" "), min_size=1, max_size=12), max_size=20))
def test_word_hashes_are_the_documented_hash_wherever_the_word_stands(words: list[str]) -> None:
    hashes, starts = word_hashes(" ".join(words).encode("utf-8", "surrogatepass"))
    assert [int(h) for h in hashes] == [_reference_word_hash(w) for w in words]
    again, _ = word_hashes(("   " + "  ".join(words) + " ").encode("utf-8", "surrogatepass"))  # spacing does not matter
    assert np.array_equal(hashes, again)
    assert len(starts) == len(words)


@settings(max_examples=100, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=8))
def test_a_batch_gives_each_post_what_it_gets_alone(texts: list[str]) -> None:
    words = [normalise_words(t) for t in texts]
    shingles, bounds = batch_shingle_hashes(words, 3)
    hasher = MinHasher(64, 16, seed=1)
    signatures = hasher.signatures(shingles, bounds, chunk=7)  # a tiny chunk: posts span several chunks
    for i, post_words in enumerate(words):
        alone = shingle_hashes(post_words, 3)
        assert np.array_equal(shingles[bounds[i] : bounds[i + 1]], alone)
        if alone.shape[0]:
            assert np.array_equal(signatures[i], hasher.signature(alone))


@settings(max_examples=400, deadline=None)
@given(st.one_of(TEXT.filter(str.isascii), st.text(alphabet=st.characters(max_codepoint=127), max_size=60)))
def test_ascii_words_are_the_patterns_words(text: str) -> None:
    """ASCII text is split by blanking what is not a letter or digit; the plain definition is the word pattern
    (`[^\\W_]+`, so underscores and control characters separate words) after URLs become one word."""
    plain = re.findall(r"[^\W_]+", URL.sub(" xurlx ", text).lower())
    assert normalise_words(text) == plain
    assert lower_words(text) == re.findall(r"[^\W_]+", text.lower())


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="abcXYZ019_.~-:/%"), TEXT))
def test_state_key_parts_are_percent_encoding(value: str) -> None:
    """Names that need no encoding skip urllib's quote (flood's and rate's keys); any other must be encoded
    exactly as quote does, or a post id holding ":" could name another tenant's key."""
    from urllib.parse import quote

    assert key_part(value) == quote(value, safe="")
