"""Error rendering: one renderer per API surface, chosen by path prefix.

The native API answers `{"error": {"code", "message", "field"}}` with the error's status; each
compatibility layer registers its own renderer (Stability, AUTOMATIC1111, OpenAI shapes).
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


# (path prefix, renderer); the first match wins, the native renderer is the fallback.
Renderer = Callable[..., Response]
SURFACES: list[tuple[str, Renderer]] = []


def register_surface(prefix: str, renderer: Renderer) -> None:
    if all(p != prefix for p, _ in SURFACES):
        SURFACES.append((prefix, renderer))
        SURFACES.sort(key=lambda x: -len(x[0]))


def renderer_for(path: str) -> Renderer:
    """The error renderer of the API surface `path` belongs to (the native one by default)."""
    return next((r for p, r in SURFACES if path.startswith(p)), render)


def _renderer(request: Request) -> Renderer:
    return renderer_for(request.url.path)


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
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
