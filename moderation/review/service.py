"""The review queue, leases and decisions. Every function takes the acting Principal and refuses, with
NotFound, anything outside that principal's tenants — the API and the web page both go through here,
so tenant isolation is enforced in one place.

A post's review state is derived from its append-only events, never stored:
- "pending": the automatic verdict is review or quarantine and no moderator has decided;
- "escalated": the latest decision is escalate (back in the queue, first, for an admin);
- "decided": the latest decision is confirm or overturn; its action outranks the automatic verdict.

Leases: a moderator's claim lasts `lease_seconds`; renewing it never extends it past `lease_max_seconds`
after the claim, and an admin may take any lease over (the event says from whom) or decide through it.
`decide` locks the post's row first, so the lease check and the decision cannot interleave with another.

Per-token watermark evidence (which tokens are green) reveals the key's green lists when collected over
many posts, so only roles that decide get it, within a daily budget per account; viewers get the
statistic and the flagged span. Every read of it is counted (evidence_reads, and a Prometheus counter).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from moderation import metrics
from moderation.errors import Conflict, Forbidden, Invalid, NotFound
from moderation.review.auth import Principal
from moderation.review.explain import explain
from moderation.storage.queries import signals_for

QUEUED_ACTIONS = ("review", "quarantine")
FINAL_ACTIONS = ("allow", "label", "quarantine", "block")
REASON_MAX_CHARS = 2000
BULK_MAX_POSTS = 1000
# Roles that decide, and so see per-token evidence.
DECIDING_ROLES = ("moderator", "admin")


def checked_reason(reason: str) -> str:
    """The one validation of a decision's reason, for the API and the form alike: 1..REASON_MAX_CHARS
    characters after trimming, no control characters but tab and line breaks."""
    cleaned = reason.strip()
    if not cleaned:
        raise Invalid("a decision needs a reason")
    if len(cleaned) > REASON_MAX_CHARS:
        raise Invalid(f"a reason has at most {REASON_MAX_CHARS} characters, this one has {len(cleaned)}")
    if any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in cleaned):
        raise Invalid("a reason cannot contain control characters")
    return cleaned


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
JOIN posts p ON p.tenant = v.tenant AND p.post_id = v.post_id AND p.revision = v.revision
JOIN verdict_review_state d ON d.verdict_id = v.id
LEFT JOIN review_leases l ON l.tenant = v.tenant AND l.post_id = v.post_id AND l.expires_at > now()
LEFT JOIN users lu ON lu.id = l.user_id
"""
_STATE = "d.review_state"  # one definition, in the view (migration 0006_review_state)
_COLUMNS = """v.id AS verdict_id, v.revision, v.tenant, v.post_id, v.action, v.score, v.policy_version, v.reasons, v.decided_at,
p.author, p.created_at, p.text, d.decision, d.decided_action, d.decision_at, d.decided_by,
lu.username AS claimed_by, l.expires_at AS lease_expires_at, d.review_state, d.effective_action"""
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
        where.append(f"{_STATE} = ANY(:states)")
        params["states"] = list(states)
    if flt.action:
        where.append("v.action = :action")
        params["action"] = flt.action
    if flt.plugin:
        where.append("EXISTS (SELECT 1 FROM signals s WHERE s.verdict_id = v.id AND s.plugin = :plugin AND s.finding)")
        params["plugin"] = flt.plugin
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


def _evidence_allowed(conn: Connection, who: Principal, tenant: str, tokens: int, budget: int | None) -> bool:
    """Count one read of per-token evidence for this account (None budget: unlimited); False when the
    account's daily budget for the tenant is spent. The count is one statement, so concurrent reads agree."""
    read = conn.execute(
        text(
            "INSERT INTO evidence_reads (user_id, tenant, day, posts, tokens) VALUES (:u, :t, current_date, 1, :n)"
            " ON CONFLICT (user_id, tenant, day) DO UPDATE SET posts = evidence_reads.posts + 1,"
            " tokens = evidence_reads.tokens + :n WHERE :budget IS NULL OR evidence_reads.posts < :budget"
            " RETURNING posts"
        ),
        {"u": who.user_id, "t": tenant, "n": tokens, "budget": budget},
    ).first()
    return read is not None


