"""A review database for the API and browser tests: flagged and clean posts in two tenants, users with
roles, an API token each. Posts are moderated by the real engine, so the evidence is real."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from sqlalchemy import Engine

from moderation.config import load_settings
from moderation.endpoints import DEFAULT_DATABASE_URL
from moderation.engine import Engine as ModerationEngine
from moderation.posts import Post
from moderation.review import auth
from moderation.storage import migrate
from moderation.storage.database import create_database_if_missing, drop_database, make_engine
from moderation.storage.writes import store_batch
from moderation.testing.synthetic import human_posts, watermarked_post

PASSWORD = "correct horse battery"
USERS = {  # username: {tenant: role}
    "alice": {"acme": "moderator"},
    "carol": {"acme": "moderator"},
    "vic": {"acme": "viewer"},
    "ada": {"acme": "admin"},
    "bob": {"globex": "moderator"},
}


@contextlib.contextmanager
def review_database() -> Iterator[tuple[Engine, dict[str, str]]]:
    url = DEFAULT_DATABASE_URL.rsplit("/", 1)[0] + f"/moderation_review_{uuid.uuid4().hex[:8]}"
    create_database_if_missing(url)
    migrate.upgrade(url)
    db = make_engine(url, 4)
    settings = load_settings()
    scheme = settings.watermark.schemes[0]
    posts = []
    for tenant in ("acme", "globex"):
        posts += [
            Post(id=f"wm{i}", text=watermarked_post(120, scheme, seed=50 + i), tenant=tenant, author="writer")
            for i in range(4)
        ]
        posts += [Post(id=f"h{i}", text=t, tenant=tenant, author="human") for i, t in enumerate(human_posts(3, seed=8))]
    verdicts = ModerationEngine(settings).moderate(posts)
    if sum(v.action.value == "review" for v in verdicts) != 8:
        raise AssertionError(f"expected the 8 watermarked posts in review, got {[v.action.value for v in verdicts]}")
    tokens = {}
    with db.begin() as conn:
        store_batch(conn, posts, verdicts)
        for name, roles in USERS.items():
            auth.create_user(conn, name, PASSWORD)
            for tenant, role in roles.items():
                auth.grant(conn, name, tenant, role)
            tokens[name] = auth.create_token(conn, name, "tests")
    try:
        yield db, tokens
    finally:
        db.dispose()
        drop_database(url)
