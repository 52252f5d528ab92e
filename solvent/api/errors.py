"""Error rendering: one renderer per API surface, chosen by path prefix.

The native API answers `{"error": {"code", "message", "field"}}` with the error's status; each
compatibility layer declares its path prefixes and renderers (`SURFACES` in its module: Stability,
AUTOMATIC1111, OpenAI shapes), and `create_app` installs them on the app it builds (no global registry).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import SolventError


def render(status: int, code: str, message: str, field: str | None = None, headers: dict | None = None,
           **extra) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "field": field, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


Renderer = Callable[..., Response]
Surface = tuple[str, Renderer]  # (path prefix, renderer)


class Surfaces:
    """An app's error renderers by path prefix: the longest matching prefix wins, the native one is the fallback."""

    def __init__(self, surfaces: list[Surface]):
        self._by_prefix = sorted(dict(surfaces).items(), key=lambda x: -len(x[0]))

    def renderer_for(self, path: str) -> Renderer:
        return next((r for p, r in self._by_prefix if path.startswith(p)), render)


def renderer_for(app, path: str) -> Renderer:
    """The error renderer of the API surface `path` belongs to on `app` (the native one by default)."""
    surfaces = getattr(getattr(app, "state", None), "surfaces", None)
    return surfaces.renderer_for(path) if surfaces is not None else render


def _renderer(request: Request) -> Renderer:
    return renderer_for(request.app, request.url.path)


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI, surfaces: list[Surface]) -> None:
    app.state.surfaces = Surfaces(surfaces)

    @app.exception_handler(SolventError)
    async def solvent_error(request: Request, exc: SolventError):
        headers = {}
        if exc.extra.get("retry_after") is not None:
            headers["Retry-After"] = str(int(exc.extra["retry_after"]))
        extra = {k: v for k, v in exc.extra.items() if k != "retry_after"}
        return _renderer(request)(exc.status, exc.code, exc.message, exc.field, headers or None, **extra)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        err = exc.errors()[0]
        field = _field(tuple(err.get("loc", ())))
        kind = err.get("type", "")
        if kind == "extra_forbidden":
            message = f"`{field}` is not a known field."
        elif kind == "json_invalid":
            message = f"the body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}."
            field = "body"
        else:
            shown = err.get("input")
            shown = repr(shown) if not isinstance(shown, dict | list) else type(shown).__name__
            message = f"`{field}` {err.get('msg', 'is invalid').lower()} but is {shown}."
        return _renderer(request)(422, "validation_error", message, field)

    @app.exception_handler(ValidationError)
    async def model_error(request: Request, exc: ValidationError):
        # A compat layer built a native request from values its own schema allowed but the native one does not.
        err = exc.errors()[0]
        field = _field(tuple(err.get("loc", ())))
        shown = err.get("input")
        shown = repr(shown)[:200] if not isinstance(shown, dict | list) else type(shown).__name__
        return _renderer(request)(422, "validation_error", f"`{field}` {err.get('msg', 'is invalid').lower()} but is "
                                  f"{shown}.", field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        return _renderer(request)(exc.status_code, code, str(exc.detail))
