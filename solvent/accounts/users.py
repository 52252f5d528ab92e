"""Users: argon2id passwords (checked in one place, `throttle.check_password`), sign-up that never says whether an
address has an account, e-mail verification, password changes, and what a user sees of themself.

Roles: owner (everything, including owners and deleting), admin (members, keys, invitations), member
(generate and read). An organisation always keeps at least one owner.
"""


from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized, ValidationFailed
from ..hashing import hash_secret
from ..storage.db import Database, utcnow
from ..storage.models import (
    EmailToken,
    Membership,
    Organisation,
    Plan,
    User,
    UserSession,
)
from .audit import audit, record
from .mail import Mailer
from .principal import Principal
from .throttle import check_password, hash_password, hit, refuse

ROLES = ("owner", "admin", "member")


MIN_PASSWORD = 10


VERIFY_TTL = timedelta(days=2)


EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


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
