"""API keys: shown once at creation, stored as a sha256 hash, scoped, revocable.

A key is `sk-solvent-<43 random url-safe characters>` (256 bits), so a fast hash is enough: there
is nothing to brute-force. Lookup is by hash, so no comparison leaks timing.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from ..errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from ..storage.db import Database, utcnow
from ..storage.models import ApiKey, Organisation, Plan

SCOPES = ("generate", "read", "admin", "operator")
# `admin` administers its own organisation; `operator` administers the platform (plans, every
# organisation's credits and grants) and is only given to the operator's own keys.
KEY_PREFIX = "sk-solvent-"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the organisation, the key and what it may do."""

    org_id: str
    key_id: str | None  # None for a studio session
    scopes: tuple[str, ...]
    user_id: str | None = None  # set for a studio session
    role: str | None = None  # the user's role in the organisation (sessions only)

    def require(self, scope: str) -> None:
        if scope not in self.scopes and (scope == "operator" or "admin" not in self.scopes):
            raise Forbidden(f"this API key lacks the `{scope}` scope (it has: {', '.join(self.scopes)}).",
                            field="scope", value=scope)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_org(db: Database, name: str, plan_id: str = "community") -> Organisation:
    if not name or len(name) > 200:
        raise ValidationFailed(f"`name` must be 1–200 characters but is {name!r}.", field="name", value=name)
    with db.session() as s:
        if s.get(Plan, plan_id) is None:
            raise NotFound(f"`plan` {plan_id!r} was not found.", field="plan", value=plan_id)
        org = Organisation(name=name, plan_id=plan_id)
        s.add(org)
    return org


CAPS = ("credit_cap_mc", "cap_period", "max_pixels", "max_steps", "rpm", "concurrent_jobs")


def _check_caps(caps: dict[str, Any]) -> dict[str, Any]:
    for k, v in caps.items():
        if k not in CAPS:
            raise ValidationFailed(f"`{k}` is not a key cap; caps: {', '.join(CAPS)}.", field=k, value=v)
        if k == "cap_period":
            if v not in ("day", "month"):
                raise ValidationFailed(f"`cap_period` must be `day` or `month` but is {v!r}.", field=k, value=v)
        elif v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= 10**15):
            raise ValidationFailed(f"`{k}` must be a positive whole number or null but is {v!r}.", field=k, value=v)
    return caps


def create_key(db: Database, org_id: str, name: str = "", scopes: tuple[str, ...] = ("generate", "read"),
               expires_at: datetime | None = None, rotated_from: str | None = None,
               **caps: Any) -> tuple[ApiKey, str]:
    """Create a key; returns (record, the secret). The secret is never stored or shown again."""
    bad = [sc for sc in scopes if sc not in SCOPES]
    if bad or not scopes:
        raise ValidationFailed(f"`scopes` must be a non-empty subset of {', '.join(SCOPES)} but is {list(scopes)}.",
                               field="scopes", value=list(scopes))
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationFailed(f"`expires_at` {expires_at.isoformat()} is in the past.", field="expires_at",
                               value=expires_at.isoformat())
    _check_caps(caps)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with db.session() as s:
        if s.get(Organisation, org_id) is None:
            raise NotFound(f"`org` {org_id!r} was not found.", field="org", value=org_id)
        key = ApiKey(org_id=org_id, name=name, prefix=secret[: len(KEY_PREFIX) + 6], secret_hash=hash_secret(secret),
                     scopes=list(scopes), expires_at=expires_at, rotated_from=rotated_from,
                     **{k: v for k, v in caps.items() if v is not None})
        s.add(key)
    return key, secret


def set_key_caps(db: Database, key_id: str, org_id: str | None = None, **caps: Any) -> ApiKey:
    """Change a key's own caps (None removes a cap)."""
    _check_caps(caps)
    with db.session() as s:
        key = s.get(ApiKey, key_id)
        if key is None or (org_id is not None and key.org_id != org_id):
            raise NotFound(f"`key` {key_id!r} was not found.", field="key", value=key_id)
        for k, v in caps.items():
            setattr(key, k, v if v is not None or k != "cap_period" else "month")
        return key


def rotate_key(db: Database, key_id: str, org_id: str | None = None, grace_seconds: int = 0) -> tuple[ApiKey, str]:
    """A new key with the same name, scopes and caps; the old one is revoked (after `grace_seconds`)."""
    with db.session() as s:
        old = s.get(ApiKey, key_id)
        if old is None or (org_id is not None and old.org_id != org_id):
            raise NotFound(f"`key` {key_id!r} was not found.", field="key", value=key_id)
        if old.revoked_at is not None:
            raise ValidationFailed(f"key {old.prefix}… is revoked; create a new one instead.", field="key",
                                   value=key_id)
        spec = dict(org_id=old.org_id, name=old.name, scopes=tuple(old.scopes), expires_at=old.expires_at,
                    **{k: getattr(old, k) for k in CAPS})
    new, secret = create_key(db, rotated_from=key_id, **spec)
    with db.session() as s:
        old = s.get(ApiKey, key_id)
        when = utcnow() + timedelta(seconds=max(0, grace_seconds))
        old.expires_at = when if old.expires_at is None else min(old.expires_at, when)
        if grace_seconds <= 0:
            old.revoked_at = utcnow()
    return new, secret


def authenticate(db: Database, secret: str | None) -> Principal:
    if not secret:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`.", field="authorization")
    with db.session() as s:
        key = s.scalar(select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret)))
        if key is None:
            raise Unauthorized("invalid API key.", field="authorization")
        if key.revoked_at is not None:
            raise Unauthorized(f"API key {key.prefix}… was revoked.", field="authorization")
        now = utcnow()
        if key.expires_at is not None and key.expires_at <= now:
            raise Unauthorized(f"API key {key.prefix}… expired at {key.expires_at.isoformat()}.",
                               field="authorization")
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
            key.last_used_at = now  # throttled: one write a minute per key
        return Principal(key.org_id, key.id, tuple(key.scopes))


def list_keys(db: Database, org_id: str | None = None) -> list[ApiKey]:
    with db.session() as s:
        q = select(ApiKey).order_by(ApiKey.created_at)
        if org_id:
            q = q.where(ApiKey.org_id == org_id)
        return list(s.scalars(q))


def revoke_key(db: Database, key_id: str, org_id: str | None = None) -> ApiKey:
    with db.session() as s:
        key = s.get(ApiKey, key_id)
        if key is None or (org_id is not None and key.org_id != org_id):
            raise NotFound(f"`key` {key_id!r} was not found.", field="key", value=key_id)
        if key.revoked_at is None:
            key.revoked_at = utcnow()
        return key
