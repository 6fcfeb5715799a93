"""Who may do what: users, roles per tenant, passwords (argon2id), API tokens and browser sessions.

Roles rank viewer < moderator < admin and are held per tenant: a user sees only the tenants they are a
member of. Tokens and session ids are random; only their SHA-256 is stored, so a copy of the database
does not let anyone in. Nothing here ever logs or returns a password, token or session id after creation.

A token lives until it is revoked or its optional expiry passes; disabling a user or setting a new
password revokes every token of theirs and ends their sessions. A session ends after `session_hours`, or
after `session_idle_minutes` without a request; ended sessions are purged at each login.

Password checks are split so the caller can run the expensive part (argon2id) outside any database
transaction: `password_record` reads, `verify_password` hashes, `principal_for` loads the roles.
Refused logins are audit events (`auth_events`, and a log line that names the account tried, never the
password).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, insert, or_, select, update

from moderation.errors import AuthError
from moderation.storage.models import ROLES, ApiTokenRow, AuthEventRow, MembershipRow, SessionRow, UserRow

log = logging.getLogger(__name__)

RANK = {role: i for i, role in enumerate(ROLES)}
_hasher = PasswordHasher()  # argon2id with the library's (OWASP-recommended) parameters
# Verifying against this keeps the time of a login for an unknown user like that of a known one.
_DUMMY_HASH = _hasher.hash("not a real password")
# A session's last_seen_at is written at most this often (not on every request).
_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    roles: dict[str, str] = field(default_factory=dict)  # tenant -> role
    csrf_token: str | None = None  # set for browser sessions: unsafe requests must echo it

    def role_in(self, tenant: str) -> str | None:
        return self.roles.get(tenant)

    def can(self, tenant: str, role: str) -> bool:
        have = self.roles.get(tenant)
        return have is not None and RANK[have] >= RANK[role]

    def tenants(self, role: str = "viewer") -> list[str]:
        return sorted(t for t in self.roles if self.can(t, role))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def validate_password(password: str) -> None:
    if len(password) < 10:
        raise AuthError("a password needs at least 10 characters")


def create_user(conn: Connection, username: str, password: str) -> int:
    validate_password(password)
    if conn.execute(select(UserRow.id).where(UserRow.username == username)).first():
        raise AuthError(f"user {username!r} exists")
    return int(
        conn.execute(
            insert(UserRow).values(username=username, password_hash=_hasher.hash(password)).returning(UserRow.id)
        ).scalar_one()
    )


def user_id(conn: Connection, username: str) -> int:
    found = conn.execute(select(UserRow.id).where(UserRow.username == username)).scalar()
    if found is None:
        raise AuthError(f"no user {username!r}")
    return int(found)


def grant(conn: Connection, username: str, tenant: str, role: str) -> None:
    if role not in RANK:
        raise AuthError(f"role must be one of {list(ROLES)}, got {role!r}")
    uid = user_id(conn, username)
    conn.execute(delete(MembershipRow).where(MembershipRow.user_id == uid, MembershipRow.tenant == tenant))
    conn.execute(insert(MembershipRow).values(user_id=uid, tenant=tenant, role=role))


def revoke(conn: Connection, username: str, tenant: str) -> None:
    uid = user_id(conn, username)
    conn.execute(delete(MembershipRow).where(MembershipRow.user_id == uid, MembershipRow.tenant == tenant))


def _end_credentials(conn: Connection, uid: int) -> None:
    """Every session of the user ends and every live token is revoked."""
    conn.execute(delete(SessionRow).where(SessionRow.user_id == uid))
    conn.execute(
        update(ApiTokenRow)
        .where(ApiTokenRow.user_id == uid, ~ApiTokenRow.revoked)
        .values(revoked=True, revoked_at=datetime.now(UTC))
    )


def set_disabled(conn: Connection, username: str, disabled: bool) -> None:
    """Disabling ends the user's sessions and revokes their tokens; enabling does not bring them back."""
    uid = user_id(conn, username)
    conn.execute(update(UserRow).where(UserRow.id == uid).values(disabled=disabled))
    if disabled:
        _end_credentials(conn, uid)


