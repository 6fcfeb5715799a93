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
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from moderation.config import Settings
from moderation.errors import ConfigError
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

# Bare domains ("bit.ly/x", "example.com") are links too, but only with a TLD from this list, so that
# "e.g." or "file.txt" are not taken for one.
_TLDS = (
    "com|net|org|info|biz|io|co|ly|gl|gd|me|xyz|top|ru|cn|uk|de|us|tk|ml|ga|cf|gq|cc|ws|link|click|site|online|"
    "shop|store|live|app|dev|at|in|id|to|tv|su|pw|ae|im|st|ink|win|bid|loan|vip|club|icu|buzz|fun|today"
)
_URL = re.compile(
    r"(?:https?://|www\.)[^\s<>\"'`]+"
    rf"|(?<![\w@.-])(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:{_TLDS})(?![\w-])(?:[/?#][^\s<>\"'`]*)?",
    re.IGNORECASE,
)
_TRAILING = ".,;:!?'\")]}>"
_WORD = re.compile(r"[^\W_]+")
_CHAR_RUN = re.compile(r"([^\s\d])\1{3,}", re.IGNORECASE)

_ALWAYS_INVISIBLE = frozenset(
    "\u00ad\u180e\u200b\u2060\u2061\u2062\u2063\u2064\ufeff"  # soft hyphen, zero-width space, joiners, BOM
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # bidi embeddings, overrides and isolates
)
_JOINERS = frozenset("\u200c\u200d")  # zero-width non-joiner / joiner
_DIRECTION_MARKS = frozenset("\u200e\u200f\u061c")  # LRM, RLM, ALM
_INVISIBLE_CANDIDATES = re.compile(
    "[" + "".join(sorted(_ALWAYS_INVISIBLE | _JOINERS | _DIRECTION_MARKS)) + "]",
)


@dataclass(frozen=True)
class Link:
    start: int
    end: int
    host: str


def host_of(url: str) -> str:
    """The lower-case host of a URL as written in a post ("https://user@www.Bit.ly:80/x" -> "bit.ly")."""
    rest = re.sub(r"^[a-z][a-z0-9+.-]*://", "", url.strip(), flags=re.IGNORECASE)
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rsplit("@", 1)[-1]
    host = host.split(":", 1)[0].lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


def domain_matches(host: str, domains: frozenset[str]) -> bool:
    """Whether `host` is one of `domains` or a subdomain of one (evil.example.com matches example.com)."""
    if host in domains:
        return True
    parts = host.split(".")
    return any(".".join(parts[i:]) in domains for i in range(1, len(parts)))


def domains_pattern(domains: Iterable[str]) -> re.Pattern[str] | None:
    """A pattern for bare mentions of these domains (and their subdomains), whatever their TLD: an operator's
    blocked "evil.example" must be found even though ".example" is not in the bare-domain TLD list."""
    listed = sorted({d for d in domains if d}, key=len, reverse=True)
    if not listed:
        return None
    names = "|".join(re.escape(d) for d in listed)
    return re.compile(
        rf"(?<![\w@.-])(?:[a-z0-9-]+\.)*(?:{names})(?![\w-])(?:[/?#][^\s<>\"'`]*)?",
        re.IGNORECASE,
    )


def find_links(text: str, extra: re.Pattern[str] | None = None) -> list[Link]:
    """Every URL or bare domain in the text (and every match of `extra`), in order, trailing sentence punctuation
    excluded from its span."""
    spans = [m.span() for m in _URL.finditer(text)]
    if extra is not None:
        spans.extend(m.span() for m in extra.finditer(text) if not any(a <= m.start() < b for a, b in spans))
        spans.sort()
    links = []
    for start, end in spans:
        while end > start and text[end - 1] in _TRAILING:
            # Keep a closing parenthesis that closes one inside the URL (Wikipedia-style links).
            if text[end - 1] == ")" and text[start:end].count("(") >= text[start:end].count(")"):
                break
            end -= 1
        host = host_of(text[start:end])
        if host:
            links.append(Link(start, end, host))
    return links


def find_invisible(text: str) -> list[int]:
    """Offsets of the invisible characters that count (see the module docstring for the exemptions)."""
    found = []
    rtl: bool | None = None
    for m in _INVISIBLE_CANDIDATES.finditer(text):
        i, ch = m.start(), m.group()
        if ch == "\ufeff" and i == 0:
            continue
        if ch in _JOINERS:
            before, after = text[i - 1 : i], text[i + 1 : i + 2]
            if not (before.isascii() and before.isalnum() and after.isascii() and after.isalnum()):
                continue
        if ch in _DIRECTION_MARKS:
            if rtl is None:
                rtl = any(unicodedata.bidirectional(c) in ("R", "AL") for c in text)
            if rtl:
                continue
        found.append(i)
    return found


