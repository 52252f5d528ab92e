"""Organisations and API keys (minimal: the accounts issue adds users, sessions, roles, invitations)."""

from .keys import (
    SCOPES,
    Principal,
    authenticate,
    create_key,
    create_org,
    list_keys,
    revoke_key,
    rotate_key,
    set_key_caps,
)

__all__ = ["SCOPES", "Principal", "authenticate", "create_key", "create_org", "list_keys", "revoke_key", "rotate_key",
           "set_key_caps"]
