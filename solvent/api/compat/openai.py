"""OpenAI Images: `/v1/images/generations`, `/edits`, `/variations`, `/v1/models`, and signed image links.

`model` is a Solvent model id, or an OpenAI name mapped by `SOLVENT_OPENAI_MODELS`: exactly, else by the longest
key it starts with (`gpt-image` serves `gpt-image-1`, `-1-mini`, `-1.5`, `-2`), else — for any OpenAI image name
(`gpt-image…`, `chatgpt-image…`, `dall-e…`) — the `default`. GPT image names answer `b64_json` (they have no
`response_format`; `url` only when asked), dall-e names and Solvent ids a signed `url` by default. `quality` scales
the model's default steps (low ½, standard/medium/auto 1×, hd/high 2×); `style` `vivid` raises CFG by half.
`background: transparent` cuts each image out with an installed segmenter. `url` responses are HMAC-signed links
to Solvent that expire after an hour. The answer carries OpenAI's `created`, `data`, `background`,
`output_format`, `quality`, `size` and `usage` (the prompt's CLIP tokens), and the credits in a `Solvent-Credits-Mc`
header and a `solvent` field typed SDKs ignore. Errors use OpenAI's envelope; a request the caller's credits
cannot pay for is a 429 `insufficient_quota` that tells the client not to retry. What Solvent cannot do
(`stream: true`, `partial_images`, a PNG `output_compression`) is refused by name, never ignored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ...errors import BadRequest, Forbidden, InvalidImage, NotFound, ValidationFailed
from ...generation.families import FAMILIES
from ...generation.tokens import clip_encode
from ...jobs.results import image_by_id
from ..bodies import parse_model, read_json_object, read_multipart
from ..deps import PrincipalDep, ServicesDep
from ..schemas import GenerationIn
from .common import (
    b64,
    default_model,
    generate,
    mask_from_alpha,
    open_image,
    png_b64,
    precheck,
    reencode,
    served,
)

router = APIRouter(prefix="/v1", tags=["openai"])
LINK_SECONDS = 3600
QUALITY = {"low": 0.5, "standard": 1.0, "medium": 1.0, "auto": 1.0, "hd": 2.0, "high": 2.0}
GPT_PREFIXES = ("gpt-image", "chatgpt-image")  # OpenAI's GPT image models: base64 only, no response_format
OPENAI_PREFIXES = (*GPT_PREFIXES, "dall-e")
FIDELITY = {"low": 0.75, "high": 0.5}  # an edit without a mask: how much of the input the pass may change
VARIATION_STRENGTH = 0.6  # a variation: an image-to-image pass of the input with no prompt


def render(status: int, code: str, message: str, field: str | None = None, headers: dict | None = None,
           **extra: Any) -> Response:
    headers = dict(headers or {})
    kind = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
            404: "invalid_request_error", 409: "invalid_request_error", 422: "invalid_request_error",
            429: "rate_limit_error"}.get(status, "server_error")
    if status == 401:
        code = "invalid_api_key"
    if status == 402:  # OpenAI's quota error: a 429 the client must not retry
        status, kind, code = 429, "insufficient_quota", "insufficient_quota"
        headers["x-should-retry"] = "false"
    body = {"error": {"message": message, "type": kind, "param": field, "code": code}}
    return JSONResponse(body, status_code=400 if status == 422 else status, headers=headers or None)


SURFACES = [("/v1/images", render), ("/v1/models", render)]  # installed by `create_app`


class Generations(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(..., min_length=1, max_length=32_000)
    model: str | None = None
    n: int = Field(1, ge=1, le=10)
    size: str | None = "auto"
    response_format: str | None = None  # None: b64_json for GPT image models, url otherwise
    quality: str | None = "auto"
    style: str | None = None
    user: str | None = Field(None, max_length=256)
    background: str | None = None
    output_format: str | None = "png"
    output_compression: int | None = Field(None, ge=0, le=100)
    moderation: str | None = None
    stream: bool | None = None
    partial_images: int | None = Field(None, ge=0, le=3)
    input_fidelity: str | None = None  # edits only


def _phrase(field: str, msg: str, value: Any, kind: str) -> str:
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {field}"
    return f"Invalid value for '{field}': {(msg or 'invalid').lower()} (got {value!r})."


def _parse(data: dict) -> Generations:
    return parse_model(Generations, data, _phrase)


def is_gpt(name: str | None) -> bool:
    """Whether `name` is one of OpenAI's GPT image models (they answer base64 and take no response_format)."""
    return bool(name) and name.lower().startswith(GPT_PREFIXES)