def _mask(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """The text with the spans blanked out, so that URLs do not count as words, letters or repetition."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))


def _domains_option(options: Mapping[str, Any], name: str) -> frozenset[str]:
    value = options.get(name, [])
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise ConfigError(f"plugins.spam.{name}: expected a list of domains, got {type(value).__name__}")
    if not all(isinstance(d, str) for d in value):
        raise ConfigError(f"plugins.spam.{name}: every entry must be a string")
    return frozenset(h for h in (host_of(d) for d in value) if h)


class SpamPlugin:
    """Options (defaults): `threshold` (0.5), `blocked_domains` ([]), `block_on_blocked_domain` (true),
    `extra_shorteners` ([], added to the built-in list)."""

    name: ClassVar[str] = "spam"
    version: ClassVar[str] = "1.0"

    def __init__(self, settings: Settings, options: Mapping[str, Any]) -> None:
        threshold = options.get("threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            raise ConfigError(f"plugins.spam.threshold: expected a number in [0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        self.blocked_domains = _domains_option(options, "blocked_domains")
        self.shorteners = SHORTENERS | _domains_option(options, "extra_shorteners")
        block = options.get("block_on_blocked_domain", True)
        if not isinstance(block, bool):
            raise ConfigError(f"plugins.spam.block_on_blocked_domain: expected true or false, got {block!r}")
        self.block_on_blocked_domain = block
        self._configured = domains_pattern(self.blocked_domains | (self.shorteners - SHORTENERS))

    def evaluate(self, posts: Sequence[Post]) -> list[list[Signal]]:
        out = []
        for post in posts:
            try:
                signal = self.score_text(post.text)
            except Exception:  # one post the heuristics trip over abstains; the batch goes on
                log.exception("spam: could not score post %r", post.id)
                signal = self._abstain("error")
            out.append([signal])
        return out

    def _abstain(self, reason: str) -> Signal:
        return Signal(plugin=self.name, version=self.version, score=None, abstained=True, reason=reason)

    def score_text(self, text: str) -> Signal:
        links = find_links(text, self._configured)
        prose = _mask(text, ((link.start, link.end) for link in links))
        if not links and not any(c.isalpha() for c in prose):
            return self._abstain("empty")

        tokens = len(text.split())
        shortened = [link for link in links if domain_matches(link.host, self.shorteners)]
        blocked = [link for link in links if domain_matches(link.host, self.blocked_domains)]
        words = _WORD.findall(prose.lower())
        trigrams = list(zip(words, words[1:], words[2:], strict=False))
        repeated = 1.0 - len(set(trigrams)) / len(trigrams) if len(trigrams) >= MIN_TRIGRAMS else 0.0
        longest_run = max((len(m.group()) for m in _CHAR_RUN.finditer(prose)), default=0)
        # map() over str methods: ~3x faster than a generator per character on long posts.
        upper = sum(map(str.isupper, prose))
        cased = upper + sum(map(str.islower, prose))
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
        details: dict[str, Any] = {
            "url_count": len(links),
            "token_count": tokens,
            "link_density": round(density, 4),
            "shortener_links": len(shortened),
            "blocked_domain_links": len(blocked),
            "repeated_trigram_ratio": round(repeated, 4),
            "longest_char_run": longest_run,
            "uppercase_ratio": round(upper_ratio, 4),
            "cased_letters": cased,
            "invisible_chars": len(invisible),
        }
        evidence: dict[str, Any] = {}
        if links:
            evidence["urls"] = [[link.start, link.end, link.host] for link in links]
        if invisible:
            evidence["invisible"] = [[i, i + 1, f"U+{ord(text[i]):04X}"] for i in invisible]
        if blocked:
            evidence["blocked_domains"] = sorted({link.host for link in blocked})
        return Signal(
            plugin=self.name,
            version=self.version,
            score=score,
            label=LABEL_SPAM if score >= self.threshold else LABEL_CLEAN,
            details=details,
            evidence=evidence,
            force_action=Action.BLOCK if blocked and self.block_on_blocked_domain else None,
        )
