"""`moderation users`: manage moderators — accounts, roles per tenant (viewer, moderator, admin), API tokens.

Passwords are read from a prompt or stdin (never from the command line, where `ps` would show them);
a new API token is printed once and stored only hashed. `tokens` lists a user's tokens (never the
secret), `revoke-token` ends one or all; disabling a user or setting a new password ends all of them and
every session. `purge-sessions` deletes ended sessions (each login does it too).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("users", help="manage moderators, roles and API tokens", description=__doc__)
    us = p.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = us.add_parser("add", help="create a user (password from a prompt, or stdin with --password-stdin)")
    add.add_argument("username")
    add.add_argument("--password-stdin", action="store_true")
    grant = us.add_parser("grant", help="give a user a role in a tenant")
    grant.add_argument("username")
    grant.add_argument("tenant")
    grant.add_argument("role", choices=["viewer", "moderator", "admin"])
    revoke = us.add_parser("revoke", help="remove a user's role in a tenant")
    revoke.add_argument("username")
    revoke.add_argument("tenant")
    token = us.add_parser("token", help="create an API token (printed once)")
    token.add_argument("username")
    token.add_argument("--name", default="cli")
    token.add_argument("--expires-days", type=float, help="the token stops working after this many days")
    tokens = us.add_parser("tokens", help="list a user's API tokens: id, name, dates, state (no secrets)")
    tokens.add_argument("username")
    end = us.add_parser("revoke-token", help="revoke one API token of a user (by id, see `tokens`) or --all")
    end.add_argument("username")
    end.add_argument("token_id", type=int, nargs="?")
    end.add_argument("--all", action="store_true")
    purge = us.add_parser("purge-sessions", help="delete expired sessions and those idle too long")
    purge.add_argument("--idle-minutes", type=float, default=30.0, help="[review] session_idle_minutes (30)")
    evidence = us.add_parser("evidence", help="per-token evidence read per account, tenant and day (newest first)")
    evidence.add_argument("--days", type=int, default=7)
    for name in ("disable", "enable"):
        us.add_parser(name, help=f"{name} a user (disabling ends their sessions and tokens)").add_argument("username")
    pw = us.add_parser("password", help="set a new password (ends the user's sessions and tokens)")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true")
    us.add_parser("list", help="users and their roles")
    p.set_defaults(func=run)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("moderation: the passwords differ")
    return first


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%dT%H:%M") if value is not None else "-"


def run(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from moderation.endpoints import Endpoints
    from moderation.errors import AuthError
    from moderation.review import auth
    from moderation.storage.database import make_engine
    from moderation.storage.models import EvidenceReadRow, MembershipRow, UserRow

    engine = make_engine(Endpoints.from_env().database_url, 1)
    cmd = args.users_command
    try:
        with engine.begin() as conn:
            if cmd == "add":
                auth.create_user(conn, args.username, _password(args))
                print(f"created {args.username}; give them a role: moderation users grant {args.username} TENANT ROLE")
            elif cmd == "grant":
                auth.grant(conn, args.username, args.tenant, args.role)
                print(f"{args.username} is {args.role} in {args.tenant}")
            elif cmd == "revoke":
                auth.revoke(conn, args.username, args.tenant)
            elif cmd == "token":
                print(auth.create_token(conn, args.username, args.name, args.expires_days))
            elif cmd == "tokens":
                print(f"{'ID':>6} {'NAME':<20} {'CREATED':<16} {'LAST_USED':<16} {'EXPIRES':<16} STATE")
                for t in auth.list_tokens(conn, args.username):
                    print(
                        f"{t.id:>6} {t.name:<20} {_when(t.created_at):<16} {_when(t.last_used_at):<16}"
                        f" {_when(t.expires_at):<16} {t.state}"
                    )
            elif cmd == "revoke-token":
                if (args.token_id is None) == (not args.all):
                    raise AuthError("name one token id, or --all")
                done = auth.revoke_tokens(conn, args.username, None if args.all else args.token_id)
                print(f"revoked {done} token(s) of {args.username}")
            elif cmd == "purge-sessions":
                print(f"purged {auth.purge_sessions(conn, args.idle_minutes)} session(s)")
            elif cmd == "evidence":
                rows = conn.execute(
                    select(
                        UserRow.username,
                        EvidenceReadRow.tenant,
                        EvidenceReadRow.day,
                        EvidenceReadRow.posts,
                        EvidenceReadRow.tokens,
                    )
                    .join(UserRow, UserRow.id == EvidenceReadRow.user_id)
                    .where(EvidenceReadRow.day > func.current_date() - args.days)
                    .order_by(EvidenceReadRow.day.desc(), EvidenceReadRow.posts.desc())
                ).all()
                print(f"{'DAY':<10} {'USER':<20} {'TENANT':<20} {'POSTS':>7} {'TOKENS':>9}")
                for r in rows:
                    print(f"{r.day.isoformat():<10} {r.username:<20} {r.tenant:<20} {r.posts:>7} {r.tokens:>9}")
            elif cmd in ("disable", "enable"):
                auth.set_disabled(conn, args.username, cmd == "disable")
            elif cmd == "password":
                auth.set_password(conn, args.username, _password(args))
            elif cmd == "list":
                users = conn.execute(
                    select(UserRow.id, UserRow.username, UserRow.disabled).order_by(UserRow.username)
                ).all()
                for u in users:
                    roles = conn.execute(
                        select(MembershipRow.tenant, MembershipRow.role).where(MembershipRow.user_id == u.id)
                    ).all()
                    shown = ", ".join(f"{t}:{r}" for t, r in roles) or "(no roles)"
                    print(f"{u.username}{' (disabled)' if u.disabled else ''}  {shown}")
    except AuthError as exc:
        print(f"moderation: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0
