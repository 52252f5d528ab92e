"""API keys: shown once at creation, stored as a sha256 hash, scoped, revocable.

A key is `sk-solvent-<43 random url-safe characters>` (256 bits), so a fast hash is enough: there
is nothing to brute-force. Lookup is by hash, so no comparison leaks timing.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from ..errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from ..storage.db import Database, utcnow
from ..storage.models import ApiKey, Organisation

SCOPES = ("generate", "read", "admin")
KEY_PREFIX = "sk-solvent-"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the organisation, the key and what it may do."""

    org_id: str
    key_id: str
    scopes: tuple[str, ...]

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise Forbidden(f"this API key lacks the `{scope}` scope (it has: {', '.join(self.scopes)}).",
                            field="scope", value=scope)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_org(db: Database, name: str) -> Organisation:
    if not name or len(name) > 200:
        raise ValidationFailed(f"`name` must be 1–200 characters but is {name!r}.", field="name", value=name)
    with db.session() as s:
        org = Organisation(name=name)
        s.add(org)
    return org


def create_key(db: Database, org_id: str, name: str = "", scopes: tuple[str, ...] = ("generate", "read")) -> tuple[ApiKey, str]:
    """Create a key; returns (record, the secret). The secret is never stored or shown again."""
    bad = [sc for sc in scopes if sc not in SCOPES]
    if bad or not scopes:
        raise ValidationFailed(f"`scopes` must be a non-empty subset of {', '.join(SCOPES)} but is {list(scopes)}.",
                               field="scopes", value=list(scopes))
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with db.session() as s:
        if s.get(Organisation, org_id) is None:
            raise NotFound(f"`org` {org_id!r} was not found.", field="org", value=org_id)
        key = ApiKey(org_id=org_id, name=name, prefix=secret[: len(KEY_PREFIX) + 6], secret_hash=hash_secret(secret),
                     scopes=list(scopes))
        s.add(key)
    return key, secret


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
