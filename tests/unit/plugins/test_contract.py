"""Every built-in plugin honours the contract the registry enforces, on posts that make each one abstain as
well as decide: the engine checks every signal, so a violation here would fail a worker's batch."""

from __future__ import annotations

from moderation.config import default_config_path, load_settings
from moderation.engine import Engine
from moderation.posts import Post
from moderation.testing.synthetic import human_posts


def test_built_in_plugins_pass_the_contract_whether_they_decide_or_abstain() -> None:
    settings = load_settings(default_config_path())  # the demo: watermark, spam, flood, rate
    engine = Engine(settings)
    posts = [
        Post(id="short", text="ok", author="a"),  # watermark and flood abstain (too short)
        Post(id="empty", text="   ", author="a"),  # spam abstains (empty)
        Post(id="anon", text="no author on this one at all, which the rate plugin needs", author=None),
        Post(id="links", text="FREE STUFF at https://bit.ly/x1 and https://tinyurl.com/y2 NOW", author="b"),
        *(Post(id=f"h{i}", text=t, author=f"u{i}") for i, t in enumerate(human_posts(20, seed=3))),
    ]
    verdicts = engine.moderate(posts)  # raises PluginError on any contract breach
    by_id = {v.post_id: v for v in verdicts}
    reasons = {(s.plugin, s.reason) for v in verdicts for s in v.signals if s.abstained}
    assert {("watermark", "too_short"), ("flood", "too_short"), ("spam", "empty"), ("rate", "no_author")} <= reasons
    assert {s.plugin for s in by_id["h0"].signals} == {"watermark", "spam", "flood", "rate"}
