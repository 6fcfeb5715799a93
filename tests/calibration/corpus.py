"""Human posts for calibrating the detector's false-positive rate: real text that Debian packages ship.

Uniformly random words satisfy the binomial test's independence assumption by construction and so prove
nothing. Human text repeats itself: man pages list commands, prototypes and options; songs have
choruses; people paste tables of contents, chants and copypasta. Every post here is made of such text:

- prose: the Linux man pages (Debian `manpages`, `manpages-dev`: sections 2, 3, 5 and 7), roff stripped,
  cut into consecutive posts; they carry synopses, option lists, code and shell sessions;
- command listings: `ls -l`-style listings of the man page files, and the pages' SYNOPSIS sections
  (prototype after prototype) run together;
- numbered lists: numbered tables of contents built from the pages' NAME lines;
- lyrics with choruses: songs and poems of Debian's `fortunes` (songs-poems), verses with a chorus
  (the song's first lines) sung after each;
- chants: a short line of a song repeated, or two lines in call and response;
- copypasta: a fortune pasted over and over, verbatim or with a changing header line.

Every post has at least 300 tokens of the bundled BERT tokenizer. The set depends only on those packages'
files (fixed by their versions), never on what else the machine has installed. Nothing is downloaded or
installed here: `make calibration-deps` installs the packages (part of `make test`).
"""

from __future__ import annotations

import functools
import gzip
import random
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from moderation.config import BUNDLED_TOKENIZER
from moderation.watermark.tokenization import load_tokenizer

MAN_ROOT = Path("/usr/share/man")
MAN_SECTIONS = ("man2", "man3", "man5", "man7")
FORTUNES = Path("/usr/share/games/fortunes")
MIN_TOKENS = 300
MAX_TOKENS = 700


@dataclass(frozen=True)
class Post:
    kind: str
    text: str


def missing_sources() -> list[str]:
    """What this machine lacks to build the corpus (the Debian packages to install), empty when complete."""
    missing = []
    if not all((MAN_ROOT / s).is_dir() and any((MAN_ROOT / s).glob("*.gz")) for s in MAN_SECTIONS):
        missing.append("manpages manpages-dev")
    if not (FORTUNES / "songs-poems").is_file():
        missing.append("fortunes")
    return missing


# -- roff to text ----------------------------------------------------------------------------------

_ALTERNATING = {"BI", "BR", "IB", "IR", "RB", "RI"}
_INLINE = {"B", "I", "SM", "SB", "TP", "IP", "TQ", "UR", "MT", "SH", "SS"}
_BREAKS = {"PP", "P", "LP", "sp", "br", "TP", "IP", "EX", "EE", "nf", "fi", "RS", "RE", "SH", "SS"}
_GLYPHS = {"em": "-", "en": "-", "bu": "*", "aq": "'", "dq": '"', "lq": '"', "rq": '"', "co": "(c)", "ti": "~"}


def _macro_args(rest: str) -> list[str]:
    try:
        return shlex.split(rest, posix=True)
    except ValueError:
        return rest.replace('"', "").split()


def _plain(text: str) -> str:
    """roff escapes (fonts, glyphs, strings) out of a line of text."""
    text = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", text)
    text = re.sub(r"\\\((..)", lambda g: _GLYPHS.get(g.group(1), " "), text)
    text = re.sub(r"\\\[(\w+)\]", lambda g: _GLYPHS.get(g.group(1), " "), text)
    text = re.sub(r"\\[*n]\(?\w{1,2}", "", text)
    for escape, plain in (
        ("\\-", "-"),
        ("\\e", "\\"),
        ("\\&", ""),
        ("\\ ", " "),
        ("\\|", ""),
        ("\\^", ""),
        ("\\~", " "),
    ):
        text = text.replace(escape, plain)
    return text