def _model(services, name: str | None) -> tuple[str, dict]:
    """The served model an OpenAI `model` names: exactly, by the longest prefix key, or (an OpenAI name) the
    default."""
    mapping = services.settings.openai_models
    models = served(services)
    default = mapping.get("default") or default_model(services, models)
    if not name:
        mid = default
    elif name in mapping:
        mid = mapping[name]
    else:
        prefix = max((k for k in mapping if k != "default" and name.startswith(k)), key=len, default=None)
        mid = mapping[prefix] if prefix else default if name.lower().startswith(OPENAI_PREFIXES) else name
    if mid not in models:
        raise NotFound(f"The model `{name}` does not exist or you do not have access to it.", field="model",
                       value=name)
    return mid, models[mid]


def _size(size: str | None, family) -> tuple[int, int]:
    if size in (None, "auto"):  # the Images API's default, whatever the model (upscaled where it is smaller)
        return 1024, 1024
    m = re.fullmatch(r"(\d{2,4})x(\d{2,4})", size)
    if not m:
        raise ValidationFailed(f"Invalid value for 'size': {size!r}; use 'WIDTHxHEIGHT' or 'auto'.", field="size",
                               value=size)
    w, h = int(m.group(1)), int(m.group(2))
    try:
        family.validate_size(w, h)
    except ValidationFailed as e:
        raise ValidationFailed(f"Invalid value for 'size': {size!r}: {e.message}", field="size", value=size) from e
    return w, h


def _choice(g: Generations, field: str, allowed: tuple, why: str = "") -> None:
    value = getattr(g, field)
    if value is not None and value not in allowed:
        raise ValidationFailed(f"Invalid value for '{field}': {value!r}; {why or 'one of ' + ', '.join(map(repr, allowed))}.",
                               field=field, value=value)


def _fields(services, g: Generations) -> dict:
    mid, record = _model(services, g.model)
    family = FAMILIES[record["family"]]
    w, h = _size(g.size, family)
    _choice(g, "response_format", ("url", "b64_json"), "use 'url' or 'b64_json'")
    _choice(g, "quality", tuple(QUALITY))
    _choice(g, "style", ("vivid", "natural"), "use 'vivid' or 'natural'")
    _choice(g, "output_format", ("png", "jpeg", "webp"))
    _choice(g, "background", ("auto", "opaque", "transparent"))
    _choice(g, "moderation", ("auto", "low"))
    _choice(g, "input_fidelity", ("low", "high"))
    if g.stream:
        raise ValidationFailed("Invalid value for 'stream': true; Solvent answers image requests whole (stream: "
                               "false), not as server-sent events.", field="stream", value=True)
    if g.partial_images:
        raise ValidationFailed(f"Invalid value for 'partial_images': {g.partial_images}; partial images come only "
                               "with stream: true, which Solvent does not do (send 0 or leave it out).",
                               field="partial_images", value=g.partial_images)
    if g.output_compression not in (None, 100) and (g.output_format or "png") == "png":
        raise ValidationFailed(f"Invalid value for 'output_compression': {g.output_compression}; compression is for "
                               "jpeg and webp output (PNG is lossless).", field="output_compression",
                               value=g.output_compression)
    if g.background == "transparent" and g.output_format == "jpeg":
        raise ValidationFailed("Invalid value for 'background': 'transparent' needs output_format png or webp.",
                               field="background", value=g.background)
    steps = int(record.get("default_steps") or family.default_steps)
    steps = max(1, min(150, round(steps * QUALITY[g.quality or "auto"])))
    cfg = float(record.get("default_cfg") or family.default_cfg)
    if g.style == "vivid":
        cfg = min(35.0, cfg * 1.5)
    out = dict(model=mid, prompt=g.prompt, width=w, height=h, steps=steps, cfg_scale=cfg, batch_size=g.n,
               output_format=g.output_format or "png")
    if g.background == "transparent":
        out["background"] = "transparent"
    return out


