"""API keys: shown once at creation, stored as a sha256 hash, scoped, revocable.

A key is `sk-solvent-<43 random url-safe characters>` (256 bits), so a fast hash is enough: there
is nothing to brute-force. Lookup is by hash, so no comparison leaks timing.

Who a key acts for: a key made by a user (`created_by`) acts with at most that user's current role in
the key's organisation, checked at every authentication, so lowering the role narrows the key at once
and removing the member revokes it; a key made by `solvent serve` or the CLI is the organisation's own
and acts as an owner. `operator` is only ever effective in an operator organisation, and only an
operator can mint, rotate or revoke a key that carries it. Nobody mints a key with more than they have.
"""


from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from ..errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from ..hashing import hash_secret
from ..storage.db import Database, utcnow
from ..storage.models import (
    ApiKey,
    Membership,
    Organisation,
    User,
)
from .principal import ROLE_SCOPES, SCOPES, Principal, _implied, member_scopes

# `admin` administers its own organisation; `operator` administers the platform (plans, every
# organisation's credits and grants) and is only given to the operator's own keys.
KEY_PREFIX = "sk-solvent-"


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
               expires_at: datetime | None = None, rotated_from: str | None = None, created_by: str | None = None,
               **caps: Any) -> tuple[ApiKey, str]:
    """Create a key; returns (record, the secret). The secret is never stored or shown again.

    `created_by`: the user it acts for (at most with that user's role); None for the organisation's own key.
    """
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
                     scopes=list(scopes), expires_at=expires_at, rotated_from=rotated_from, created_by=created_by,
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


def _check_may_touch(caller: Principal | None, key: ApiKey, verb: str) -> None:
    if caller is None:
        return  # the CLI: whoever runs it owns the database
    if "operator" in key.scopes and not caller.has("operator"):
        raise Forbidden(f"only an operator can {verb} a key with the `operator` scope.", field="key", value=key.id)
    if verb == "rotate" and not caller.can_mint(key.scopes):
        raise Forbidden(f"rotating key {key.prefix}… would give scopes {', '.join(key.scopes)}; this caller may only "
                        f"mint {', '.join(sc for sc in SCOPES if caller.has(sc))}.", field="key", value=key.id)


def rotate_key(db: Database, key_id: str, org_id: str | None = None, grace_seconds: int = 0,
               caller: Principal | None = None) -> tuple[ApiKey, str]:
    """A new key with the same name, scopes and caps; the old one is revoked (after `grace_seconds`).

    With a `caller` (an API request): it must be able to mint the key's scopes, and the new key acts for the
    caller's user (so an admin rotating an owner's key gets a key that acts as an admin, never as the owner).
    """
    if not 0 <= grace_seconds <= 30 * 86400:
        raise ValidationFailed(f"`grace_seconds` must be 0–2592000 (30 days) but is {grace_seconds}.",
                               field="grace_seconds", value=grace_seconds)
    with db.session() as s:
        old = s.get(ApiKey, key_id)
        if old is None or (org_id is not None and old.org_id != org_id):
            raise NotFound(f"`key` {key_id!r} was not found.", field="key", value=key_id)
        _check_may_touch(caller, old, "rotate")
        if old.revoked_at is not None:
            raise ValidationFailed(f"key {old.prefix}… is revoked; create a new one instead.", field="key",
                                   value=key_id)
        owner = old.created_by if caller is None else (caller.user_id or caller.owner_id)
        spec = dict(org_id=old.org_id, name=old.name, scopes=tuple(old.scopes), expires_at=old.expires_at,
                    created_by=owner, **{k: getattr(old, k) for k in CAPS})
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
        return _principal_of(s, key)


def authenticate_key_id(db: Database, key_id: str) -> Principal:
    """The principal of the key `key_id` (what the operator's `SOLVENT_A1111_ANONYMOUS_KEY_ID` names), checked
    exactly as a presented key is: revoked, expired or orphaned keys are refused."""
    with db.session() as s:
        key = s.get(ApiKey, key_id)
        if key is None:
            raise Unauthorized(f"the key SOLVENT_A1111_ANONYMOUS_KEY_ID names ({key_id!r}) does not exist; send "
                               "`Authorization: Bearer <key>` or Basic credentials.", field="authorization")
        return _principal_of(s, key)


def _principal_of(s, key: ApiKey) -> Principal:
    """The principal a found key stands for: refused when revoked, expired or its member left."""
    if key.revoked_at is not None:
        raise Unauthorized(f"API key {key.prefix}… was revoked.", field="authorization")
    now = utcnow()
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthorized(f"API key {key.prefix}… expired at {key.expires_at.isoformat()}.",
                           field="authorization")
    if key.created_by is not None:
        m = s.scalar(select(Membership).where(Membership.org_id == key.org_id,
                                              Membership.user_id == key.created_by))
        user = s.get(User, key.created_by)
        if m is None or user is None:  # they left: the key went with them (belt and braces)
            raise Unauthorized(f"API key {key.prefix}… belonged to a member who left the organisation.",
                               field="authorization")
        allowed, role = member_scopes(s, user, m), m.role
    else:
        org = s.get(Organisation, key.org_id)
        allowed, role = ROLE_SCOPES["owner"] + (("operator",) if org.operator else ()), "owner"
    # What the key says, narrowed to what its user may do now (`admin` implies generate and read on both sides).
    scopes = tuple(sc for sc in SCOPES if sc in _implied(key.scopes) and sc in _implied(allowed))
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        key.last_used_at = now  # throttled: one write a minute per key
    return Principal(key.org_id, key.id, scopes, role=role,
                     owner_id=key.created_by)


def list_keys(db: Database, org_id: str | None = None) -> list[ApiKey]:
    with db.session() as s:
        q = select(ApiKey).order_by(ApiKey.created_at)
        if org_id:
            q = q.where(ApiKey.org_id == org_id)
        return list(s.scalars(q))


def revoke_key(db: Database, key_id: str, org_id: str | None = None, caller: Principal | None = None) -> ApiKey:
    with db.session() as s:
        key = s.get(ApiKey, key_id)
        if key is None or (org_id is not None and key.org_id != org_id):
            raise NotFound(f"`key` {key_id!r} was not found.", field="key", value=key_id)
        _check_may_touch(caller, key, "revoke")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
        return key


def key_preferences(db: Database, key_id: str | None) -> dict[str, Any]:
    """What a key remembers between calls (A1111's default checkpoint); {} for a session or an unknown key."""
    if key_id is None:
        return {}
    with db.session() as s:
        key = s.get(ApiKey, key_id)
        return dict(key.preferences or {}) if key else {}


def set_key_preference(db: Database, key_id: str, name: str, value: Any) -> None:
    with db.session() as s:
        key = s.get(ApiKey, key_id)
        if key is None:
            raise NotFound(f"API key {key_id!r} was not found.", field="key", value=key_id)
        key.preferences = {**(key.preferences or {}), name: value}
