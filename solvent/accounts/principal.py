"""Who is calling: the `Principal` (organisation, key or session, scopes, role) and the scopes each role has."""


from __future__ import annotations

from dataclasses import dataclass

from ..errors import Forbidden
from ..storage.models import (
    Membership,
    Organisation,
    User,
)

SCOPES = ("generate", "read", "admin", "operator")


ROLE_SCOPES = {"owner": ("generate", "read", "admin"), "admin": ("generate", "read", "admin"),
               "member": ("generate", "read")}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the organisation, the key and what it may do."""

    org_id: str
    key_id: str | None  # None for a studio session
    scopes: tuple[str, ...]
    user_id: str | None = None  # set for a studio session
    role: str | None = None  # the role it acts with: the user's (session or user-made key) or owner (org key)
    owner_id: str | None = None  # the user a key acts for (None: the organisation's own key)

    @property
    def actor(self) -> str:
        """How the audit log and the credit ledger name this caller: `user:<id>` or `key:<id>`."""
        return f"user:{self.user_id}" if self.user_id else f"key:{self.key_id}"

    def has(self, scope: str) -> bool:
        return scope in self.scopes or (scope != "operator" and "admin" in self.scopes)

    def can_mint(self, scopes: tuple[str, ...] | list[str]) -> bool:
        """Whether this caller may create (or rotate into) a key with `scopes`: never more than it has."""
        return all(self.has(sc) for sc in scopes)

    def require(self, scope: str) -> None:
        if scope not in self.scopes and (scope == "operator" or "admin" not in self.scopes):
            raise Forbidden(f"this API key lacks the `{scope}` scope (it has: {', '.join(self.scopes)}).",
                            field="scope", value=scope)


def _implied(scopes) -> set[str]:
    return set(scopes) | ({"generate", "read"} if "admin" in scopes else set())


def member_scopes(s, user: User, m: Membership) -> tuple[str, ...]:
    """What a member may do in `m`'s organisation: the role's scopes, and `operator` only for an operator user
    who is an owner or admin of an operator organisation (never carried into another one)."""
    scopes = ROLE_SCOPES[m.role]
    if user.operator and m.role in ("owner", "admin"):
        org = s.get(Organisation, m.org_id)
        if org is not None and org.operator:
            scopes += ("operator",)
    return scopes