def post_detail(
    conn: Connection, who: Principal, tenant: str, post_id: str, evidence_budget: int | None = None
) -> dict[str, Any]:
    """Everything the post page shows: text, verdict, signals explained, the author's other posts, and the
    history of events. Per-token evidence only for roles that decide, within `evidence_budget` posts per
    day; `evidence` says "shown", "withheld_role" or "withheld_budget"."""
    post = _one(conn, who, tenant, post_id)
    signals = signals_for(conn, [post["verdict_id"]], with_evidence=True).get(post["verdict_id"], [])
    role = who.role_in(tenant) or "viewer"
    tokens = sum(len(s.get("evidence", {}).get("tokens", [])) for s in signals)
    post["evidence"] = "shown"
    if tokens and role not in DECIDING_ROLES:
        post["evidence"] = "withheld_role"
    elif tokens and not _evidence_allowed(conn, who, tenant, tokens, evidence_budget):
        post["evidence"] = "withheld_budget"
    for s in signals:
        if post["evidence"] != "shown":
            s.pop("evidence", None)
        s["explanation"] = explain(s)
    if tokens:
        metrics.REVIEW_EVIDENCE_READS.labels(role, post["evidence"]).inc()
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


def _lock(conn: Connection, tenant: str, post_id: str) -> None:
    """Lock the post's row until the transaction ends: claims and decisions of one post take turns. FOR NO
    KEY UPDATE, so inserting events (a foreign key to the post) and the pipeline's reads are not blocked."""
    conn.execute(
        text("SELECT 1 FROM posts WHERE tenant = :t AND post_id = :p FOR NO KEY UPDATE"), {"t": tenant, "p": post_id}
    )


