"""JSON for PostgreSQL's JSONB columns and the verdict topic, in one pass.

JSONB refuses NaN and infinities, so they are stored as null (a detector's z-score can be NaN for a post
with nothing to score). orjson writes them as null by itself and is several times faster than the standard
library, which matters: every post stores four signals with two JSON documents each, and the worker encoded
each document twice (once to check it, once to store it). What orjson refuses (an integer beyond 64 bits in
a post's metadata, a lone surrogate) takes the standard library's path, with the same NaN rule, so the
database decides as before.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

# Non-string keys (an int key in a plugin's details) become strings, as the standard library does.
_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps_bytes(value: Any) -> bytes:
    """Compact JSON, UTF-8, with NaN and infinities as null."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(_cleaned(value), separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )


def dumps_text(value: Any) -> str:
    """dumps_bytes as text: the engine's serializer for JSONB binds."""
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(_cleaned(value), separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def _cleaned(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _cleaned(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_cleaned(v) for v in value]
    return value
