"""Cut a post's text into segments for the page: green tokens highlighted, the detected passage marked."""

from __future__ import annotations

import itertools
from typing import Any


def segments(text: str, watermark_signal: dict[str, Any] | None) -> list[dict[str, Any]]:
    """[{"text", "green", "scored", "passage"}] covering `text` in order (the template escapes the text)."""
    if not watermark_signal:
        return [{"text": text, "green": False, "scored": False, "passage": False}]
    tokens = watermark_signal.get("evidence", {}).get("tokens", [])
    window = watermark_signal.get("window") or {}
    w_start, w_end = window.get("start_char"), window.get("end_char")
    cuts = {0, len(text)}
    for start, end, _green, _counted in tokens:
        cuts.update((max(0, min(len(text), start)), max(0, min(len(text), end))))
    if w_start is not None and w_end is not None:
        cuts.update((max(0, min(len(text), w_start)), max(0, min(len(text), w_end))))
    bounds = sorted(cuts)
    # Which token covers each cut point: tokens do not overlap, so one lookup per segment start.
    token_of: list[tuple[int, int, bool, bool]] = sorted((int(s), int(e), bool(g), bool(c)) for s, e, g, c in tokens)
    out: list[dict[str, Any]] = []
    ti = 0
    for a, b in itertools.pairwise(bounds):
        while ti < len(token_of) and token_of[ti][1] <= a:
            ti += 1
        inside = ti < len(token_of) and token_of[ti][0] <= a < token_of[ti][1]
        green, counted = (token_of[ti][2], token_of[ti][3]) if inside else (False, False)
        passage = w_start is not None and w_end is not None and w_start <= a < w_end
        out.append({"text": text[a:b], "green": green and counted, "scored": inside, "passage": passage})
    return out


def passages(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs of segments inside / outside the detected passage, so the page draws ONE box around it."""
    runs: list[dict[str, Any]] = []
    for part in parts:
        if not runs or runs[-1]["passage"] != part["passage"]:
            runs.append({"passage": part["passage"], "parts": []})
        runs[-1]["parts"].append(part)
    return runs
