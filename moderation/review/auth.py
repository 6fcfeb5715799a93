"""Who may do what: users, roles per tenant, passwords (argon2id), API tokens and browser sessions.

Roles rank viewer < moderator < admin and are held per tenant: a user sees only the tenants they are a
member of. Tokens and session ids are random; only their SHA-256 is stored, so a copy of the database
does not let anyone in. Nothing here ever logs or returns a password, token or session id after creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, insert, select, update

from moderation.errors import AuthError
from moderation.storage.models import ROLES, ApiTokenRow, MembershipRow, SessionRow, UserRow

RANK = {role: i for i, role in enumerate(ROLES)}
_hasher = PasswordHasher()  # argon2id with the library's (OWASP-recommended) parameters
# Verifying against this keeps the time of a login for an unknown user like that of a known one.
_DUMMY_HASH = _hasher.hash("not a real password")


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


def set_disabled(conn: Connection, username: str, disabled: bool) -> None:
    uid = user_id(conn, username)
    conn.execute(update(UserRow).where(UserRow.id == uid).values(disabled=disabled))
    if disabled:
        conn.execute(delete(SessionRow).where(SessionRow.user_id == uid))


def set_password(conn: Connection, username: str, password: str) -> None:
    validate_password(password)
    uid = user_id(conn, username)
    conn.execute(update(UserRow).where(UserRow.id == uid).values(password_hash=_hasher.hash(password)))
    conn.execute(delete(SessionRow).where(SessionRow.user_id == uid))


def create_token(conn: Connection, username: str, name: str) -> str:
    """A new API token; shown once, stored hashed."""
    token = "mod_" + secrets.token_urlsafe(32)
    conn.execute(insert(ApiTokenRow).values(user_id=user_id(conn, username), name=name, token_hash=_digest(token)))
    return token


def _principal(conn: Connection, uid: int, csrf: str | None = None) -> Principal | None:
    user = conn.execute(select(UserRow.username, UserRow.disabled).where(UserRow.id == uid)).first()
    if user is None or user.disabled:
        return None
    roles = {
        t: r
        for t, r in conn.execute(select(MembershipRow.tenant, MembershipRow.role).where(MembershipRow.user_id == uid))
    }
    return Principal(uid, user.username, roles, csrf)


def check_password(conn: Connection, username: str, password: str) -> Principal | None:
    row = conn.execute(select(UserRow.id, UserRow.password_hash).where(UserRow.username == username)).first()
    try:
        _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return _principal(conn, int(row.id)) if row else None


def principal_from_token(conn: Connection, token: str) -> Principal | None:
    row = conn.execute(
        select(ApiTokenRow.id, ApiTokenRow.user_id).where(
            ApiTokenRow.token_hash == _digest(token), ~ApiTokenRow.revoked
        )
    ).first()
    if row is None:
        return None
    conn.execute(update(ApiTokenRow).where(ApiTokenRow.id == row.id).values(last_used_at=datetime.now(UTC)))
    return _principal(conn, int(row.user_id))


def create_session(conn: Connection, principal: Principal, hours: float) -> tuple[str, str]:
    """(session id for the cookie, CSRF token for the pages)."""
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


def principal_from_session(conn: Connection, session_id: str) -> Principal | None:
    row = conn.execute(
        select(SessionRow.user_id, SessionRow.csrf_token, SessionRow.expires_at).where(
            SessionRow.id_hash == _digest(session_id)
        )
    ).first()
    if row is None or row.expires_at < datetime.now(UTC):
        return None
    return _principal(conn, int(row.user_id), row.csrf_token)


def end_session(conn: Connection, session_id: str) -> None:
    conn.execute(delete(SessionRow).where(SessionRow.id_hash == _digest(session_id)))


def csrf_ok(principal: Principal, presented: str | None) -> bool:
    return (
        principal.csrf_token is not None
        and presented is not None
        and hmac.compare_digest(principal.csrf_token, presented)
    )
