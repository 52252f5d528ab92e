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
from .mail import Mailer
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
    send_verification,
    session_principal,
    set_role,
    signup,
    verify_email,
)

__all__ = ["ROLES", "accept_invitation", "audit_log", "change_password", "create_user", "invite", "login", "logout", "me", "members",
           "record", "session_principal", "set_role", "signup", "verify_email", "send_verification", "Mailer",
           "SCOPES", "Principal", "authenticate", "create_key", "create_org", "list_keys", "revoke_key", "rotate_key",
           "set_key_caps"]
