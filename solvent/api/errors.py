"""One renderer for the native API: `{"error": {"code", "message", "field"}}` with the error's status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import SolventError


def render(status: int, code: str, message: str, field: str | None = None, headers: dict | None = None,
           **extra) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "field": field, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(SolventError)
    async def solvent_error(_: Request, exc: SolventError):
        headers = {}
        if exc.extra.get("retry_after") is not None:
            headers["Retry-After"] = str(int(exc.extra["retry_after"]))
        extra = {k: v for k, v in exc.extra.items() if k != "retry_after"}
        return render(exc.status, exc.code, exc.message, exc.field, headers or None, **extra)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
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
        return render(422, "validation_error", message, field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        return render(exc.status_code, code, str(exc.detail))
