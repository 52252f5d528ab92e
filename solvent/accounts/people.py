"""People: users with argon2id passwords, studio sessions with CSRF tokens, organisation members and
roles, invitations, and the audit log.

- Passwords are hashed with argon2id and checked in one place (`throttle.check_password`): the same
  work whether or not the email exists (a dummy hash is verified), so timing does not reveal
  accounts, and wrong passwords back off exponentially per client address and per account (429
  with `Retry-After`) rather than locking the account against its owner.
- Sign-up never says whether an address already has an account, and is limited per client address.
  When e-mail verification is required the new organisation gets no plan allowance until an owner
  follows the link mailed to them (printed to the log when no SMTP server is set).
- A session is a random token in an HttpOnly cookie; only its sha256 is stored. Each session has
  a CSRF token (double-submit: the API requires it in `X-CSRF-Token` on every unsafe request made
  with the cookie). Sessions expire and can be revoked (logout).
- Roles: owner (everything, including owners and deleting), admin (members, keys, invitations),
  member (generate and read). An organisation always keeps at least one owner.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized, ValidationFailed
from ..storage.db import Database, utcnow
from ..storage.models import (
    ApiKey,
    AuditEvent,
    EmailToken,
    Invitation,
    Membership,
    Organisation,
    Plan,
    User,
    UserSession,
)
from .keys import Principal, hash_secret, member_scopes
from .mail import Mailer
from .throttle import check_password, hash_password, hit, refuse

ROLES = ("owner", "admin", "member")
SESSION_TTL = timedelta(days=14)
INVITATION_TTL = timedelta(days=7)
MIN_PASSWORD = 10
VERIFY_TTL = timedelta(days=2)
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


def audit(s: Session, actor: str, action: str, org_id: str | None = None, target: str = "",
          **details: Any) -> None:
    """Append one event to the audit log (inside the caller's transaction)."""
    s.add(AuditEvent(actor=actor, action=action, org_id=org_id, target=target, details=details))


def record(db: Database, actor: str, action: str, org_id: str | None = None, target: str = "", **details: Any) -> None:
    """Append one event to the audit log in its own transaction."""
    with db.session() as s:
        audit(s, actor, action, org_id, target, **details)


def audit_log(db: Database, org_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    with db.session() as s:
        q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if org_id is not None:
            q = q.where(AuditEvent.org_id == org_id)
        return [{"at": e.at.isoformat(), "actor": e.actor, "org_id": e.org_id, "action": e.action,
                 "target": e.target, "details": e.details} for e in s.scalars(q)]


def _email(email: str) -> str:
    e = (email or "").strip().lower()
    if not EMAIL.match(e) or len(e) > 254:
        raise ValidationFailed(f"`email` {email!r} is not an email address.", field="email", value=email)
    return e


def _password(pw: str) -> str:
    if not isinstance(pw, str) or len(pw) < MIN_PASSWORD or len(pw) > 1024:
        raise ValidationFailed(f"`password` must be {MIN_PASSWORD}–1024 characters (it has "
                               f"{len(pw) if isinstance(pw, str) else 0}).", field="password")
    return pw


def _role(role: str) -> str:
    if role not in ROLES:
        raise ValidationFailed(f"`role` must be one of {', '.join(ROLES)} but is {role!r}.", field="role", value=role)
    return role


@dataclass(frozen=True)
class SessionTokens:
    token: str  # goes in the HttpOnly cookie
    csrf: str  # goes in a readable cookie and must come back in X-CSRF-Token
    user_id: str
    org_id: str
    expires_at: datetime


def create_user(db: Database, email: str, password: str, name: str = "", org_name: str | None = None,
                plan_id: str = "community", operator: bool = False, actor: str = "system",
                needs_verification: bool = False) -> tuple[User, str]:
    """A user and an organisation it owns. Returns (user, org id).

    `operator`: the user administers the platform, and its organisation is an operator organisation
    (the only kind in which operator powers apply). `needs_verification`: the organisation gets no plan
    allowance until the user verifies its address (`verify_email`).
    """
    email, password = _email(email), _password(password)
    pw_hash = hash_password(password)
    try:
        with db.session() as s:
            if s.get(Plan, plan_id) is None:
                raise NotFound(f"`plan` {plan_id!r} was not found.", field="plan", value=plan_id)
            user = User(email=email, name=name, password_hash=pw_hash, operator=operator)
            s.add(user)
            s.flush()
            org = Organisation(name=org_name or f"{name or email}'s organisation", plan_id=plan_id, operator=operator,
                               needs_verification=needs_verification)
            s.add(org)
            s.flush()
            s.add(Membership(org_id=org.id, user_id=user.id, role="owner"))
            audit(s, actor, "user.created", org.id, user.id, email=email)
            return user, org.id
    except IntegrityError as e:
        raise Conflict(f"`email` {email!r} already has an account; log in instead.", field="email",
                       value=email) from e


def signup(db: Database, email: str, password: str, name: str = "", org_name: str | None = None,
           plan_id: str = "community", *, ip: str = "local", per_hour: int = 5, verify: bool = False,
           mailer: Mailer | None = None, base_url: str = "") -> None:
    """Sign-up that does not reveal whether `email` has an account: the same answer, the same argon2 work.

    A new address gets a user and an organisation (and, with `verify`, a verification link by mail); an
    address that has an account gets a mail saying so, and nothing else changes. Limited to `per_hour`
    attempts per client address (429 with `Retry-After`).
    """
    email, password = _email(email), _password(password)
    with db.session() as s:
        wait = hit(s, f"signup:{ip}", per_hour, timedelta(hours=1))
    if wait:
        raise TooManyRequests(f"too many sign-ups from this address: try again in {wait} s.", field="email",
                              retry_after=wait)
    mailer = mailer or Mailer(None)
    try:
        user, org_id = create_user(db, email, password, name, org_name, plan_id, actor="signup",
                                   needs_verification=verify)
    except Conflict:
        hash_password(password)  # the work a new account costs, so timing says nothing either
        mailer.send(email, "Someone tried to sign up with your address",
                    "Someone (perhaps you) tried to create a Solvent account with this address, which already has "
                    f"one. Log in at {base_url or 'the studio'} instead; if it was not you, ignore this mail.")
        record(db, "anonymous", "signup.existing", None, email, ip=ip)
        return
    if verify:
        send_verification(db, user.id, mailer, base_url)


def send_verification(db: Database, user_id: str, mailer: Mailer, base_url: str = "") -> None:
    """Mail a one-time link that verifies the user's address (valid for `VERIFY_TTL`)."""
    token = secrets.token_urlsafe(32)
    with db.session() as s:
        user = s.get(User, user_id)
        s.add(EmailToken(token_hash=hash_secret(token), user_id=user_id, purpose="verify",
                         expires_at=utcnow() + VERIFY_TTL))
        email = user.email
    mailer.send(email, "Verify your Solvent address",
                f"Open {base_url.rstrip('/')}/#/verify?token={token} (or POST the token to /api/auth/verify) to verify "
                f"this address; it unlocks your plan's free allowance. The link is valid for "
                f"{int(VERIFY_TTL.total_seconds() // 3600)} hours.")


def verify_email(db: Database, token: str) -> str:
    """Mark the address of the token's user verified; its organisations that waited for it get their
    allowance. Returns the user id."""
    now = utcnow()
    with db.session() as s:
        row = s.scalar(select(EmailToken).where(EmailToken.token_hash == hash_secret(token or ""),
                                                EmailToken.purpose == "verify").with_for_update())
        if row is None or row.used_at is not None or row.expires_at <= now:
            raise NotFound("this verification link is unknown, used or expired; ask for a new one.", field="token")
        row.used_at = now
        user = s.get(User, row.user_id)
        user.email_verified_at = user.email_verified_at or now
        for m in s.scalars(select(Membership).where(Membership.user_id == user.id, Membership.role == "owner")):
            org = s.get(Organisation, m.org_id)
            if org.needs_verification:
                org.needs_verification = False
                audit(s, f"user:{user.id}", "org.verified", org.id, user.id)
        audit(s, f"user:{user.id}", "email.verified", None, user.id)
        return user.id


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


def change_password(db: Database, principal: Principal, current: str, new: str,
                    session_token: str | None = None, ip: str = "local") -> None:
    """Change the signed-in user's password; every other session of the user is signed out."""
    if not principal.user_id or principal.key_id is not None:
        raise Forbidden("only a signed-in user can change a password (API keys have none).", field="password")
    new = _password(new)
    with db.session() as s:
        user = s.get(User, principal.user_id)
        outcome = check_password(s, user, current, ip, user.email)
        if outcome is True:
            _set_password(s, user, principal, new, session_token)
            return
        audit(s, f"user:{user.id}", "password.failed", principal.org_id, user.id, ip=ip)
    if outcome is not False:
        raise refuse(outcome)
    raise Unauthorized("the current password is wrong.", field="current_password")


def _set_password(s: Session, user: User, principal: Principal, new: str, session_token: str | None) -> None:
    user.password_hash = hash_password(new)
    keep = hash_secret(session_token) if session_token else None
    now = utcnow()
    for sess in s.scalars(select(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))):
        if sess.token_hash != keep:
            sess.revoked_at = now
    audit(s, f"user:{user.id}", "password.changed", principal.org_id, user.id)


def me(db: Database, principal: Principal) -> dict[str, Any]:
    with db.session() as s:
        org = s.get(Organisation, principal.org_id)
        out: dict[str, Any] = {"org": {"id": org.id, "name": org.name, "plan": org.plan_id},
                               "scopes": list(principal.scopes), "role": principal.role}
        if principal.user_id:
            user = s.get(User, principal.user_id)
            out["user"] = {"id": user.id, "email": user.email, "name": user.name,
                           "operator": "operator" in principal.scopes,
                           "email_verified": user.email_verified_at is not None}
            out["orgs"] = [{"id": m.org_id, "role": m.role} for m in
                           s.scalars(select(Membership).where(Membership.user_id == user.id))]
        return out


# ----------------------------------------------------------------------------------------------
# Members and invitations
# ----------------------------------------------------------------------------------------------


def _actor(p: Principal) -> str:
    return f"user:{p.user_id}" if p.user_id else f"key:{p.key_id}"


def members(db: Database, org_id: str) -> list[dict[str, Any]]:
    with db.session() as s:
        rows = s.execute(select(Membership, User).join(User, User.id == Membership.user_id)
                         .where(Membership.org_id == org_id).order_by(Membership.created_at)).all()
        return [{"user_id": u.id, "email": u.email, "name": u.name, "role": m.role,
                 "since": m.created_at.isoformat()} for m, u in rows]


def invite(db: Database, principal: Principal, email: str, role: str = "member") -> tuple[Invitation, str]:
    """An invitation to `principal`'s organisation; returns (record, token shown once)."""
    principal.require("admin")
    email, role = _email(email), _role(role)
    if role == "owner" and principal.role != "owner":
        raise Forbidden("only an owner can invite another owner.", field="role", value=role)
    token = secrets.token_urlsafe(32)
    with db.session() as s:
        inv = Invitation(org_id=principal.org_id, email=email, role=role, token_hash=hash_secret(token),
                         invited_by=_actor(principal), expires_at=utcnow() + INVITATION_TTL)
        s.add(inv)
        s.flush()
        audit(s, _actor(principal), "invitation.created", principal.org_id, inv.id, email=email, role=role)
    return inv, token


def accept_invitation(db: Database, token: str, email: str, password: str | None = None,
                      name: str = "", ip: str = "local") -> tuple[str, str]:
    """Join the inviting organisation: an existing user proves it with its password (the one password check),
    a new one is created with its address verified (the token reached it). Returns (user id, org id)."""
    now = utcnow()
    email = _email(email)
    with db.session() as s:
        inv = s.scalar(select(Invitation).where(Invitation.token_hash == hash_secret(token or "")))
        if inv is None or inv.revoked_at is not None:
            raise NotFound("this invitation does not exist or was withdrawn.", field="token")
        if inv.accepted_at is not None:
            raise Conflict("this invitation was already accepted.", field="token")
        if inv.expires_at <= now:
            raise Unauthorized(f"this invitation expired at {inv.expires_at.isoformat()}; ask for a new one.",
                               field="token")
        if inv.email != email:
            raise Forbidden(f"this invitation is for another email address, not {email!r}.", field="email",
                            value=email)
        user = s.scalar(select(User).where(User.email == email))
        outcome: bool | int = True
        if user is None:
            user = User(email=email, name=name, password_hash=hash_password(_password(password or "")),
                        email_verified_at=now)
            s.add(user)
            s.flush()
        else:
            outcome = check_password(s, user, password, ip, email)
        if outcome is True:
            if s.scalar(select(Membership).where(Membership.org_id == inv.org_id, Membership.user_id == user.id)):
                raise Conflict("you are already a member of this organisation.", field="token")
            s.add(Membership(org_id=inv.org_id, user_id=user.id, role=inv.role))
            inv.accepted_at = now
            audit(s, f"user:{user.id}", "invitation.accepted", inv.org_id, inv.id, role=inv.role)
            return user.id, inv.org_id
        audit(s, "anonymous", "invitation.password_failed", inv.org_id, user.id, ip=ip)
    if outcome is not False:
        raise refuse(outcome)
    raise Unauthorized("wrong password for the existing account of this email.", field="password")


def set_role(db: Database, principal: Principal, user_id: str, role: str | None) -> None:
    """Change a member's role, or remove the member (role None). An organisation keeps one owner."""
    principal.require("admin")
    if role is not None:
        _role(role)
    with db.session() as s:
        m = s.scalar(select(Membership).where(Membership.org_id == principal.org_id, Membership.user_id == user_id)
                     .with_for_update())
        if m is None:
            raise NotFound(f"`user` {user_id!r} is not a member of this organisation.", field="user", value=user_id)
        if (m.role == "owner" or role == "owner") and principal.role != "owner":
            raise Forbidden("only an owner can make or change an owner.", field="role", value=role)
        if m.role == "owner" and role != "owner":
            owners = s.scalar(select(func.count()).select_from(Membership).where(
                Membership.org_id == principal.org_id, Membership.role == "owner"))
            if owners <= 1:
                raise Conflict("an organisation needs at least one owner; make someone else owner first.",
                               field="role", value=role)
        if role is None:
            s.delete(m)
            # The keys they made go with them, at once (a lowered role narrows them at authentication).
            revoked = 0
            for key in s.scalars(select(ApiKey).where(ApiKey.org_id == principal.org_id, ApiKey.created_by == user_id,
                                                       ApiKey.revoked_at.is_(None))):
                key.revoked_at = utcnow()
                revoked += 1
            audit(s, _actor(principal), "member.removed", principal.org_id, user_id, keys_revoked=revoked)
        else:
            audit(s, _actor(principal), "member.role", principal.org_id, user_id, previous=m.role, role=role)
            m.role = role
