"""Finding links and invisible characters in a post: shared by the plugins that look at them (spam, flood).

Which characters are invisible is decided once, in `moderation.charclasses` (Unicode's own data, shared
with the watermark normalizer); `find_invisible` adds only the exemptions for legitimate uses.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from moderation.charclasses import is_invisible

# URLs, and bare domains ("bit.ly/x", "example.com"): those only with a TLD from this list, so that
# "e.g." or "file.txt" are not taken for one.
_TLDS = (
    "com|net|org|info|biz|io|co|ly|gl|gd|me|xyz|top|ru|cn|uk|de|us|tk|ml|ga|cf|gq|cc|ws|link|click|site|online|"
    "shop|store|live|app|dev|at|in|id|to|tv|su|pw|ae|im|st|ink|win|bid|loan|vip|club|icu|buzz|fun|today"
)
URL = re.compile(
    r"(?:https?://|www\.)[^\s<>\"'`]+"
    rf"|(?<![\w@.-])(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:{_TLDS})(?![\w-])(?:[/?#][^\s<>\"'`]*)?",
    re.IGNORECASE,
)
_TRAILING = ".,;:!?'\")]}>"

# Every URL match contains "://", "www." (any case) or a dot before a listed TLD. Checking for those is an
# order of magnitude cheaper than trying the full pattern at every position (Python's re finds no literal
# prefix to skip to), and most posts have none, so they skip the full pattern.
_DOT_TLD = re.compile(rf"\.(?:{_TLDS})(?![\w-])", re.IGNORECASE)


def may_contain_url(text: str) -> bool:
    """False only when URL cannot match anywhere in the text. ("w" and "W" are the only characters "w" matches
    when case is ignored, so lower() finds every "www."; the TLD check is the full pattern's own TLD part.)"""
    return "://" in text or "www." in text.lower() or _DOT_TLD.search(text) is not None


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


@dataclass(frozen=True)
class DomainPattern:
    """Bare mentions of some domains (and their subdomains), whatever their TLD: an operator's blocked
    "evil.example" must be found even though ".example" is not in the bare-domain TLD list. `hint` finds
    the names alone, which every match contains, cheaply enough to spare most posts the full pattern."""

    hint: re.Pattern[str]
    full: re.Pattern[str]

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        return self.full.finditer(text) if self.hint.search(text) else iter(())


def domains_pattern(domains: Iterable[str]) -> DomainPattern | None:
    listed = sorted({d for d in domains if d}, key=len, reverse=True)
    if not listed:
        return None
    names = "|".join(re.escape(d) for d in listed)
    return DomainPattern(
        hint=re.compile(rf"(?:{names})(?![\w-])", re.IGNORECASE),
        full=re.compile(
            rf"(?<![\w@.-])(?:[a-z0-9-]+\.)*(?:{names})(?![\w-])(?:[/?#][^\s<>\"'`]*)?",
            re.IGNORECASE,
        ),
    )


def find_links(text: str, extra: DomainPattern | None = None) -> list[Link]:
    """Every URL or bare domain in the text (and every match of `extra`), in order, trailing sentence punctuation
    excluded from its span."""
    spans = [m.span() for m in URL.finditer(text)] if may_contain_url(text) else []
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


_JOINERS = frozenset("\u200c\u200d")  # zero-width non-joiner / joiner
_DIRECTION_MARKS = frozenset("\u200e\u200f\u061c")  # LRM, RLM, ALM
_BLACK_FLAG = "\U0001f3f4"  # subdivision flags are this, then tag characters, then CANCEL TAG


def _is_variation_selector(ch: str) -> bool:
    o = ord(ch)
    return 0xFE00 <= o <= 0xFE0F or 0xE0100 <= o <= 0xE01EF or 0x180B <= o <= 0x180D or o == 0x180F


def _is_tag(ch: str) -> bool:
    return 0xE0000 <= ord(ch) <= 0xE007F


def find_invisible(text: str) -> list[int]:
    """Offsets of the invisible characters that count as evasion. Exempt, because writers use them:
    a byte-order mark at the very start; a zero-width joiner or non-joiner next to anything but ASCII letters
    and digits (emoji sequences, Indic and Persian scripts); a variation selector after a non-ASCII character
    (emoji presentation, ideographic variants); tag characters of a subdivision flag; direction marks in a
    text that contains right-to-left script."""
    if text.isascii():
        return []
    found = []
    rtl: bool | None = None
    for i, ch in enumerate(text):
        if ch.isascii() or not is_invisible(ch):
            continue
        before, after = text[i - 1 : i], text[i + 1 : i + 2]
        if ch == "\ufeff" and i == 0:
            continue
        if ch in _JOINERS and not (before.isascii() and before.isalnum() and after.isascii() and after.isalnum()):
            continue
        if _is_variation_selector(ch) and before and not before.isascii():
            continue
        if _is_tag(ch) and before and (before == _BLACK_FLAG or _is_tag(before)):
            continue
        if ch in _DIRECTION_MARKS:
            if rtl is None:
                rtl = any(unicodedata.bidirectional(c) in ("R", "AL") for c in text)
            if rtl:
                continue
        found.append(i)
    return found


WORD = re.compile(r"[^\W_]+")  # a word: a run of letters and digits, in any script
# In ASCII, WORD's words are what is left after blanking everything that is not a letter or digit.
_ASCII_NON_WORD_TO_SPACE = {i: " " for i in range(128) if not chr(i).isalnum()}


def lower_words(text: str) -> list[str]:
    """WORD's words of the lower-cased text. For ASCII text (most posts), blanking and splitting gives the same
    list three times faster than the pattern (43 -> 16 us for a 150-word post)."""
    if text.isascii():
        return text.lower().translate(_ASCII_NON_WORD_TO_SPACE).split()
    return WORD.findall(text.lower())