def set_password(conn: Connection, username: str, password: str) -> None:
    """A new password ends the user's sessions and revokes their tokens (whoever had them is out)."""
    validate_password(password)
    uid = user_id(conn, username)
    conn.execute(update(UserRow).where(UserRow.id == uid).values(password_hash=_hasher.hash(password)))
    _end_credentials(conn, uid)


def create_token(conn: Connection, username: str, name: str, expires_days: float | None = None) -> str:
    """A new API token; shown once, stored hashed. It expires after `expires_days` (None: when revoked)."""
    if expires_days is not None and not 0 < expires_days <= 3650:
        raise AuthError(f"a token's expiry must be between 0 and 3650 days, got {expires_days!r}")
    token = "mod_" + secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days is not None else None
    conn.execute(
        insert(ApiTokenRow).values(
            user_id=user_id(conn, username), name=name, token_hash=_digest(token), expires_at=expires
        )
    )
    return token


@dataclass(frozen=True)
class TokenInfo:
    """What `moderation users tokens` shows: never the token, nor its hash."""

    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    state: str  # live | expired | revoked


def list_tokens(conn: Connection, username: str) -> list[TokenInfo]:
    now = datetime.now(UTC)
    rows = conn.execute(
        select(
            ApiTokenRow.id,
            ApiTokenRow.name,
            ApiTokenRow.created_at,
            ApiTokenRow.last_used_at,
            ApiTokenRow.expires_at,
            ApiTokenRow.revoked,
            ApiTokenRow.revoked_at,
        )
        .where(ApiTokenRow.user_id == user_id(conn, username))
        .order_by(ApiTokenRow.id)
    )
    return [
        TokenInfo(
            int(r.id),
            r.name,
            r.created_at,
            r.last_used_at,
            r.expires_at,
            r.revoked_at,
            "revoked" if r.revoked else "expired" if r.expires_at is not None and r.expires_at <= now else "live",
        )
        for r in rows
    ]


def revoke_tokens(conn: Connection, username: str, token_id: int | None = None) -> int:
    """Revoke one token of the user (by the id `list_tokens` shows) or, with None, all of them; how many."""
    where = [ApiTokenRow.user_id == user_id(conn, username), ~ApiTokenRow.revoked]
    if token_id is not None:
        where.append(ApiTokenRow.id == token_id)
    done = conn.execute(update(ApiTokenRow).where(*where).values(revoked=True, revoked_at=datetime.now(UTC)))
    if token_id is not None and not done.rowcount:
        raise AuthError(f"{username!r} has no live token with id {token_id}")
    return int(done.rowcount)


def _principal(conn: Connection, uid: int, csrf: str | None = None) -> Principal | None:
    user = conn.execute(select(UserRow.username, UserRow.disabled).where(UserRow.id == uid)).first()
    if user is None or user.disabled:
        return None
    roles = {
        t: r
        for t, r in conn.execute(select(MembershipRow.tenant, MembershipRow.role).where(MembershipRow.user_id == uid))
    }
    return Principal(uid, user.username, roles, csrf)


def password_record(conn: Connection, username: str) -> tuple[int | None, str]:
    """(user id or None, the hash to verify against): an unknown user gets a dummy hash, so a login for
    them costs the same time as one for a real user."""
    row = conn.execute(select(UserRow.id, UserRow.password_hash).where(UserRow.username == username)).first()
    return (int(row.id), row.password_hash) if row else (None, _DUMMY_HASH)


