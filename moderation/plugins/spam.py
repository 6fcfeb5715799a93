"""The spam plugin: cheap per-post heuristics whose features a moderator can read and check.

Every feature's raw value goes into `details`; each is turned into a strength in [0, 1] and the score is the
weighted sum of the strengths, capped at 1:

    feature          strength                                                        weight
    blocked_domain   1 when any link's host is (a subdomain of) `blocked_domains`      1.00
    shorteners       links to URL shorteners / 2, at most 1                           0.40
    links            max(link density / 0.5, (links - 1) / 4), at most 1              0.30
    repetition       share of repeated word 3-grams / 0.5, at most 1                   0.45
    char_runs        (longest run of one character - 3) / 5, in [0, 1]                 0.15
    shouting         (uppercase share of cased letters - 0.4) / 0.4, in [0, 1]         0.25
    invisible        invisible characters / 3, at most 1                              0.50

Why these weights: no single soft feature reaches the default threshold (0.5) on its own, because each has
innocent uses (one shortened link, a shouted sentence, "noooo"); two of them together usually do. The
exceptions are deliberate: a blocked domain is the operator's own verdict (score 1, and `force_action` block
unless `block_on_blocked_domain` is false), and three or more invisible characters inside ordinary text
are there to slip words past filters, which no human writer does by accident.

Invisible characters that have legitimate uses are not counted: a zero-width joiner or non-joiner next to
anything but ASCII letters and digits (emoji sequences, Indic and Persian scripts), a byte-order mark at the
very start, and left-to-right / right-to-left marks in a text that contains right-to-left script.

Evidence gives the moderator the character spans ([start, end) offsets into the post's text) of each URL
(with its host) and of each counted invisible character (with its code point), so they can be highlighted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, cast

import numpy as np
from pydantic import Field, StrictBool

from moderation.config import Settings
from moderation.plugins.base import Plugin, PluginOptions, SignalDetails, StoredSignal
from moderation.plugins.text import (
    domain_matches,
    domains_pattern,
    find_invisible,
    find_links,
    host_of,
    lower_words,
)
from moderation.posts import Post
from moderation.signals import Action, Signal

log = logging.getLogger(__name__)

LABEL_SPAM = "spam"
LABEL_CLEAN = "clean"

WEIGHTS: Mapping[str, float] = {
    "blocked_domain": 1.0,
    "shorteners": 0.4,
    "links": 0.3,
    "repetition": 0.45,
    "char_runs": 0.15,
    "shouting": 0.25,
    "invisible": 0.5,
}

SHORTENERS = frozenset(
    {
        "bit.ly",
        "bitly.com",
        "tinyurl.com",
        "t.co",
        "goo.gl",
        "ow.ly",
        "is.gd",
        "v.gd",
        "buff.ly",
        "rebrand.ly",
        "cutt.ly",
        "shorturl.at",
        "tiny.cc",
        "rb.gy",
        "t.ly",
        "bl.ink",
        "s.id",
        "soo.gd",
        "clck.ru",
        "shorte.st",
        "adf.ly",
        "lnkd.in",
        "db.tt",
        "qr.ae",
        "trib.al",
        "tr.im",
        "x.co",
        "u.to",
    }
)

# Shouting is only judged on posts with at least this many cased letters: "OK" or "LOL" is not shouting.
MIN_CASED_LETTERS = 20
# Repetition is only judged with at least this many word 3-grams (six words).
MIN_TRIGRAMS = 4

_CHAR_RUN = re.compile(r"([^\s\d])\1{3,}", re.IGNORECASE)


def _mask(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """The text with the spans blanked out, so that URLs do not count as words, letters or repetition."""
    if not spans:
        return text
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


_ASCII_LETTER = re.compile(r"[A-Za-z]")
# The ASCII bytes a character run can be made of: not \s (as str.isspace, \x1c-\x1f included), not \d.
_COUNTED = np.array([b < 128 and not (chr(b).isspace() or chr(b).isdigit()) for b in range(256)], dtype=np.bool_)
# bytes.translate with these deletes everything but the upper (lower) case ASCII letters: counting them then
# runs in C, ~15x faster than str.isupper per character, which matters on every post of the stream.
_ALL_BUT_UPPER = bytes(b for b in range(256) if not 0x41 <= b <= 0x5A)
_ALL_BUT_LOWER = bytes(b for b in range(256) if not 0x61 <= b <= 0x7A)


def _has_letter(text: str) -> bool:
    if text.isascii():  # the common case; for ASCII, str.isalpha is exactly [A-Za-z]
        return _ASCII_LETTER.search(text) is not None
    return any(map(str.isalpha, text))


def _case_counts(text: str) -> tuple[int, int]:
    """(upper-case letters, cased letters): str.isupper / str.islower counts, with a fast path for ASCII."""
    if text.isascii():
        raw = text.encode("ascii")
        upper = len(raw.translate(None, _ALL_BUT_UPPER))
        return upper, upper + len(raw.translate(None, _ALL_BUT_LOWER))
    upper = sum(map(str.isupper, text))
    return upper, upper + sum(map(str.islower, text))


def _longest_char_run(text: str) -> int:
    """The longest run of 4+ identical characters (case ignored; not spaces or digits), else 0."""
    if text.isascii():
        # Most posts have no four equal bytes in a row at all: a vectorised check spares them the regex, which
        # tries a backreference at every position.
        b = np.frombuffer(text.lower().encode("ascii"), dtype=np.uint8)
        # A run the pattern counts: four equal bytes that are neither blank nor a digit. Indentation and
        # numbers ("    ", "1000") would otherwise send ordinary posts to the regex.
        same = (b[1:] == b[:-1]) & _COUNTED[b[1:]]
        if not (same[:-2] & same[1:-1] & same[2:]).any():
            return 0
    return max((len(m.group()) for m in _CHAR_RUN.finditer(text)), default=0)


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))


def _hosts(domains: Iterable[str]) -> frozenset[str]:
    return frozenset(h for h in (host_of(d) for d in domains) if h)


class SpamOptions(PluginOptions):
    # Score at or above which the post is labelled spam (a finding).
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    # Links to these domains (or their subdomains) score 1 and, with block_on_blocked_domain, force block.
    blocked_domains: tuple[str, ...] = ()
    block_on_blocked_domain: StrictBool = True
    # Added to the built-in list of URL shorteners.
    extra_shorteners: tuple[str, ...] = ()


class SpamDetails(SignalDetails):
    """Each feature's raw value (the module docstring says how each becomes a strength)."""

    url_count: int
    token_count: int
    link_density: float
    shortener_links: int
    blocked_domain_links: int
    repeated_trigram_ratio: float
    longest_char_run: int
    uppercase_ratio: float
    cased_letters: int
    invisible_chars: int


