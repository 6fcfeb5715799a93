"""`moderation verdicts`: stored verdicts, newest first, as a table or JSON lines.

Each post appears once, at its current revision (an edited post was moderated again); `--history` lists
every revision's verdict, the superseded ones marked."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from moderation.errors import ConfigError
from moderation.signals import Action


def parse_since(raw: str, now: datetime | None = None) -> datetime:
    """An ISO-8601 time, or a span back from now: '15m', '2h', '7d'."""
    now = now or datetime.now(UTC)
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if raw and raw[-1] in units and raw[:-1].isdigit():
        return now - timedelta(**{units[raw[-1]]: int(raw[:-1])})
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since must be an ISO-8601 time or a span like 15m, 2h, 7d; got {raw!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("verdicts", help="query stored verdicts", description=__doc__)
    p.add_argument("--tenant")
    p.add_argument("--action", choices=[a.value for a in Action])
    p.add_argument("--author")
    p.add_argument(
        "--review-state",
        choices=["pending", "escalated", "decided", "none"],
        help="pending: waiting for a moderator; decided: a moderator's decision stands; none: never queued",
    )
    p.add_argument("--since", type=str, help="ISO-8601 time or a span back from now (15m, 2h, 7d)")
    p.add_argument("--limit", type=int, default=100, help="at most this many (0: no limit; default 100)")
    p.add_argument("--format", choices=["table", "jsonl"], default="table")
    p.add_argument("--history", action="store_true", help="every revision's verdict, not only each post's current one")
    p.set_defaults(func=run)


def _table(rows: list[dict[str, Any]]) -> str:
    header = ("decided_at", "tenant", "id", "rev", "author", "action", "review", "score", "signals")
    lines = [header]
    for r in rows:
        sig = ", ".join(f"{s['plugin']}:{'abstained' if s.get('abstained') else s.get('label')}" for s in r["signals"])
        lines.append(
            (
                r["decided_at"][:19],
                r["tenant"],
                r["id"],
                str(r["revision"]) + ("" if r["current"] else " (old)"),
                r["author"] or "-",
                r["action"],
                r["review_state"] if r["effective_action"] == r["action"] else f"decided:{r['effective_action']}",
                f"{r['score']:.3f}",
                sig,
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line[:-1], widths, strict=True)) + "  " + str(line[-1])
        for line in lines
    )


def run(args: argparse.Namespace) -> int:
    from moderation.endpoints import Endpoints
    from moderation.storage.database import make_engine
    from moderation.storage.queries import VerdictFilter, verdict_rows

    flt = VerdictFilter(
        tenant=args.tenant,
        action=args.action,
        author=args.author,
        review_state=args.review_state,
        since=parse_since(args.since) if args.since else None,
        limit=args.limit or None,
        history=args.history,
    )
    engine = make_engine(Endpoints.from_env().database_url, 1)
    try:
        with engine.connect() as conn:
            rows = verdict_rows(conn, flt)
    finally:
        engine.dispose()
    if args.format == "jsonl":
        for r in rows:
            sys.stdout.write(json.dumps(r) + "\n")
    else:
        print(_table(rows))
    return 0
