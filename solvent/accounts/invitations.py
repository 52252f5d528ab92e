"""Members and invitations: who belongs to an organisation with which role, and joining by an invitation link."""


from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from ..errors import Conflict, Forbidden, NotFound, Unauthorized
from ..hashing import hash_secret
from ..storage.db import Database, utcnow
from ..storage.models import (
    ApiKey,
    Invitation,
    Membership,
    User,
)
from .audit import audit
from .principal import Principal
from .throttle import check_password, hash_password, refuse
from .users import _email, _password, _role

INVITATION_TTL = timedelta(days=7)


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
                         invited_by=principal.actor, expires_at=utcnow() + INVITATION_TTL)
        s.add(inv)
        s.flush()
        audit(s, principal.actor, "invitation.created", principal.org_id, inv.id, email=email, role=role)
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
            audit(s, principal.actor, "member.removed", principal.org_id, user_id, keys_revoked=revoked)
        else:
            audit(s, principal.actor, "member.role", principal.org_id, user_id, previous=m.role, role=role)
            m.role = role
