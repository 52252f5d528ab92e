"""Organisations, API keys, users, passwords, sessions, roles, invitations and the audit log.

One room each: `orgs`, `keys`, `principal` (who is calling), `users` (passwords, sign-up, verification),
`sessions` (studio cookies and CSRF), `invitations` (members and roles), `audit`, `throttle` (the one
password check and its back-off) and `mail`.
"""

from .audit import audit_log, record
from .invitations import accept_invitation, invite, members, set_role
from .keys import authenticate, create_key, list_keys, revoke_key, rotate_key, set_key_caps
from .mail import Mailer
from .orgs import create_org
from .principal import SCOPES, Principal
from .sessions import login, logout, session_principal
from .users import ROLES, change_password, create_user, me, send_verification, signup, verify_email

__all__ = ["ROLES", "accept_invitation", "audit_log", "change_password", "create_user", "invite", "login", "logout", "me", "members",
           "record", "session_principal", "set_role", "signup", "verify_email", "send_verification", "Mailer",
           "SCOPES", "Principal", "authenticate", "create_key", "create_org", "list_keys", "revoke_key", "rotate_key",
           "set_key_caps"]