def roff_to_text(source: str) -> dict[str, str]:
    """A man page's sections (NAME, SYNOPSIS, ...) as plain text, line breaks kept."""
    sections: dict[str, list[str]] = {}
    current = "PREAMBLE"
    for raw in source.splitlines():
        if raw.startswith(('.\\"', "'\\\"", ".TH", ".IX", ".so", ".ds", ".de", ".if", ".ie", ".el", ".\\}")):
            continue
        line = _plain(raw)
        if line.startswith("."):
            m = re.match(r"\.\s*([A-Za-z]+)\s*(.*)", line)
            if not m:
                continue
            macro, rest = m.groups()
            if macro == "SH":
                current = " ".join(_macro_args(rest)).upper()
                continue
            if macro in _BREAKS:
                sections.setdefault(current, []).append("")
            if macro in _ALTERNATING:
                sections.setdefault(current, []).append("".join(_macro_args(rest)))
            elif macro in _INLINE and rest:
                args = _macro_args(rest)
                # .IP and .TP take a tag and an indent: keep the tag only
                sections.setdefault(current, []).append(args[0] if macro in ("IP", "TP") else " ".join(args))
            continue
        sections.setdefault(current, []).append(line)
    out = {}
    for name, lines in sections.items():
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        if text:
            out[name] = text
    return out


@functools.cache
def man_pages() -> list[tuple[str, dict[str, str]]]:
    """(file name, sections) of every man page of the sections used, in a fixed order (links and pages
    identical to an earlier one skipped: a repeated post would be a repeated trial, not a new one)."""
    pages = []
    seen: set[str] = set()
    for section in MAN_SECTIONS:
        for path in sorted((MAN_ROOT / section).glob("*.gz")):
            source = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
            if source.lstrip().startswith(".so "):
                continue  # an alias of another page
            sections = roff_to_text(source)
            body = "\n".join(v for k, v in sections.items() if k != "NAME")
            if body in seen:
                continue
            seen.add(body)
            pages.append((path.name, sections))
    return pages


@functools.cache
def fortunes(name: str) -> list[str]:
    return [f.strip("\n") for f in (FORTUNES / name).read_text(encoding="utf-8", errors="replace").split("\n%\n")]


# -- posts -----------------------------------------------------------------------------------------


def _tokens(text: str) -> int:
    return len(load_tokenizer(BUNDLED_TOKENIZER).encode(text, add_special_tokens=False).ids)


def _fill(pieces: Iterator[str], sep: str = "\n") -> Iterator[str]:
    """Join consecutive pieces until a post has MIN_TOKENS tokens; cut it near MAX_TOKENS."""
    text, count = "", 0
    for piece in pieces:
        text = f"{text}{sep}{piece}" if text else piece
        count += _tokens(piece) + 1
        if count >= MIN_TOKENS + 20:
            while count > MAX_TOKENS and "\n" in text:
                text = text.rsplit("\n", 1)[0]
                count = _tokens(text)
            yield text
            text, count = "", 0


def man_prose(limit: int) -> list[Post]:
    """Consecutive stretches of man pages: descriptions, option lists, examples, code."""

    def paragraphs() -> Iterator[str]:
        for _, sections in man_pages():
            for name, text in sections.items():
                if name in ("PREAMBLE", "COLOPHON"):
                    continue
                yield from (p for p in text.split("\n\n") if p.strip())

    posts = []
    for text in _fill(paragraphs()):
        posts.append(Post("man page prose", text))
        if len(posts) >= limit:
            break
    return posts


def command_listings(limit: int) -> list[Post]:
    """`ls -l` listings of the man page files, and SYNOPSIS sections (prototypes, #includes) run together."""
    posts: list[Post] = []
    rows = []
    for section in MAN_SECTIONS:
        for path in sorted((MAN_ROOT / section).glob("*.gz")):
            size = path.stat().st_size
            rows.append(f"-rw-r--r-- 1 root root {size:>6} Feb  5  2023 {path.name}")
    listings = [Post("command listing", f"$ ls -l\n{text}") for text in _fill(iter(rows))]
    synopses = [
        Post("command listing", text) for text in _fill(s["SYNOPSIS"] for _, s in man_pages() if "SYNOPSIS" in s)
    ]
    rng = random.Random(1)
    rng.shuffle(listings)
    rng.shuffle(synopses)
    for a, b in zip(listings, synopses, strict=False):
        posts += [a, b]
    return posts[:limit]


