"""Each signal's numbers in plain words, for moderators who are not statisticians."""

from __future__ import annotations

from typing import Any


def _p(p: float | None) -> str:
    if p is None:
        return "unknown"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def explain(signal: dict[str, Any]) -> str:
    plugin = signal.get("plugin")
    if signal.get("abstained"):
        if plugin == "watermark" and signal.get("reason") == "too_short":
            return (
                f"Too short to test for a watermark: {signal.get('num_tokens_scored', 0)} tokens could be scored. "
                "This is not evidence that a person wrote it."
            )
        return f"No opinion ({signal.get('reason') or 'abstained'})."
    if plugin == "watermark":
        scored, green = signal.get("num_tokens_scored") or 0, signal.get("num_green_tokens") or 0
        share = f"{green / scored:.0%}" if scored else "-"
        verdict = (
            f"That matches the watermark of scheme {signal.get('scheme')!r}"
            if signal.get("watermarked")
            else "That is consistent with text written without this watermark"
        )
        where = ""
        window = signal.get("window")
        if signal.get("watermarked") and window and signal.get("form"):
            where = f" The strongest evidence is the highlighted passage (characters {window.get('start_char')}–{window.get('end_char')})."
        return (
            f"{green} of {scored} scored tokens ({share}) are on the key's green list "
            "(by chance, about the scheme's green-list ratio would be). "
            f"Human text this green happens with probability {_p(signal.get('p_value'))} "
            f"(z = {signal.get('z_score', 0) or 0:.1f}; after accounting for every test made: "
            f"{_p(signal.get('p_value_adjusted'))}, target {signal.get('alpha')}). {verdict}.{where} "
            "A watermark shows the text came from that model, not who posted it: anyone can paste such text."
        )
    if plugin == "spam":
        parts = []
        if signal.get("urls"):
            parts.append(f"{signal['urls']} link(s)")
        if signal.get("shorteners"):
            parts.append(f"{signal['shorteners']} shortened link(s)")
        if signal.get("blocked_domains"):
            parts.append(f"links to blocked domains {', '.join(signal['blocked_domains'])}")
        if (signal.get("repeated_trigram_share") or 0) > 0.3:
            parts.append(f"{signal['repeated_trigram_share']:.0%} of its word triples repeat")
        if (signal.get("uppercase_share") or 0) > 0.6:
            parts.append(f"{signal['uppercase_share']:.0%} capital letters")
        if signal.get("invisible_chars"):
            parts.append(f"{signal['invisible_chars']} invisible character(s)")
        found = "; ".join(parts) if parts else "nothing typical of spam"
        return f"Spam score {signal.get('score') or 0:.2f} ({signal.get('label')}): {found}."
    if plugin == "flood":
        size, authors = signal.get("cluster_size", 1), signal.get("distinct_authors", 1)
        if size <= 1:
            return "No near-identical post in the recent window."
        return (
            f"One of {size} near-identical posts (similarity up to {signal.get('max_similarity', 0):.0%}) from "
            f"{authors} author(s) in the recent window: {'a coordinated flood' if signal.get('label') == 'flood' else 'a near-duplicate'}."
        )
    if plugin == "rate":
        return (
            f"The author posted {signal.get('posts_in_window')} time(s) within {signal.get('window_seconds')} s "
            f"(limit {signal.get('max_posts')})."
        )
    return f"{plugin}: score {signal.get('score')}, label {signal.get('label')}."