def _secret(request: Request) -> bytes:
    app = request.app
    if getattr(app.state, "link_secret", None) is None:
        services = app.state.services
        path = services.settings.home / "link-signing.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        app.state.link_secret = path.read_text().strip().encode()
    return app.state.link_secret


def _sign(secret: bytes, image_id: str, fmt: str, expires: int) -> str:
    return hmac.new(secret, f"{image_id}.{fmt}:{expires}".encode(), hashlib.sha256).hexdigest()


async def _respond(request: Request, services, principal, fields: dict, g: Generations) -> JSONResponse:
    done = await generate(request, services, principal, GenerationIn(**fields))
    fmt = g.output_format or "png"
    fmt_quality = g.output_compression if fmt != "png" else None
    data: list[dict] = []
    response_format = g.response_format or ("b64_json" if is_gpt(g.model) else "url")
    if response_format == "b64_json":
        encoded = await asyncio.to_thread(lambda: [reencode(d, fmt, fmt_quality) for d, _, _ in done.images])
        data = [{"b64_json": b64(d), "revised_prompt": g.prompt} for d in encoded]
    else:
        expires = int(time.time()) + LINK_SECONDS
        base = str(request.base_url).rstrip("/")
        q = f"&quality={fmt_quality}" if fmt_quality is not None else ""
        for _, _, image_id in done.images:
            sig = _sign(_secret(request), image_id, fmt + q, expires)
            data.append({"url": f"{base}/v1/images/files/{image_id}.{fmt}?expires={expires}{q}&signature={sig}",
                         "revised_prompt": g.prompt})
    tokens = prompt_tokens(g.prompt)
    price = int(done.job.spec.price_mc or 0)
    quality = g.quality if g.quality not in (None, "auto") else ("medium" if is_gpt(g.model) else "standard")
    body = {"created": int(time.time()), "data": data,
            "background": "transparent" if fields.get("background") == "transparent" else "opaque",
            "output_format": fmt, "quality": quality, "size": f"{fields['width']}x{fields['height']}",
            "usage": {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens,
                      "input_tokens_details": {"text_tokens": tokens, "image_tokens": 0}},
            "solvent": {"job_id": done.job.id, "model": done.job.model, "images": len(done.images),
                        "credits_mc": price}}
    return JSONResponse(body, headers={"Solvent-Credits-Mc": str(price), "Solvent-Job-Id": done.job.id})


def prompt_tokens(prompt: str) -> int:
    """The prompt's length in CLIP tokens (what `usage.input_tokens` counts; Solvent does not price by tokens)."""
    return len(clip_encode(prompt))


@router.post("/images/generations", summary="OpenAI Images: create images from a prompt")
async def generations(request: Request, services: ServicesDep, principal: PrincipalDep) -> JSONResponse:
    body = await read_json_object(request, BadRequest, "We could not parse the JSON body of your request: {}.",
                                  "The body of your request must be a JSON object.")
    g = _parse(body)
    return await _respond(request, services, principal, _fields(services, g), g)


@router.post("/images/edits", summary="OpenAI Images: edit an image (transparent mask areas are repainted)")
async def edits(request: Request, services: ServicesDep, principal: PrincipalDep) -> JSONResponse:
    items, files = await read_multipart(request, "Edits (with an `image` file)")
    fields: dict[str, Any] = dict(items)
    if "image" not in files:
        raise ValidationFailed("Missing required parameter: 'image'.", field="image")
    for k in ("n", "output_compression"):
        if k in fields:
            try:
                fields[k] = int(fields[k])
            except ValueError as e:
                raise ValidationFailed(f"Invalid value for '{k}': must be an integer.", field=k) from e
    g = _parse(fields)
    out = _fields(services, g)
    await precheck(services, principal, out, "mask" in files)
    out.update(await asyncio.to_thread(_edit_inputs, services, files, "size" in fields, (out["width"], out["height"])))
    if "mask" not in out:  # no mask: the whole image changes, as much as `input_fidelity` lets it
        out["strength"] = FIDELITY[g.input_fidelity or "low"]
    return await _respond(request, services, principal, out, g)


