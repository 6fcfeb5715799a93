"""A review database for the API and browser tests: flagged and clean posts in two tenants, users with
roles, an API token each. Posts are moderated by the real engine, so the evidence is real."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine

from moderation.config import default_config_path, parse_settings
from moderation.endpoints import DEFAULT_DATABASE_URL
from moderation.engine import Engine as ModerationEngine
from moderation.posts import Post
from moderation.review import auth
from moderation.storage import migrate
from moderation.storage.database import create_database_if_missing, drop_database, make_engine
from moderation.storage.writes import store_batch
from moderation.testing.synthetic import human_posts, watermarked_post

PASSWORD = "correct horse battery"
# Post ids a platform may well send, each of which breaks a URL unless escaped (tenant acme, author "odd").
ODD_IDS = ("odd?x=1", "odd#top", "odd%41", "odd/../wm0")
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
    # The demo config with the order-independent plugins only: flood and rate keep shared state across
    # posts (Redis in workers), which the review tests do not need; the watermark evidence is what they use.
    data = tomllib.loads(default_config_path().read_text(encoding="utf-8"))
    data["plugins"]["enabled"] = ["watermark", "spam"]
    settings = parse_settings(data, "demo.toml (watermark, spam)")
    scheme = settings.watermark.schemes[0]
    posts = []
    for tenant in ("acme", "globex"):
        posts += [
            Post(id=f"wm{i}", text=watermarked_post(120, scheme, seed=50 + i), tenant=tenant, author="writer")
            for i in range(4)
        ]
        posts += [Post(id=f"h{i}", text=t, tenant=tenant, author="human") for i, t in enumerate(human_posts(3, seed=8))]
    posts += [
        Post(id=odd, text=watermarked_post(120, scheme, seed=70 + i), tenant="acme", author="odd")
        for i, odd in enumerate(ODD_IDS)
    ]
    verdicts = ModerationEngine(settings).moderate(posts)
    if sum(v.action.value == "review" for v in verdicts) != 8 + len(ODD_IDS):
        raise AssertionError(f"expected the watermarked posts in review, got {[v.action.value for v in verdicts]}")
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


@contextlib.contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yields its base URL. A real server,
    not the test client: it decodes paths once, as browsers expect, and runs one event loop."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("review server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
