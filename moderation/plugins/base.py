"""The plugin contract.

A plugin is a class registered under the entry-point group `moderation.plugins`. It is built once per
process with the whole Settings and its own options table (`[plugins.<name>]`, possibly overridden per
tenant), and then called with batches of posts. For every post it returns a list of Signals (usually
exactly one; the watermark plugin returns one per configured scheme). It must never raise for one bad
post: it abstains for that post instead, with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from moderation.config import Settings
from moderation.posts import Post
from moderation.signals import Signal


@runtime_checkable
class Plugin(Protocol):
    name: ClassVar[str]
    version: ClassVar[str]

    def __init__(self, settings: Settings, options: Mapping[str, Any]) -> None: ...

    def evaluate(self, posts: Sequence[Post]) -> list[list[Signal]]:
        """One list of signals per post, in the order of `posts`."""
        ...
