from __future__ import annotations

from datetime import UTC, datetime, timedelta

from moderation.config import Settings, parse_settings
from moderation.posts import Post

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def settings() -> Settings:
    return parse_settings({})


def post(i: int | str, text: str, author: str | None = "a", tenant: str = "t", seconds: float = 0) -> Post:
    return Post(id=str(i), text=text, tenant=tenant, author=author, created_at=T0 + timedelta(seconds=seconds))