class SpamPlugin(Plugin):
    name: ClassVar[str] = "spam"
    version: ClassVar[str] = "1.0"
    Options: ClassVar[type[PluginOptions]] = SpamOptions
    Details: ClassVar[type[SignalDetails]] = SpamDetails
    labels: ClassVar[dict[str, bool]] = {LABEL_SPAM: True, LABEL_CLEAN: False}
    default_weight: ClassVar[float] = 0.7
    default_cap: ClassVar[float] = 0.7

    def __init__(self, settings: Settings, options: PluginOptions) -> None:
        super().__init__(settings, options)
        opts = cast(SpamOptions, options)
        self.threshold = opts.threshold
        self.blocked_domains = _hosts(opts.blocked_domains)
        self.shorteners = SHORTENERS | _hosts(opts.extra_shorteners)
        self.block_on_blocked_domain = opts.block_on_blocked_domain
        self._configured = domains_pattern(self.blocked_domains | (self.shorteners - SHORTENERS))

    def evaluate(self, posts: Sequence[Post]) -> list[list[Signal]]:
        out = []
        for post in posts:
            try:
                signal = self.score_text(post.text)
            except Exception:  # one post the heuristics trip over abstains; the batch goes on
                log.exception("spam: could not score post %r", post.id)
                signal = self.abstain("error")
            out.append([signal])
        return out

    def score_text(self, text: str) -> Signal:
        links = find_links(text, self._configured)
        prose = _mask(text, [(link.start, link.end) for link in links])
        if not links and not _has_letter(prose):
            return self.abstain("empty")

        tokens = len(text.split())
        shortened = [link for link in links if domain_matches(link.host, self.shorteners)]
        blocked = [link for link in links if domain_matches(link.host, self.blocked_domains)]
        words = lower_words(prose)
        trigrams = len(words) - 2
        repeated = (
            1.0 - len(set(zip(words, words[1:], words[2:], strict=False))) / trigrams
            if trigrams >= MIN_TRIGRAMS
            else 0.0
        )
        longest_run = _longest_char_run(prose)
        upper, cased = _case_counts(prose)
        upper_ratio = upper / cased if cased else 0.0
        invisible = find_invisible(text)
        density = len(links) / max(1, tokens)

        strengths = {
            "blocked_domain": 1.0 if blocked else 0.0,
            "shorteners": _clamp(len(shortened) / 2),
            "links": _clamp(max(density / 0.5, (len(links) - 1) / 4)) if links else 0.0,
            "repetition": _clamp(repeated / 0.5),
            "char_runs": _clamp((longest_run - 3) / 5),
            "shouting": _clamp((upper_ratio - 0.4) / 0.4) if cased >= MIN_CASED_LETTERS else 0.0,
            "invisible": _clamp(len(invisible) / 3),
        }
        score = round(min(1.0, sum(WEIGHTS[k] * v for k, v in strengths.items())), 4)
        details = SpamDetails(
            url_count=len(links),
            token_count=tokens,
            link_density=round(density, 4),
            shortener_links=len(shortened),
            blocked_domain_links=len(blocked),
            repeated_trigram_ratio=round(repeated, 4),
            longest_char_run=longest_run,
            uppercase_ratio=round(upper_ratio, 4),
            cased_letters=cased,
            invisible_chars=len(invisible),
        )
        evidence: dict[str, Any] = {}
        if links:
            evidence["urls"] = [[link.start, link.end, link.host] for link in links]
        if invisible:
            evidence["invisible"] = [[i, i + 1, f"U+{ord(text[i]):04X}"] for i in invisible]
        if blocked:
            evidence["blocked_domains"] = sorted({link.host for link in blocked})
        return self.signal(
            score=score,
            label=LABEL_SPAM if score >= self.threshold else LABEL_CLEAN,
            details=details,
            evidence=evidence,
            force_action=Action.BLOCK if blocked and self.block_on_blocked_domain else None,
        )

    @classmethod
    def explain(cls, signal: StoredSignal) -> str:
        d = signal.details
        if signal.abstained or not isinstance(d, SpamDetails):
            return super().explain(signal)
        parts = []
        if d.url_count:
            parts.append(f"{d.url_count} link(s)")
        if d.shortener_links:
            parts.append(f"{d.shortener_links} shortened link(s)")
        if d.blocked_domain_links:
            hosts = ", ".join(signal.evidence.get("blocked_domains", [])) or "listed domains"
            parts.append(f"{d.blocked_domain_links} link(s) to blocked domains ({hosts})")
        if d.repeated_trigram_ratio > 0.3:
            parts.append(f"{d.repeated_trigram_ratio:.0%} of its word triples repeat")
        if d.longest_char_run > 3:
            parts.append(f"a run of {d.longest_char_run} identical characters")
        if d.uppercase_ratio > 0.6 and d.cased_letters >= MIN_CASED_LETTERS:
            parts.append(f"{d.uppercase_ratio:.0%} capital letters")
        if d.invisible_chars:
            parts.append(f"{d.invisible_chars} invisible character(s)")
        found = "; ".join(parts) if parts else "nothing typical of spam"
        return f"Spam score {signal.score or 0:.2f} ({signal.label}): {found}."
