"""The one place where the server's protective limits on requests are enforced, for every route.

`LimitsMiddleware` wraps the whole ASGI app, so no route can forget it:

- **Body size** (`SOLVENT_MAX_REQUEST_BYTES`): a declared `Content-Length` over the limit is refused
  before a byte is read; a chunked body is counted as it streams and refused the moment it passes
  the limit, so no more than the limit is ever held.
- **JSON shape** (`SOLVENT_MAX_JSON_DEPTH`, `SOLVENT_MAX_JSON_INT_DIGITS`): a body that parses as JSON
  may not nest deeper or carry longer integers (a 5,000-digit integer costs quadratic time to
  convert; deep nesting exhausts recursion), nor NaN/Infinity. Bodies that are not JSON pass, and
  each route reports its own parse error.

Refusals use the error shape of the API surface the path belongs to (native, Stability, A1111, OpenAI).
Image pixel limits live with the image decoder (`engine.images.load_image`, used by every surface);
prompt length in the schemas and admission; concurrent waits in `WaitGate` below.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from contextlib import contextmanager

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import TooManyRequests
from . import errors


class TooLarge(Exception):
    pass


def _refusal(scope: Scope, status: int, code: str, message: str, field: str = "body"):
    return errors.renderer_for(scope.get("app"), scope.get("path", ""))(status, code, message, field)


def json_problem(body: bytes, max_depth: int, max_digits: int) -> str | None:
    """Why this JSON body is refused, or None (also None when it is not JSON at all)."""
    head = body[:64].lstrip()
    if head[:1] not in (b"{", b"["):
        return None

    def bounded_int(text: str) -> int:
        if len(text.lstrip("-")) > max_digits:
            raise OverflowError(f"an integer has {len(text.lstrip('-'))} digits; at most {max_digits} are accepted")
        return int(text)

    def no_constant(name: str):
        raise OverflowError(f"`{name}` is not a JSON number")

    try:
        data = json.loads(body, parse_int=bounded_int, parse_constant=no_constant)
    except OverflowError as e:
        return f"{e}."
    except RecursionError:
        return f"the JSON nests deeper than {max_depth} levels."
    except (ValueError, UnicodeDecodeError):
        return None  # not JSON: the route answers in its own words
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return f"the JSON nests deeper than {max_depth} levels."
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return None


class LimitsMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, max_depth: int = 32, max_digits: int = 20):
        self.app, self.max_bytes, self.max_depth, self.max_digits = app, max_bytes, max_depth, max_digits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_big = (f"the request body is larger than {self.max_bytes} bytes (SOLVENT_MAX_REQUEST_BYTES); "
                   "send a smaller one.")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _refusal(scope, 400, "bad_request", "`Content-Length` is not a number.", "content-length")(
                    scope, receive, send)
                return
            if size > self.max_bytes:
                await _refusal(scope, 413, "too_large", too_big)(scope, receive, send)
                return
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await _refusal(scope, 413, "too_large", too_big)(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and b"multipart/form-data" not in headers.get(b"content-type", b""):
            problem = json_problem(body, self.max_depth, self.max_digits)
            if problem:
                await _refusal(scope, 400, "invalid_json", f"the body was refused: {problem}")(scope, receive, send)
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnect notices, as the server sends them

        await self.app(scope, replay, send)


class WaitGate:
    """At most `limit` synchronous waits and event streams open at once per organisation (in this process)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._open: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def acquire(self, org_id: str, what: str = "request"):
        """Take a place or raise 429; returns a release function that is safe to call more than once."""
        with self._lock:
            if self._open[org_id] >= self.limit:
                raise TooManyRequests(
                    f"this organisation already has {self.limit} requests waiting for results or streaming events "
                    f"(SOLVENT_MAX_WAITS_PER_ORG); wait for one to finish before this {what}.", field="concurrency",
                    retry_after=1)
            self._open[org_id] += 1
        done = False

        def release() -> None:
            nonlocal done
            with self._lock:
                if done:
                    return
                done = True
                self._open[org_id] -= 1
                if not self._open[org_id]:
                    del self._open[org_id]

        return release

    @contextmanager
    def hold(self, org_id: str, what: str = "request"):
        release = self.acquire(org_id, what)
        try:
            yield
        finally:
            release()
