"""`moderation serve`: the review API and web page (docs/review.md)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve the review API and web page", description=__doc__)
    p.add_argument("--config", help="config file (for [review] settings)")
    p.add_argument("--host", help="default: [review].host (127.0.0.1)")
    p.add_argument("--port", type=int, help="default: [review].port (8000)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from moderation.config import load_settings
    from moderation.endpoints import Endpoints
    from moderation.review import auth
    from moderation.review.app import create_app
    from moderation.review.settings import review_settings
    from moderation.storage.database import make_engine

    settings = load_settings(args.config)
    review = review_settings(settings.review)
    db = make_engine(Endpoints.from_env().database_url, settings.storage.pool_size)
    with db.begin() as conn:  # sessions that ended while the service was down
        auth.purge_sessions(conn, review.session_idle_minutes)
    uvicorn.run(
        create_app(db, review),
        host=args.host or review.host,
        port=args.port or review.port,
        log_level="info",
        proxy_headers=bool(review.forwarded_allow_ips),
        forwarded_allow_ips=review.forwarded_allow_ips or None,
    )
    return 0
