"""Accounts API: sign-up, login/logout (session cookie + CSRF token), me, members, invitations, keys, audit."""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ...accounts import (
    accept_invitation,
    audit_log,
    change_password,
    create_key,
    invite,
    list_keys,
    login,
    logout,
    me,
    members,
    record,
    revoke_key,
    rotate_key,
    set_role,
    signup,
    verify_email,
)
from ...accounts.users import MIN_PASSWORD
from ...errors import Forbidden
from ..deps import CSRF_COOKIE, SESSION_COOKIE, PrincipalDep, ServicesDep, client_ip
from ..schemas import UtcDatetime

router = APIRouter(prefix="/api", tags=["accounts"])


class SignupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(..., max_length=254)
    password: str = Field(..., max_length=1024)
    name: str = Field("", max_length=200)
    organisation: str | None = Field(None, max_length=200)


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(..., max_length=254)
    password: str = Field(..., max_length=1024)
    org: str | None = None


class InviteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(..., max_length=254)
    role: str = "member"


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(..., max_length=200)
    email: str = Field(..., max_length=254)
    password: str = Field(..., max_length=1024)
    name: str = Field("", max_length=200)


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=200)
    scopes: list[str] = Field(default_factory=lambda: ["generate", "read"])
    expires_at: UtcDatetime | None = None
    credit_cap_mc: int | None = None
    cap_period: str = "month"
    max_pixels: int | None = None
    max_steps: int | None = None
    rpm: int | None = None
    concurrent_jobs: int | None = None


def _set_session(response: Response, services, tokens) -> dict:
    secure = services.settings.cookie_secure
    max_age = int((tokens.expires_at - datetime.now(tokens.expires_at.tzinfo)).total_seconds())
    response.set_cookie(SESSION_COOKIE, tokens.token, max_age=max_age, httponly=True, secure=secure, samesite="lax")
    response.set_cookie(CSRF_COOKIE, tokens.csrf, max_age=max_age, httponly=False, secure=secure, samesite="strict")
    return {"user_id": tokens.user_id, "org_id": tokens.org_id, "csrf_token": tokens.csrf,
            "expires_at": tokens.expires_at.isoformat()}


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(..., max_length=1024)
    new_password: str = Field(..., max_length=1024)


@router.get("/auth/options", summary="What the sign-in page may offer (sign-up open or not)")
def auth_options(services: ServicesDep) -> dict:
    return {"signup": services.settings.allow_signup, "min_password": MIN_PASSWORD}


SIGNUP_ANSWER = ("if this address can be used, its account is ready: log in with it and this password. "
                 "Check your mail too.")


@router.post("/auth/signup", status_code=202,
             summary="Ask for an account (the answer is the same whether or not the address has one); then log in")
async def do_signup(body: SignupIn, request: Request, services: ServicesDep) -> dict:
    settings = services.settings
    if not settings.allow_signup:
        raise Forbidden("sign-up is closed on this server; ask an administrator for an invitation.",
                        field="signup")
    verify = settings.email_verification_required
    await asyncio.to_thread(signup, services.db, body.email, body.password, body.name, body.organisation,
                            settings.default_plan, ip=client_ip(request), per_hour=settings.signups_per_hour,
                            verify=verify, mailer=services.mailer, base_url=str(request.base_url))
    return {"ok": True, "message": SIGNUP_ANSWER, "verification_required": verify}


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(..., min_length=1, max_length=200)


@router.post("/auth/verify", summary="Verify your address with the token mailed to it (unlocks the free allowance)")
async def do_verify(body: VerifyIn, services: ServicesDep) -> dict:
    await asyncio.to_thread(verify_email, services.db, body.token)
    return {"ok": True, "email_verified": True}


@router.post("/auth/login", summary="Log in: sets the session cookie; returns the CSRF token for writes")
async def do_login(body: LoginIn, request: Request, response: Response, services: ServicesDep) -> dict:
    tokens = await asyncio.to_thread(login, services.db, body.email, body.password, body.org, client_ip(request))
    return _set_session(response, services, tokens)


@router.post("/auth/logout", summary="End the session")
def do_logout(request: Request, response: Response, services: ServicesDep, principal: PrincipalDep) -> dict:
    logout(services.db, request.cookies.get(SESSION_COOKIE))
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return {"ok": True}


@router.post("/auth/password", summary="Change your password (other sessions are signed out)")
async def post_password(body: PasswordIn, request: Request, services: ServicesDep, principal: PrincipalDep) -> dict:
    await asyncio.to_thread(change_password, services.db, principal, body.current_password, body.new_password,
                            request.cookies.get(SESSION_COOKIE), client_ip(request))
    return {"ok": True}