def verify_password(password_hash: str, password: str) -> bool:
    """argon2id: CPU- and memory-heavy (~0.2 s, 64 MiB). Run it outside any transaction, and bounded."""
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def principal_for(conn: Connection, uid: int) -> Principal | None:
    """The user with their roles, or None when disabled."""
    return _principal(conn, uid)


def check_password(conn: Connection, username: str, password: str) -> Principal | None:
    """All three steps in one (for the command line; the HTTP login splits them)."""
    uid, password_hash = password_record(conn, username)
    if not verify_password(password_hash, password) or uid is None:
        return None
    return _principal(conn, uid)


def record_refused_login(
    conn: Connection, username: str, uid: int | None, address: str | None, kind: str = "login_failed"
) -> None:
    """An audit event for a refused login, and a log line: the account tried and the address, no password."""
    shown = username[:64]
    conn.execute(insert(AuthEventRow).values(kind=kind, username=shown, user_id=uid, address=(address or "")[:64]))
    log.warning("login refused (%s): account=%r known=%s address=%s", kind, shown, uid is not None, address)


def principal_from_token(conn: Connection, token: str) -> Principal | None:
    row = conn.execute(
        select(ApiTokenRow.id, ApiTokenRow.user_id).where(
            ApiTokenRow.token_hash == _digest(token),
            ~ApiTokenRow.revoked,
            or_(ApiTokenRow.expires_at.is_(None), ApiTokenRow.expires_at > datetime.now(UTC)),
        )
    ).first()
    if row is None:
        return None
    conn.execute(update(ApiTokenRow).where(ApiTokenRow.id == row.id).values(last_used_at=datetime.now(UTC)))
    return _principal(conn, int(row.user_id))


def purge_sessions(conn: Connection, idle_minutes: float) -> int:
    """Delete every session past its lifetime or idle longer than `idle_minutes`; how many went."""
    now = datetime.now(UTC)
    return int(
        conn.execute(
            delete(SessionRow).where(
                or_(SessionRow.expires_at < now, SessionRow.last_seen_at < now - timedelta(minutes=idle_minutes))
            )
        ).rowcount
    )


def create_session(
    conn: Connection, principal: Principal, hours: float, idle_minutes: float | None = None
) -> tuple[str, str]:
    """(session id for the cookie, CSRF token for the pages). Ended sessions are purged first."""
    if idle_minutes is not None:
        purge_sessions(conn, idle_minutes)
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    conn.execute(
        insert(SessionRow).values(
            id_hash=_digest(session_id),
            user_id=principal.user_id,
            csrf_token=csrf,
            expires_at=datetime.now(UTC) + timedelta(hours=hours),
        )
    )
    return session_id, csrf


def principal_from_session(conn: Connection, session_id: str, idle_minutes: float | None = None) -> Principal | None:
    """The session's user, or None when it is unknown, expired, or idle longer than `idle_minutes`."""
    digest = _digest(session_id)
    row = conn.execute(
        select(SessionRow.user_id, SessionRow.csrf_token, SessionRow.expires_at, SessionRow.last_seen_at).where(
            SessionRow.id_hash == digest
        )
    ).first()
    now = datetime.now(UTC)
    if row is None or row.expires_at < now:
        return None
    if idle_minutes is not None:
        if row.last_seen_at < now - timedelta(minutes=idle_minutes):
            conn.execute(delete(SessionRow).where(SessionRow.id_hash == digest))
            return None
        if row.last_seen_at < now - _TOUCH_EVERY:
            conn.execute(update(SessionRow).where(SessionRow.id_hash == digest).values(last_seen_at=now))
    return _principal(conn, int(row.user_id), row.csrf_token)


def end_session(conn: Connection, session_id: str) -> None:
    conn.execute(delete(SessionRow).where(SessionRow.id_hash == _digest(session_id)))


def csrf_ok(principal: Principal, presented: str | None) -> bool:
    return (
        principal.csrf_token is not None
        and presented is not None
        and hmac.compare_digest(principal.csrf_token, presented)
    )
