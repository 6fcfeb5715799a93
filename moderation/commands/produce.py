"""`moderation produce`: send JSON-lines posts to the input topic as they are (the consumer validates them)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import IO, Any

from moderation.errors import ConfigError


def message_key(line: bytes) -> bytes | None:
    """tenant/author: one author's posts stay in one partition, in order (the rate plugin relies on it)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("author"), str):
        return f"{obj.get('tenant', '')}/{obj['author']}".encode()
    return None


def add_parser(sub: Any) -> None:
    p = sub.add_parser("produce", help="send JSON-lines posts to the input topic", description=__doc__)
    p.add_argument("--config", help="config file (for the topic name)")
    p.add_argument("--input", help="JSON-lines file (default: stdin)")
    p.add_argument("--topic", help="default: [pipeline].input_topic")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moderation.config import load_settings
    from moderation.endpoints import Endpoints
    from moderation.kafka_io import make_producer

    settings = load_settings(args.config)
    topic = args.topic or settings.pipeline.input_topic
    producer = make_producer(Endpoints.from_env())
    sent = 0
    with contextlib.ExitStack() as stack:
        try:
            source: IO[bytes] = stack.enter_context(open(args.input, "rb")) if args.input else sys.stdin.buffer
        except OSError as exc:
            raise ConfigError(f"cannot read input file {args.input!r}: {exc.strerror}") from None
        for raw in source:
            line = raw.rstrip(b"\r\n")
            if line.strip():
                producer.send(topic, line, key=message_key(line))
                sent += 1
    producer.flush()
    producer.close()
    print(f"sent {sent} messages to {topic}", file=sys.stderr)
    return 0