@router.get("/me", summary="Who is calling: user, organisation, role, scopes")
def get_me(services: ServicesDep, principal: PrincipalDep) -> dict:
    return me(services.db, principal)


@router.get("/org/members", summary="Members of the organisation")
def get_members(services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("read")
    return {"members": members(services.db, principal.org_id)}


@router.put("/org/members/{user_id}", summary="Change a member's role")
def put_member(user_id: str, body: RoleIn, services: ServicesDep, principal: PrincipalDep) -> dict:
    set_role(services.db, principal, user_id, body.role)
    return {"members": members(services.db, principal.org_id)}


@router.delete("/org/members/{user_id}", summary="Remove a member")
def delete_member(user_id: str, services: ServicesDep, principal: PrincipalDep) -> dict:
    set_role(services.db, principal, user_id, None)
    return {"members": members(services.db, principal.org_id)}


@router.post("/org/invitations", status_code=201, summary="Invite someone (the token is shown once)")
def post_invitation(body: InviteIn, services: ServicesDep, principal: PrincipalDep) -> dict:
    inv, token = invite(services.db, principal, body.email, body.role)
    return {"id": inv.id, "email": inv.email, "role": inv.role, "token": token, "expires_at": inv.expires_at}


@router.post("/invitations/accept", summary="Accept an invitation (creates the user if new), then log in")
async def post_accept(body: AcceptIn, request: Request, response: Response, services: ServicesDep) -> dict:
    ip = client_ip(request)
    _, org_id = await asyncio.to_thread(accept_invitation, services.db, body.token, body.email, body.password,
                                        body.name, ip)
    tokens = await asyncio.to_thread(login, services.db, body.email, body.password, org_id, ip)
    return _set_session(response, services, tokens)


def _key_out(k) -> dict:
    return {"id": k.id, "name": k.name, "prefix": k.prefix, "scopes": k.scopes, "created_at": k.created_at,
            "expires_at": k.expires_at, "revoked_at": k.revoked_at, "last_used_at": k.last_used_at,
            "credit_cap_mc": k.credit_cap_mc, "cap_period": k.cap_period, "max_pixels": k.max_pixels,
            "max_steps": k.max_steps, "rpm": k.rpm, "concurrent_jobs": k.concurrent_jobs,
            "rotated_from": k.rotated_from}



@router.get("/keys", summary="API keys of the organisation (never their secrets)")
def get_keys(services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("admin")
    return {"keys": [_key_out(k) for k in list_keys(services.db, principal.org_id)]}


@router.post("/keys", status_code=201, summary="Create an API key (the secret is shown once)")
def post_key(body: KeyIn, services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("admin")
    if "operator" in body.scopes:
        principal.require("operator")
    if not principal.can_mint(body.scopes):
        raise Forbidden(f"`scopes` {body.scopes} are more than this caller has ({', '.join(principal.scopes)}).",
                        field="scopes", value=body.scopes)
    caps = body.model_dump(include={"credit_cap_mc", "cap_period", "max_pixels", "max_steps", "rpm",
                                    "concurrent_jobs"})
    key, secret = create_key(services.db, principal.org_id, body.name, tuple(body.scopes), body.expires_at,
                             created_by=principal.user_id or principal.owner_id, **caps)
    record(services.db, principal.actor, "key.created", principal.org_id, key.id, scopes=key.scopes)
    return {**_key_out(key), "secret": secret}


@router.post("/keys/{key_id}/revoke", summary="Revoke an API key")
def post_revoke(key_id: str, services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("admin")
    key = revoke_key(services.db, key_id, principal.org_id, caller=principal)
    record(services.db, principal.actor, "key.revoked", principal.org_id, key.id)
    return _key_out(key)


@router.post("/keys/{key_id}/rotate", status_code=201,
             summary="Replace a key by a new one with the same scopes and caps (old one revoked, or after a grace)")
def post_rotate(key_id: str, services: ServicesDep, principal: PrincipalDep, grace_seconds: int = 0) -> dict:
    principal.require("admin")
    key, secret = rotate_key(services.db, key_id, principal.org_id, grace_seconds, caller=principal)
    record(services.db, principal.actor, "key.rotated", principal.org_id, key.id, previous=key_id,
           grace_seconds=grace_seconds)
    return {**_key_out(key), "secret": secret}


@router.get("/audit", summary="The organisation's audit log, newest first")
def get_audit(services: ServicesDep, principal: PrincipalDep, limit: int = 200) -> dict:
    principal.require("admin")
    return {"events": audit_log(services.db, principal.org_id, max(1, min(limit, 1000)))}
