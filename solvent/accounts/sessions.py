"""Studio sessions: a random token in an HttpOnly cookie (only its sha256 stored), a CSRF token per session
(double-submit: required in `X-CSRF-Token` on every unsafe request made with the cookie), expiry and logout.
"""


from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import Forbidden, Unauthorized, ValidationFailed
from ..hashing import hash_secret
from ..storage.db import Database, utcnow
from ..storage.models import (
    Membership,
    User,
    UserSession,
)
from .audit import audit
from .principal import Principal, member_scopes
from .throttle import check_password, refuse
from .users import _email

SESSION_TTL = timedelta(days=14)


@dataclass(frozen=True)
class SessionTokens:
    token: str  # goes in the HttpOnly cookie
    csrf: str  # goes in a readable cookie and must come back in X-CSRF-Token
    user_id: str
    org_id: str
    expires_at: datetime


def login(db: Database, email: str, password: str, org_id: str | None = None, ip: str = "local") -> SessionTokens:
    """Check a password (`throttle.check_password`: constant work, back-off) and open a session in `org_id`
    (default: the first organisation)."""
    try:
        email = _email(email)
    except ValidationFailed:
        email = ""
    with db.session() as s:
        user = s.scalar(select(User).where(User.email == email)) if email else None
        outcome = check_password(s, user, password, ip, email)
        if outcome is True:
            return _open_session(s, user, org_id, utcnow())
        if user is not None:
            audit(s, "anonymous", "login.locked" if outcome is not False else "login.failed", None, user.id, ip=ip)
    if outcome is not False:
        raise refuse(outcome)
    raise Unauthorized("wrong email or password.", field="password")


def _open_session(s: Session, user: User, org_id: str | None, now: datetime) -> SessionTokens:
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    memberships = s.scalars(select(Membership).where(Membership.user_id == user.id)
                            .order_by(Membership.created_at)).all()
    if not memberships:
        raise Forbidden("this user belongs to no organisation; accept an invitation first.", field="org")
    chosen = next((m for m in memberships if m.org_id == org_id), None) if org_id else memberships[0]
    if chosen is None:
        raise Forbidden(f"you are not a member of `org` {org_id!r}.", field="org", value=org_id)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    sess = UserSession(user_id=user.id, org_id=chosen.org_id, token_hash=hash_secret(token),
                       csrf_hash=hash_secret(csrf), expires_at=now + SESSION_TTL)
    s.add(sess)
    audit(s, f"user:{user.id}", "login", chosen.org_id, user.id)
    return SessionTokens(token, csrf, user.id, chosen.org_id, sess.expires_at)


def session_principal(db: Database, token: str | None, csrf: str | None, unsafe: bool) -> Principal:
    """The principal of a session cookie; unsafe methods must carry the session's CSRF token."""
    if not token:
        raise Unauthorized("missing API key or session: send `Authorization: Bearer <key>` or log in.",
                           field="authorization")
    now = utcnow()
    with db.session() as s:
        sess = s.scalar(select(UserSession).where(UserSession.token_hash == hash_secret(token)))
        if sess is None or sess.revoked_at is not None or sess.expires_at <= now:
            raise Unauthorized("your session has ended; log in again.", field="session")
        if unsafe and (not csrf or not secrets.compare_digest(hash_secret(csrf), sess.csrf_hash)):
            raise Forbidden("missing or wrong `X-CSRF-Token` for this session.", field="x-csrf-token")
        m = s.scalar(select(Membership).where(Membership.user_id == sess.user_id, Membership.org_id == sess.org_id))
        user = s.get(User, sess.user_id)
        if m is None or user is None:
            raise Unauthorized("you are no longer a member of this organisation; log in again.", field="session")
        return Principal(sess.org_id, None, member_scopes(s, user, m), user_id=user.id, role=m.role)


def logout(db: Database, token: str | None) -> None:
    if not token:
        return
    with db.session() as s:
        sess = s.scalar(select(UserSession).where(UserSession.token_hash == hash_secret(token)))
        if sess is not None and sess.revoked_at is None:
            sess.revoked_at = utcnow()
            audit(s, f"user:{sess.user_id}", "logout", sess.org_id, sess.user_id)
