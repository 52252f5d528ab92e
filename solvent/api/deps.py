"""Dependencies as `Annotated` aliases so route signatures stay one line."""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Annotated

from fastapi import Depends, Request

from ..accounts import Principal, authenticate, session_principal
from ..accounts.keys import authenticate_key_id
from ..jobs.registry import authenticate_worker
from ..services import Services
from ..storage.models import Worker


def get_services(request: Request) -> Services:
    return request.app.state.services


def _bearer(request: Request) -> str | None:
    """The API key: `Authorization: Bearer <key>`, or HTTP Basic (A1111 clients) whose password is the key, or whose
    whole credential is a bare key (open-webui sends what its auth field holds: `user:key` or just the key)."""
    return _bearer_value(request.headers.get("authorization", ""))


def _bearer_value(auth: str) -> str | None:
    scheme, _, value = auth.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, colon, password = decoded.partition(":")
        if not colon:
            return decoded or None  # a bare key
        return password or user or None  # `user:key`, or `key:` with the key as the user name
    return None


ANONYMOUS_SURFACES = ("/sdapi/", "/controlnet/")  # where SOLVENT_A1111_ANONYMOUS_KEY_ID may stand in for a key
ANONYMOUS_SCOPES = ("generate", "read")  # the most a credential-less request may do, whatever the key allows


def client_ip(request: Request) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy (`SOLVENT_TRUSTED_PROXIES`), the
    nearest untrusted address in `X-Forwarded-For` (uvicorn may already have applied it for its own
    `--forwarded-allow-ips`; applying it again is harmless)."""
    peer = (request.client.host if request.client else "") or "unknown"
    trusted = request.app.state.services.settings.trusted_proxies
    if peer not in trusted:
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop[:64]
    return peer


SESSION_COOKIE, CSRF_COOKIE = "solvent_session", "solvent_csrf"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def current_principal(request: Request, services: Annotated[Services, Depends(get_services)]) -> Principal:
    """An API key (`Authorization: Bearer`), else a studio session cookie (+ `X-CSRF-Token` on writes)."""
    key = _bearer(request)
    anonymous = services.settings.a1111_anonymous_key_id
    if anonymous and key is None and "authorization" not in request.headers and SESSION_COOKIE not in \
            request.cookies and request.url.path.startswith(ANONYMOUS_SURFACES):
        p = authenticate_key_id(services.db, anonymous)  # the operator's choice; off by default (see its risk)
        return dataclasses.replace(p, scopes=tuple(x for x in p.scopes if x in ANONYMOUS_SCOPES))
    if key is not None or SESSION_COOKIE not in request.cookies:
        return authenticate(services.db, key)
    return session_principal(services.db, request.cookies.get(SESSION_COOKIE), request.headers.get("x-csrf-token"),
                             unsafe=request.method not in SAFE_METHODS)


def current_worker(request: Request, services: Annotated[Services, Depends(get_services)]) -> Worker:
    return authenticate_worker(services.db, _bearer(request))


ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
WorkerDep = Annotated[Worker, Depends(current_worker)]
