"""What a server bound beyond loopback does not show strangers: /metrics and the API docs need a token.

With `SOLVENT_PROTECT_DOCS` (default: on unless `solvent serve` binds a loopback address):
- `/docs`, `/redoc`, `/openapi.json` need a valid API key (`Authorization: Bearer`) or a studio session;
- `/metrics` needs `Authorization: Bearer <SOLVENT_METRICS_TOKEN>` or an API key with the `operator` scope.
"""

from __future__ import annotations

import asyncio
import secrets

from starlette.types import ASGIApp, Receive, Scope, Send

from ..accounts import authenticate, session_principal
from ..errors import SolventError
from . import errors
from .deps import SESSION_COOKIE, _bearer_value

DOCS = ("/docs", "/redoc", "/openapi.json")


class ExposureGuard:
    def __init__(self, app: ASGIApp, services):
        self.app, self.services = app, services

    def _check(self, path: str, headers: dict[bytes, bytes]) -> None:
        auth = headers.get(b"authorization", b"").decode("latin-1")
        key = _bearer_value(auth)
        db, settings = self.services.db, self.services.settings
        if path == "/metrics":
            if settings.metrics_token and key and secrets.compare_digest(key, settings.metrics_token):
                return
            authenticate(db, key).require("operator")
            return
        if key is not None:
            authenticate(db, key)
            return
        cookies = headers.get(b"cookie", b"").decode("latin-1")
        token = next((c.split("=", 1)[1] for c in (x.strip() for x in cookies.split(";"))
                      if c.startswith(SESSION_COOKIE + "=")), None)
        session_principal(db, token, None, unsafe=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and self.services.settings.docs_protected and (
                path == "/metrics" or path in DOCS or path.startswith("/docs/")):
            try:
                await asyncio.to_thread(self._check, path, dict(scope.get("headers") or []))
            except SolventError as e:
                await errors.render(e.status, e.code, f"{path} needs a token on this server: {e.message}",
                                    "authorization")(scope, receive, send)
                return
        await self.app(scope, receive, send)
