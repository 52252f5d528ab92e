"""Reading request bodies, for every API surface: a JSON object, a multipart form, a pydantic model.

Size limits are not checked here: `limits.LimitsMiddleware` has already refused a body that is too large,
too deep or has an absurd number. Errors are `SolventError`s, rendered in each surface's shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ValidationError

from ..errors import BadRequest, SolventError, ValidationFailed

# -- bodies -------------------------------------------------------------------------------------

# How a surface words a refused field: (field, pydantic's message, the value sent, pydantic's error type).
Phrase = Callable[[str, str, Any, str], str]


def parse_model(model: type[BaseModel], data: Any, phrase: Phrase) -> Any:
    """`data` validated as `model`; the first error becomes a `ValidationFailed` naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err.get("loc", ())) or "body"
        raise ValidationFailed(phrase(field, err.get("msg", "invalid"), err.get("input"), err.get("type", "")),
                               field=field) from e


async def read_json_object(request: Request, error: type[SolventError] = ValidationFailed,
                           not_json: str = "the body is not valid JSON: {}",
                           not_object: str = "the body must be a JSON object.") -> dict:
    """The body as a JSON object (an empty body is `{}`); `error` in the surface's words otherwise."""
    try:
        data = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as e:
        raise error(not_json.format(e.msg), field="body") from e
    if not isinstance(data, dict):
        raise error(not_object, field="body")
    return data


async def read_multipart(request: Request, what: str) -> tuple[list[tuple[str, str]], dict[str, bytes]]:
    """A multipart form as (its text fields in order, its files by name; `name[]` counts as `name`, the first
    file of a name wins). `what` completes the message when the body is not multipart."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise BadRequest(f"{what} takes multipart/form-data, not {ctype or 'nothing'!r}.", field="body")
    form = await request.form()
    fields: list[tuple[str, str]] = []
    files: dict[str, bytes] = {}
    for key, value in form.multi_items():
        if hasattr(value, "read"):
            data = await value.read()
            files.setdefault(key.removesuffix("[]"), data)
        else:
            fields.append((key, value))
    return fields, files


