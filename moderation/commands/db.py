"""`moderation db`: create, migrate and prune the PostgreSQL database ($MODERATION_DATABASE_URL)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("db", help="create, migrate (Alembic) and prune the database", description=__doc__)
    p.add_argument("--config", help="config file (for [storage] settings)")
    dbsub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dbsub.add_parser("create", help="create the database if it does not exist")
    up = dbsub.add_parser(
        "upgrade", help="create the database if needed and migrate it (default: to the newest revision)"
    )
    up.add_argument("revision", nargs="?", default="head")
    down = dbsub.add_parser("downgrade", help="migrate down to REVISION ('base' removes every table)")
    down.add_argument("revision")
    dbsub.add_parser("current", help="print the database's revision")
    prune = dbsub.add_parser("prune", help="erase post texts older than [storage].retention_days")
    prune.add_argument("--days", type=int, help="override the retention period")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moderation.endpoints import Endpoints, redacted
    from moderation.storage import migrate
    from moderation.storage.database import create_database_if_missing

    url = Endpoints.from_env().database_url
    if args.db_command == "create":
        made = create_database_if_missing(url)
        print(f"{'created' if made else 'exists'}: {redacted(url)}")
    elif args.db_command == "upgrade":
        create_database_if_missing(url)
        migrate.upgrade(url, args.revision)
        print(f"at revision {migrate.current_revision(url)}")
    elif args.db_command == "downgrade":
        migrate.downgrade(url, args.revision)
        print(f"at revision {migrate.current_revision(url)}")
    elif args.db_command == "current":
        print(migrate.current_revision(url) or "(empty database)")
    elif args.db_command == "prune":
        from moderation.config import load_settings
        from moderation.storage.database import make_engine
        from moderation.storage.retention import erase_old_texts, prune_delivery

        days = args.days or load_settings(args.config).storage.retention_days
        engine = make_engine(url, 1)
        try:
            with engine.begin() as conn:
                erased = erase_old_texts(conn, days)
                pruned = prune_delivery(conn)
        finally:
            engine.dispose()
        print(f"erased the text of {erased} posts older than {days} days; {pruned} delivery rows pruned")
    return 0
