"""Organisations, API keys, users, passwords, sessions, roles, invitations and the audit log."""

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
from .people import (
    ROLES,
    accept_invitation,
    audit_log,
    change_password,
    create_user,
    invite,
    login,
    logout,
    me,
    members,
    record,
    session_principal,
    set_role,
)

__all__ = ["ROLES", "accept_invitation", "audit_log", "change_password", "create_user", "invite", "login", "logout", "me", "members",
           "record", "session_principal", "set_role",
           "SCOPES", "Principal", "authenticate", "create_key", "create_org", "list_keys", "revoke_key", "rotate_key",
           "set_key_caps"]
