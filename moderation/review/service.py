"""The review queue, leases and decisions. Every function takes the acting Principal and refuses, with
NotFound, anything outside that principal's tenants — the API and the web page both go through here,
so tenant isolation is enforced in one place.

A post's review state is derived from its append-only events, never stored:
- "pending": the automatic verdict is review or quarantine and no moderator has decided;
- "escalated": the latest decision is escalate (back in the queue, first, for an admin);
- "decided": the latest decision is confirm or overturn; its action outranks the automatic verdict.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from moderation.errors import Conflict, Forbidden, Invalid, NotFound
from moderation.review.auth import Principal
from moderation.review.explain import explain
from moderation.storage.queries import signals_for

QUEUED_ACTIONS = ("review", "quarantine")
FINDINGS = ("watermarked", "spam", "flood", "near_duplicate", "rate_exceeded")
FINAL_ACTIONS = ("allow", "label", "quarantine", "block")


@dataclass(frozen=True)
class QueueFilter:
    tenant: str | None = None
    action: str | None = None
    plugin: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    author: str | None = None
    state: str = "open"  # open (pending + escalated) | pending | escalated | decided | all
    limit: int = 100
    offset: int = 0


# The latest decision per post and a live lease, joined onto verdicts; shared by every read below.
_BASE = """
FROM verdicts v
JOIN posts p ON p.tenant = v.tenant AND p.post_id = v.post_id
LEFT JOIN LATERAL (
    SELECT e.decision, e.action, e.at, e.username FROM review_events e
    WHERE e.tenant = v.tenant AND e.post_id = v.post_id AND e.kind = 'decided'
    ORDER BY e.at DESC, e.id DESC LIMIT 1
) d ON true
LEFT JOIN review_leases l ON l.tenant = v.tenant AND l.post_id = v.post_id AND l.expires_at > now()
LEFT JOIN users lu ON lu.id = l.user_id
"""
_STATE = """CASE WHEN d.decision = 'escalate' THEN 'escalated'
     WHEN d.decision IS NOT NULL THEN 'decided'
     WHEN v.action IN ('review', 'quarantine') THEN 'pending' ELSE 'none' END"""
_COLUMNS = f"""v.id AS verdict_id, v.tenant, v.post_id, v.action, v.score, v.policy_version, v.reasons, v.decided_at,
p.author, p.created_at, p.text, d.decision, d.action AS decided_action, d.at AS decision_at, d.username AS decided_by,
lu.username AS claimed_by, l.expires_at AS lease_expires_at, {_STATE} AS review_state,
COALESCE(d.action, v.action) AS effective_action"""
_PRIORITY = """(CASE WHEN d.decision = 'escalate' THEN 3 WHEN v.action = 'quarantine' THEN 2 ELSE 1 END)"""


def _row(r: Any) -> dict[str, Any]:
    out = dict(r._mapping)
    for key in ("decided_at", "created_at", "decision_at", "lease_expires_at"):
        if out.get(key) is not None:
            out[key] = out[key].isoformat()
    out["id"] = out.pop("post_id")
    return out


def queue(conn: Connection, who: Principal, flt: QueueFilter) -> list[dict[str, Any]]:
    """Posts needing review, by priority (escalated, quarantine, review) then age (oldest first)."""
    tenants = who.tenants()
    if flt.tenant is not None:
        if flt.tenant not in tenants:
            raise NotFound(f"no tenant {flt.tenant!r}")
        tenants = [flt.tenant]
    if not tenants:
        return []
    where = ["v.tenant = ANY(:tenants)"]
    params: dict[str, Any] = {"tenants": tenants, "limit": min(flt.limit, 1000), "offset": flt.offset}
    states = {"open": ("pending", "escalated"), "all": None}.get(flt.state, (flt.state,))
    if states is not None:
        where.append(f"({_STATE}) = ANY(:states)")
        params["states"] = list(states)
    if flt.action:
        where.append("v.action = :action")
        params["action"] = flt.action
    if flt.plugin:
        where.append(
            "EXISTS (SELECT 1 FROM signals s WHERE s.verdict_id = v.id AND s.plugin = :plugin"
            " AND NOT s.abstained AND s.label = ANY(:findings))"
        )
        params.update(plugin=flt.plugin, findings=list(FINDINGS))
    for clause, key, value in (
        ("v.score >= :min_score", "min_score", flt.min_score),
        ("v.score <= :max_score", "max_score", flt.max_score),
        ("v.decided_at >= :since", "since", flt.since),
        ("v.decided_at <= :until", "until", flt.until),
        ("p.author = :author", "author", flt.author),
    ):
        if value is not None:
            where.append(clause)
            params[key] = value
    sql = (
        f"SELECT {_COLUMNS}, {_PRIORITY} AS priority {_BASE} WHERE {' AND '.join(where)}"
        f" ORDER BY priority DESC, v.decided_at ASC, v.id ASC LIMIT :limit OFFSET :offset"
    )
    return [_row(r) for r in conn.execute(text(sql), params)]


def _one(conn: Connection, who: Principal, tenant: str, post_id: str, role: str = "viewer") -> dict[str, Any]:
    if not who.can(tenant, "viewer"):
        raise NotFound(f"no post {post_id!r}")
    row = conn.execute(
        text(f"SELECT {_COLUMNS} {_BASE} WHERE v.tenant = :t AND v.post_id = :p"), {"t": tenant, "p": post_id}
    ).first()
    if row is None:
        raise NotFound(f"no post {post_id!r}")
    if not who.can(tenant, role):
        raise Forbidden(f"this needs the {role} role in tenant {tenant!r}")
    return _row(row)


def post_detail(conn: Connection, who: Principal, tenant: str, post_id: str) -> dict[str, Any]:
    """Everything the post page shows: text, verdict, signals explained with evidence, the author's other
    posts, and the history of events."""
    post = _one(conn, who, tenant, post_id)
    signals = signals_for(conn, [post["verdict_id"]], with_evidence=True).get(post["verdict_id"], [])
    for s in signals:
        s["explanation"] = explain(s)
    post["signals"] = signals
    post["author_posts"] = (
        [
            _row(r)
            for r in conn.execute(
                text(
                    f"SELECT {_COLUMNS} {_BASE} WHERE v.tenant = :t AND p.author = :a AND v.post_id <> :p"
                    " ORDER BY p.created_at DESC NULLS LAST LIMIT 20"
                ),
                {"t": tenant, "a": post["author"], "p": post_id},
            )
        ]
        if post["author"]
        else []
    )
    for other in post["author_posts"]:
        other.pop("text", None)
    post["events"] = [
        {**dict(e._mapping), "at": e.at.isoformat()}
        for e in conn.execute(
            text(
                "SELECT kind, decision, action, reason, username, at FROM review_events"
                " WHERE tenant = :t AND post_id = :p ORDER BY at, id"
            ),
            {"t": tenant, "p": post_id},
        )
    ]
    return post


def claim(conn: Connection, who: Principal, tenant: str, post_id: str, lease_seconds: float) -> dict[str, Any]:
    """Take (or renew) the lease on a post; Conflict if another moderator holds a live one."""
    _one(conn, who, tenant, post_id, "moderator")
    expires = datetime.now(UTC) + timedelta(seconds=lease_seconds)
    got = conn.execute(
        text(
            "INSERT INTO review_leases (tenant, post_id, user_id, expires_at) VALUES (:t, :p, :u, :e)"
            " ON CONFLICT (tenant, post_id) DO UPDATE SET user_id = :u, expires_at = :e"
            " WHERE review_leases.expires_at <= now() OR review_leases.user_id = :u RETURNING user_id"
        ),
        {"t": tenant, "p": post_id, "u": who.user_id, "e": expires},
    ).first()
    if got is None:
        holder = conn.execute(
            text(
                "SELECT u.username FROM review_leases l JOIN users u ON u.id = l.user_id WHERE tenant = :t AND post_id = :p"
            ),
            {"t": tenant, "p": post_id},
        ).scalar()
        raise Conflict(f"{holder} is reviewing this post")
    _event(conn, who, tenant, post_id, "claimed")
    return {"tenant": tenant, "id": post_id, "claimed_by": who.username, "lease_expires_at": expires.isoformat()}


def release(conn: Connection, who: Principal, tenant: str, post_id: str) -> None:
    _one(conn, who, tenant, post_id, "moderator")
    gone = conn.execute(
        text("DELETE FROM review_leases WHERE tenant = :t AND post_id = :p AND user_id = :u"),
        {"t": tenant, "p": post_id, "u": who.user_id},
    ).rowcount
    if gone:
        _event(conn, who, tenant, post_id, "released")


def _event(
    conn: Connection,
    who: Principal,
    tenant: str,
    post_id: str,
    kind: str,
    decision: str | None = None,
    action: str | None = None,
    reason: str | None = None,
) -> None:
    conn.execute(
        text(
            "INSERT INTO review_events (tenant, post_id, kind, decision, action, reason, user_id, username)"
            " VALUES (:t, :p, :k, :d, :a, :r, :u, :n)"
        ),
        {
            "t": tenant,
            "p": post_id,
            "k": kind,
            "d": decision,
            "a": action,
            "r": reason,
            "u": who.user_id,
            "n": who.username,
        },
    )


def _checked_decision(
    post: dict[str, Any], who: Principal, decision: str, reason: str, action: str | None
) -> str | None:
    if decision not in ("confirm", "overturn", "escalate"):
        raise Invalid("decision must be confirm, overturn or escalate")
    if not reason.strip():
        raise Invalid("a decision needs a reason")
    if post["review_state"] == "escalated" and decision != "escalate" and not who.can(post["tenant"], "admin"):
        raise Forbidden("an escalated post is decided by an admin")
    if decision == "overturn":
        return "allow"
    if decision == "escalate":
        return None
    action = action or "block"
    if action not in FINAL_ACTIONS or action == "allow":
        raise Invalid("confirm sets one of label, quarantine, block")
    return action


def decide(
    conn: Connection, who: Principal, tenant: str, post_id: str, decision: str, reason: str, action: str | None = None
) -> dict[str, Any]:
    """Record a decision (an event) and end the lease. Conflict if another moderator holds the lease."""
    post = _one(conn, who, tenant, post_id, "moderator")
    if post["claimed_by"] not in (None, who.username):
        raise Conflict(f"{post['claimed_by']} is reviewing this post")
    final = _checked_decision(post, who, decision, reason, action)
    _event(conn, who, tenant, post_id, "decided", decision, final, reason.strip())
    conn.execute(text("DELETE FROM review_leases WHERE tenant = :t AND post_id = :p"), {"t": tenant, "p": post_id})
    return _one(conn, who, tenant, post_id)


def bulk_decide(
    conn: Connection,
    who: Principal,
    tenant: str,
    post_ids: list[str],
    decision: str,
    reason: str,
    action: str | None = None,
    dry_run: bool = True,
) -> dict[str, Any]:
    """Decide many posts at once. With dry_run (the default) nothing changes: it says how many would be."""
    if not who.can(tenant, "moderator"):
        raise NotFound(f"no tenant {tenant!r}")
    eligible, skipped = [], []
    for post_id in dict.fromkeys(post_ids):
        try:
            post = _one(conn, who, tenant, post_id, "moderator")
            if post["review_state"] not in ("pending", "escalated") or post["claimed_by"] not in (None, who.username):
                raise Conflict("not open, or claimed by someone else")
            _checked_decision(post, who, decision, reason, action)
            eligible.append(post_id)
        except (NotFound, Conflict, Forbidden):
            skipped.append(post_id)
    if not dry_run:
        for post_id in eligible:
            decide(conn, who, tenant, post_id, decision, reason, action)
    return {"count": len(eligible), "ids": eligible, "skipped": skipped, "applied": not dry_run}


def export_decisions(conn: Connection, who: Principal, tenant: str | None = None) -> str:
    """Every decision in the principal's tenants as CSV (one row per decision event)."""
    tenants = who.tenants()
    if tenant is not None:
        if tenant not in tenants:
            raise NotFound(f"no tenant {tenant!r}")
        tenants = [tenant]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "at",
            "tenant",
            "post_id",
            "decision",
            "action",
            "reason",
            "moderator",
            "automatic_action",
            "score",
            "policy_version",
        ]
    )
    rows = conn.execute(
        text(
            "SELECT e.at, e.tenant, e.post_id, e.decision, e.action, e.reason, e.username, v.action AS auto, v.score,"
            " v.policy_version FROM review_events e JOIN verdicts v ON v.tenant = e.tenant AND v.post_id = e.post_id"
            " WHERE e.kind = 'decided' AND e.tenant = ANY(:tenants) ORDER BY e.at, e.id"
        ),
        {"tenants": tenants},
    )
    for r in rows:
        writer.writerow(
            [
                r.at.isoformat(),
                r.tenant,
                r.post_id,
                r.decision,
                r.action,
                r.reason,
                r.username,
                r.auto,
                r.score,
                r.policy_version,
            ]
        )
    return out.getvalue()
