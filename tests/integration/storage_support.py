"""What the storage, edit, fault and outbox tests share: a fresh migrated database per test, and a worker
Runtime (the real moderation engine) pointed at it, so workers/processing.py runs exactly as in a worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from moderation.config import Settings, default_config_path, load_settings
from moderation.endpoints import DEFAULT_DATABASE_URL, Endpoints
from moderation.engine import Engine as ModerationEngine
from moderation.storage import migrate
from moderation.storage.database import create_database_if_missing, drop_database, make_engine
from workers.runtime import Runtime


@pytest.fixture
def database_url() -> Iterator[str]:
    url = DEFAULT_DATABASE_URL.rsplit("/", 1)[0] + f"/moderation_test_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(url)
    yield url
    drop_database(url)


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    migrate.upgrade(database_url)
    engine = make_engine(database_url, 2)
    yield engine
    engine.dispose()


@cache
def settings(tmp: str = "/tmp") -> Settings:
    """The demo config with the watermark plugin alone: its verdicts do not depend on the order of posts."""
    text = (
        default_config_path()
        .read_text(encoding="utf-8")
        .replace('enabled = ["watermark", "spam", "flood", "rate"]', 'enabled = ["watermark"]')
    )
    path = Path(tmp) / f"moderation-storage-tests-{uuid.uuid4().hex[:8]}.toml"
    path.write_text(text, encoding="utf-8")
    try:
        return load_settings(path)
    finally:
        path.unlink()


@cache
def moderation_engine() -> ModerationEngine:
    return ModerationEngine(settings())


def runtime_for(db: Engine) -> Runtime:
    return Runtime(settings=settings(), endpoints=Endpoints.from_env(), engine=moderation_engine(), db=db)


def post(i: int | str, text: str, offset: int | None = None, tenant: str = "acme", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"p{i}",
        "tenant": tenant,
        "author": "author-1",
        "text": text,
        "created_at": "2026-11-23T10:00:00+00:00",
        **extra,
    }
    if offset is not None:
        body["_source"] = ["posts", 0, offset]
    return body


def batch(batch_id: str, *posts: dict[str, Any]) -> dict[str, Any]:
    return {"v": 1, "batch_id": batch_id, "posts": list(posts)}
