"""`moderation scan`: moderate JSON-lines posts from a file or stdin, one JSON line out per line in."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

from moderation.config import load_settings
from moderation.engine import Engine
from moderation.errors import ConfigError, InvalidPost
from moderation.posts import DEFAULT_MAX_TEXT_CHARS, Post, post_from_json


def add_parser(sub: Any) -> None:
    p = sub.add_parser("scan", help="moderate JSON-lines posts (stdin/stdout by default)", description=__doc__)
    p.add_argument("--config", help="config file (default: $MODERATION_CONFIG, else the bundled demo config)")
    p.add_argument("--input", help="JSON-lines file of {id, text, tenant?, author?} (default: stdin)")
    p.add_argument("--output", help="where to write results (default: stdout)")
    p.add_argument("--max-text-chars", type=int, default=DEFAULT_MAX_TEXT_CHARS, help="longer texts get an error line")
    p.set_defaults(func=run)


def _parse(lines: Iterable[bytes], max_chars: int) -> Iterator[tuple[int, Post | dict[str, Any]]]:
    """(line number, Post or error line) for every input line; blank lines are skipped."""
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield (
                number,
                {
                    "line": number,
                    "error": {"reason": "invalid_utf8", "detail": f"byte {exc.start} is not UTF-8"},
                },
            )
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, {"line": number, "error": {"reason": "invalid_json", "detail": exc.msg}}
            continue
        try:
            yield number, post_from_json(obj, max_text_chars=max_chars)
        except InvalidPost as exc:
            error: dict[str, Any] = {"line": number, "error": {"reason": exc.reason, "detail": exc.detail}}
            if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                error["id"] = obj["id"]
            yield number, error


def scan(lines: Iterable[bytes], out: IO[str], engine: Engine, batch_size: int, max_chars: int) -> tuple[int, int]:
    """Moderate `lines` in batches, writing results in input order. Returns (posts, error lines)."""
    pending: list[tuple[int, Post | dict[str, Any]]] = []
    posts = errors = 0

    def flush() -> None:
        nonlocal posts, errors
        batch = [item for _, item in pending if isinstance(item, Post)]
        verdicts = iter(engine.moderate(batch)) if batch else iter(())
        for _, item in pending:
            if isinstance(item, Post):
                out.write(json.dumps(next(verdicts).to_json()) + "\n")
                posts += 1
            else:
                out.write(json.dumps(item) + "\n")
                errors += 1
        pending.clear()

    for entry in _parse(lines, max_chars):
        pending.append(entry)
        if len(pending) >= batch_size:
            flush()
    flush()
    return posts, errors


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    engine = Engine(settings)
    # The engine's long-lived objects (tokenizer, vocabularies, compiled kernels) are never garbage; moved
    # out of the collector's sight, they are not traversed again by every full collection of the scan.
    gc.freeze()
    with contextlib.ExitStack() as stack:
        try:
            source: IO[bytes] = stack.enter_context(open(args.input, "rb")) if args.input else sys.stdin.buffer
        except OSError as exc:
            raise ConfigError(f"cannot read input file {args.input!r}: {exc.strerror}") from None
        try:
            sink: IO[str] = stack.enter_context(open(args.output, "w", encoding="utf-8")) if args.output else sys.stdout
        except OSError as exc:
            raise ConfigError(f"cannot write output file {args.output!r}: {exc.strerror}") from None
        posts, errors = scan(source, sink, engine, settings.detector.batch_size, args.max_text_chars)
    print(f"scanned {posts} posts, {errors} error lines", file=sys.stderr)
    return 0
