"""Shared pieces of the benchmarks: posts that share no passages, the reference detector, memory readings."""

from __future__ import annotations

import argparse
import platform
import resource
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from sqlalchemy import Engine

from moderation.config import Settings, WatermarkScheme, parse_settings
from moderation.endpoints import DEFAULT_DATABASE_URL
from moderation.storage import migrate
from moderation.storage.database import create_database_if_missing, drop_database, make_engine
from moderation.testing.synthetic import stdlib_prose
from moderation.testing.tokenizers import TOKENIZER_KINDS, tokenizer_spec


def distinct_posts(n: int, words: int = 150, offset: int = 0) -> list[str]:
    """n posts cut from consecutive, non-overlapping stretches of human prose: no two share a passage, so no
    cache can get credit for repeated text. ~150 words is ~200 BERT tokens."""
    all_words = stdlib_prose(max_chars=20_000_000).split()
    need = (offset + n) * words
    if need > len(all_words):
        raise ValueError(
            f"only {len(all_words) // words} distinct posts of {words} words available, asked {offset + n}"
        )
    return [" ".join(all_words[(offset + i) * words : (offset + i + 1) * words]) for i in range(n)]


@contextmanager
def scratch_database(pool_size: int = 1) -> Iterator[Engine]:
    """A fresh database on the local PostgreSQL, migrated, dropped on the way out (also after an error)."""
    url = DEFAULT_DATABASE_URL.rsplit("/", 1)[0] + f"/moderation_bench_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(url)
    try:
        migrate.upgrade(url)
        db = make_engine(url, pool_size)
        try:
            yield db
        finally:
            db.dispose()
    finally:
        drop_database(url)


def add_tokenizer_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokenizer",
        choices=TOKENIZER_KINDS,
        default="bundled",
        help="bundled: BERT WordPiece (30,522 ids); mistral: Mistral 7B's SentencePiece BPE (32,000 ids); "
        "bytebpe: a GPT-2-style byte-level BPE trained on prose (32,000 ids). Built offline, cached in a temp folder.",
    )


def scheme_fields(tokenizer_kind: str) -> dict[str, Any]:
    """The scheme fields that name a tokenizer kind and its vocabulary size."""
    from moderation.watermark.tokenization import tokenizer_vocab_size

    spec = tokenizer_spec(tokenizer_kind)
    return {"tokenizer": spec, "vocab_size": tokenizer_vocab_size(spec)}


def demo_config_over(tokenizer_kind: str, config_text: str | None = None) -> str:
    """The demo config (or `config_text`) with its scheme moved onto a tokenizer kind that watermarking models
    use; unchanged for "bundled"."""
    from moderation.config import default_config_path

    if config_text is None:
        config_text = default_config_path().read_text(encoding="utf-8")
    if tokenizer_kind == "bundled":
        return config_text
    fields = scheme_fields(tokenizer_kind)
    config_text = config_text.replace('tokenizer = "bundled:all-minilm-l6-v2"', f"tokenizer = {fields['tokenizer']!r}")
    return config_text.replace("vocab_size = 30522", f"vocab_size = {fields['vocab_size']}")


def settings_for(seeding_scheme: str, **fields: Any) -> Settings:
    scheme = {"name": seeding_scheme, "vocab_size": 30522, "seeding_scheme": seeding_scheme, **fields}
    return parse_settings({"detector": {"device": "cpu"}, "watermark": {"schemes": [scheme]}})


def reference_detector(scheme: WatermarkScheme) -> Callable[[np.ndarray], Any]:
    """transformers' own WatermarkDetector for this scheme; called one post at a time (ragged posts cannot
    share its batch without padding being scored)."""
    from transformers import LlamaConfig, WatermarkDetector, WatermarkingConfig

    config = LlamaConfig(vocab_size=scheme.vocab_size, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    wm = WatermarkingConfig(
        greenlist_ratio=scheme.greenlist_ratio,
        bias=scheme.bias,
        hashing_key=scheme.key,
        seeding_scheme=scheme.seeding_scheme,
        context_width=scheme.effective_context_width,
    )
    detector = WatermarkDetector(config, "cpu", wm, ignore_repeated_ngrams=scheme.repeat_counting != "all")

    def detect(ids: np.ndarray) -> Any:
        return detector(torch.from_numpy(ids).unsqueeze(0), return_dict=True)  # type: ignore[arg-type]

    return detect


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """(seconds, result) of fn(*args, **kwargs)."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def peak_rss_mib(children: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024  # Linux reports KiB


def machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, Python {platform.python_version()}"


def table(rows: Sequence[Sequence[Any]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