@router.post("/images/variations", summary="OpenAI Images: variations of an image")
async def variations(request: Request, services: ServicesDep, principal: PrincipalDep) -> JSONResponse:
    items, files = await read_multipart(request, "Variations (with an `image` file)")
    fields: dict[str, Any] = dict(items)
    if "image" not in files:
        raise ValidationFailed("Missing required parameter: 'image'.", field="image")
    if "n" in fields:
        try:
            fields["n"] = int(fields["n"])
        except ValueError as e:
            raise ValidationFailed("Invalid value for 'n': must be an integer.", field="n") from e
    g = _parse({**fields, "prompt": "variation"})
    out = {**_fields(services, g), "prompt": "", "strength": VARIATION_STRENGTH}
    await precheck(services, principal, out)
    inputs = await asyncio.to_thread(_edit_inputs, services, {"image": files["image"]}, "size" in fields,
                                     (out["width"], out["height"]))
    out.update({k: v for k, v in inputs.items() if k not in ("mask", "strength")})
    return await _respond(request, services, principal, out, g.model_copy(update={"prompt": ""}))


def _edit_inputs(services, files: dict[str, bytes], sized: bool, size: tuple[int, int]) -> dict:
    """Decode the edit's image and mask under the server's limits (off the event loop)."""
    try:
        image = open_image(services, files["image"], "image")
    except InvalidImage as e:
        raise ValidationFailed(f"Invalid image: {e.message}", field="image") from e
    out: dict[str, Any] = {}
    if not sized:
        out.update(width=image.width, height=image.height)
        size = image.size
    mask = None
    if "mask" in files:
        try:
            m = open_image(services, files["mask"], "mask")
        except InvalidImage as e:
            raise ValidationFailed(f"Invalid mask: {e.message}", field="mask") from e
        if m.size != image.size:
            raise ValidationFailed(f"Invalid mask: it must be the size of the image ({image.width}x{image.height}) "
                                   f"but is {m.width}x{m.height}.", field="mask")
        if "A" not in m.getbands():
            raise ValidationFailed("Invalid mask: it needs an alpha channel (transparent = edit).", field="mask")
        mask = mask_from_alpha(m)
    elif "A" in image.getbands():
        mask = mask_from_alpha(image)
    out["init_image"] = png_b64(image.convert("RGB").resize(size))
    if mask is not None:
        out["mask"] = png_b64(mask.resize(size))
        out["strength"] = 1.0
    return out


@router.get("/images/files/{name}", summary="A signed, expiring link to an image", include_in_schema=False)
def image_file(name: str, request: Request, services: ServicesDep, expires: int = 0, signature: str = "",
               quality: int | None = None) -> Response:
    image_id, _, fmt = name.rpartition(".")
    if fmt not in ("png", "jpeg", "webp") or not image_id:
        raise NotFound("No such image.", field="image")
    signed = fmt + (f"&quality={quality}" if quality is not None else "")
    if not hmac.compare_digest(_sign(_secret(request), image_id, signed, expires), signature):
        raise Forbidden("This link's signature is not valid.", field="signature")
    if expires < time.time():
        raise Forbidden("This link has expired; request the image again.", field="expires")
    # The signature names the image, and only Solvent can sign: the link is the capability, so the image is
    # read by its id alone (it is not guessable, and the signature was checked above).
    row = image_by_id(services.db, image_id)
    if row is None:
        raise NotFound("No such image.", field="image")
    data = reencode(services.images.get(row.blob), fmt, quality)
    return Response(data, media_type=f"image/{fmt}", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/models", summary="OpenAI: the models Solvent serves")
def list_models(services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("read")
    return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "solvent"}
                                       for m in sorted(served(services))]}