def numbered_lists(limit: int) -> list[Post]:
    """Numbered tables of contents: "12. printf(3) - formatted output conversion"."""
    entries = []
    for file_name, sections in man_pages():
        name = " ".join(sections.get("NAME", "").split())
        if name:
            page, section = file_name.removesuffix(".gz").rsplit(".", 1)
            entries.append(f"{page}({section}): {name}")
    posts: list[Post] = []
    start = 0
    while len(posts) < limit and start < len(entries):
        lines = []
        for k, entry in enumerate(entries[start:], 1):
            lines.append(f"{k}. {entry}")
            if k >= 10 and _tokens("\n".join(lines)) >= MIN_TOKENS + 20:
                break
        start += len(lines)
        posts.append(Post("numbered list", "\n".join(lines)))
    return [p for p in posts if _tokens(p.text) >= MIN_TOKENS]


def _songs() -> list[list[str]]:
    """songs-poems entries of at least 8 lines, attribution lines dropped."""
    songs = []
    for entry in fortunes("songs-poems"):
        lines = [ln.strip() for ln in entry.splitlines() if ln.strip() and not ln.strip().startswith("--")]
        if len(lines) >= 8:
            songs.append(lines)
    return songs


def lyrics(limit: int) -> list[Post]:
    """A song: its first lines are the chorus, sung after every verse of four lines; when a song runs out of
    verses before the post is long enough, the next song's lines continue it (a medley)."""
    songs = _songs()
    rng = random.Random(2)
    posts: list[Post] = []
    for i in range(limit):
        lines = songs[i % len(songs)]
        chorus = "\n".join(lines[: rng.choice((2, 3, 4))])
        verses = lines[2:] + songs[(i + 1) % len(songs)] + songs[(i + 2) % len(songs)]
        parts = []
        for v in range(0, len(verses), 4):
            parts += ["\n".join(verses[v : v + 4]), f"(Chorus)\n{chorus}"]
            if _tokens("\n\n".join(parts)) >= MIN_TOKENS + 20:
                break
        posts.append(Post("lyrics with chorus", "\n\n".join(parts)))
    return [p for p in posts if _tokens(p.text) >= MIN_TOKENS]


def chants(limit: int) -> list[Post]:
    """A short line of a song shouted over and over, or two in call and response."""
    short = [ln for song in _songs() for ln in song if 3 <= len(ln.split()) <= 8]
    rng = random.Random(3)
    posts: list[Post] = []
    while len(posts) < limit:
        call = rng.choice(short)
        response = rng.choice(short) if rng.random() < 0.5 else None
        unit = f"{call}\n{response}" if response else call
        text = unit
        while _tokens(text) < MIN_TOKENS:
            text += ("\n" if rng.random() < 0.7 else "!\n") + unit
        posts.append(Post("chant", text))
    return posts


def copypasta(limit: int) -> list[Post]:
    """A fortune pasted until the post is long, verbatim or under a changing header line."""
    pool = [
        f
        for name in ("fortunes", "humorists", "computers", "linux", "literature", "wisdom", "people", "work")
        if (FORTUNES / name).is_file()
        for f in fortunes(name)
        if 40 <= len(f.split()) <= 150
    ]
    rng = random.Random(4)
    rng.shuffle(pool)
    posts: list[Post] = []
    for pasta in pool[:limit]:
        headed = rng.random() < 0.5
        copies: list[str] = []
        while _tokens("\n\n".join(copies)) < MIN_TOKENS:
            head = f"copy #{len(copies) + 1}, pass it on:\n" if headed else ""
            copies.append(head + pasta)
        posts.append(Post("copypasta", "\n\n".join(copies)))
    return posts


# How many posts of each kind: 1,100 in all, 40% of them repetitive.
MIX = {
    man_prose: 660,
    command_listings: 150,
    numbered_lists: 70,
    lyrics: 110,
    chants: 40,
    copypasta: 70,
}


@functools.cache
def calibration_posts() -> tuple[Post, ...]:
    posts: list[Post] = []
    for make, count in MIX.items():
        posts += make(count)
    # Each text once: the same text under the same key is the same trial.
    posts = list({p.text: p for p in posts}.values())
    short = [p.kind for p in posts if _tokens(p.text) < MIN_TOKENS]
    if short:
        raise AssertionError(f"{len(short)} posts under {MIN_TOKENS} tokens: {sorted(set(short))}")
    return tuple(posts)