def claim(
    conn: Connection,
    who: Principal,
    tenant: str,
    post_id: str,
    lease_seconds: float,
    max_seconds: float | None = None,
    override: bool = False,
) -> dict[str, Any]:
    """Take, renew or (admins, with `override`) take over the lease on a post. A renewal never extends the
    lease past `max_seconds` after the holder's claim: Conflict once it cannot grow. Conflict if another
    moderator holds a live lease and this is no admin override."""
    _one(conn, who, tenant, post_id, "admin" if override else "moderator")
    _lock(conn, tenant, post_id)
    post = _one(conn, who, tenant, post_id, "admin" if override else "moderator")  # read again under the lock
    if post["review_state"] == "escalated" and not who.can(tenant, "admin"):
        raise Forbidden("an escalated post is claimed and decided by an admin")
    max_seconds = max_seconds if max_seconds is not None else 1e9
    # One statement decides: a free or lapsed lease is taken afresh; the holder's live lease is renewed up
    # to claimed_at + max; an admin override replaces any lease. A row comes back only if it was written.
    got = conn.execute(
        text(
            "INSERT INTO review_leases (tenant, post_id, user_id, expires_at, claimed_at)"
            " VALUES (:t, :p, :u, now() + make_interval(secs => :lease), now())"
            " ON CONFLICT (tenant, post_id) DO UPDATE SET"
            "  expires_at = CASE WHEN review_leases.user_id = :u AND review_leases.expires_at > now()"
            "   THEN LEAST(now() + make_interval(secs => :lease),"
            "              review_leases.claimed_at + make_interval(secs => :max))"
            "   ELSE now() + make_interval(secs => :lease) END,"
            "  claimed_at = CASE WHEN review_leases.user_id = :u AND review_leases.expires_at > now()"
            "   THEN review_leases.claimed_at ELSE now() END,"
            "  user_id = :u"
            " WHERE review_leases.expires_at <= now() OR :override"
            "  OR (review_leases.user_id = :u AND review_leases.expires_at"
            "      < review_leases.claimed_at + make_interval(secs => :max))"
            " RETURNING expires_at, claimed_at"
        ),
        {"t": tenant, "p": post_id, "u": who.user_id, "lease": lease_seconds, "max": max_seconds, "override": override},
    ).first()
    if got is None:
        if post["claimed_by"] == who.username:
            raise Conflict(f"this lease cannot be renewed past {max_seconds:g} s; decide or release the post")
        raise Conflict(f"{post['claimed_by']} is reviewing this post")
    took_over = override and post["claimed_by"] not in (None, who.username)
    _event(conn, who, tenant, post_id, "claimed", reason=f"took over from {post['claimed_by']}" if took_over else None)
    return {
        "tenant": tenant,
        "id": post_id,
        "claimed_by": who.username,
        "lease_expires_at": got.expires_at.isoformat(),
        "renewable_until": (got.claimed_at + timedelta(seconds=max_seconds)).isoformat() if max_seconds < 1e9 else None,
    }


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
            "INSERT INTO review_events (tenant, post_id, kind, decision, action, reason, user_id, username, revision)"
            " VALUES (:t, :p, :k, :d, :a, :r, :u, :n, (SELECT revision FROM posts WHERE tenant = :t AND post_id = :p))"
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
    checked_reason(reason)
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
    conn: Connection,
    who: Principal,
    tenant: str,
    post_id: str,
    decision: str,
    reason: str,
    action: str | None = None,
    revision: int | None = None,
) -> dict[str, Any]:
    """Record a decision (an event) and end the lease. Conflict if another moderator holds the lease (an
    admin decides through it). The post's row is locked first (FOR NO KEY UPDATE: events still reference
    it), so a concurrent claim or decision waits and then sees this one."""
    _one(conn, who, tenant, post_id, "moderator")
    _lock(conn, tenant, post_id)
    post = _one(conn, who, tenant, post_id, "moderator")  # read again under the lock
    # A decision applies to the revision the moderator saw (recorded with the event); an edit since is refused.
    if revision is not None and revision != post["revision"]:
        raise Conflict(f"the post was edited: revision {post['revision']} is current, not {revision}; review it again")
    if post["claimed_by"] not in (None, who.username) and not who.can(tenant, "admin"):
        raise Conflict(f"{post['claimed_by']} is reviewing this post")
    final = _checked_decision(post, who, decision, reason, action)
    _event(conn, who, tenant, post_id, "decided", decision, final, checked_reason(reason))
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
    if len(post_ids) > BULK_MAX_POSTS:
        raise Invalid(f"a bulk decision takes at most {BULK_MAX_POSTS} posts, got {len(post_ids)}")
    checked_reason(reason)
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


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell that cannot run as a formula: text starting with = + - @, a tab or a carriage return (also
    after leading spaces, which spreadsheets skip) gets a leading apostrophe; numbers pass unchanged."""
    if isinstance(value, str) and (value.startswith(_FORMULA_START) or value.lstrip(" ").startswith(_FORMULA_START)):
        return "'" + value
    return value


def export_decisions(conn: Connection, who: Principal, tenant: str | None = None) -> str:
    """Every decision in the principal's tenants as CSV (one row per decision event), every field quoted
    and formula-neutralised (csv_cell)."""
    tenants = who.tenants()
    if tenant is not None:
        if tenant not in tenants:
            raise NotFound(f"no tenant {tenant!r}")
        tenants = [tenant]
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
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
            " v.policy_version FROM review_events e JOIN verdicts v ON v.tenant = e.tenant AND v.post_id = e.post_id AND v.revision = e.revision"
            " WHERE e.kind = 'decided' AND e.tenant = ANY(:tenants) ORDER BY e.at, e.id"
        ),
        {"tenants": tenants},
    )
    for r in rows:
        writer.writerow(
            [
                csv_cell(cell)
                for cell in (
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
                )
            ]
        )
    return out.getvalue()
