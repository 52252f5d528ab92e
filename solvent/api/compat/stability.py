"""Stability REST API v1 (`/v1/generation`, `/v1/engines`, `/v1/user`) and v2beta stable-image.

Engine ids are Solvent's model ids. Validation follows the public spec with its named errors;
errors are `{"id", "name", "message"}` (v2beta: `{"id", "name", "errors": [...]}`).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ...errors import BadRequest, Forbidden, NotFound, ValidationFailed
from ...generation.families import FAMILIES
from ...generation.samplers import resolve_sampler, stability_names
from ...money import mc_to_credits_number
from ..bodies import parse_model, read_json_object, read_multipart
from ..deps import PrincipalDep, ServicesDep
from ..schemas import GenerationIn
from .common import (
    b64,
    default_model,
    form_format,
    generate,
    image_size,
    mask_from_alpha,
    open_image,
    png_b64,
    reencode,
    served,
)

router = APIRouter(tags=["stability"], include_in_schema=True)

STYLE_PRESETS = {
    "enhance": "highly detailed, sharp focus", "anime": "anime style, key visual, vibrant",
    "photographic": "photograph, 35mm, natural light", "digital-art": "digital art, concept art",
    "comic-book": "comic book style, bold lines", "fantasy-art": "fantasy art, epic, detailed",
    "line-art": "line art, ink drawing", "analog-film": "analog film photo, film grain",
    "neon-punk": "neon punk, cyberpunk, vibrant neon", "isometric": "isometric, 3d, clean",
    "low-poly": "low poly, 3d render", "origami": "origami, folded paper", "modeling-compound":
    "clay model, plasticine", "cinematic": "cinematic still, dramatic lighting", "3d-model": "3d model render",
    "pixel-art": "pixel art, 16-bit", "tile-texture": "seamless tile texture",
}
CLIP_PRESETS = ("FAST_BLUE", "FAST_GREEN", "NONE", "SIMPLE", "SLOW", "SLOWER", "SLOWEST")
SDXL_DIMENSIONS = {(1024, 1024), (1152, 896), (1216, 832), (1344, 768), (1536, 640), (640, 1536), (768, 1344),
                   (832, 1216), (896, 1152)}
PIXEL_BOUNDS = {"tiny": (64 * 64, 1_048_576), "sd1": (262_144, 1_048_576), "sd2": (589_824, 1_048_576)}
ASPECT_RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
NAMED = {"invalid_samples", "invalid_height_or_width", "invalid_file_size", "invalid_mime_type",
         "invalid_image_dimensions", "invalid_mask_image", "invalid_prompts", "invalid_pixel_count",
         "invalid_sdxl_v1_dimensions"}


class StabilityError(BadRequest):
    """A 400 with one of the spec's error names as its code (one subclass per name, built below)."""


def _camel(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


# One class per error name the spec documents, each with its own fixed `code` (never set on an instance).
NAMED_ERRORS: dict[str, type[StabilityError]] = {
    n: type(_camel(n), (StabilityError,), {"code": n, "__doc__": f"Stability's `{n}`."}) for n in sorted(NAMED)}


def _name(status: int, code: str) -> str:
    if code in NAMED:
        return code
    return {400: "bad_request", 401: "unauthorized", 402: "insufficient_balance", 403: "permission_denied",
            404: "not_found", 409: "conflict", 422: "bad_request", 429: "rate_limit_exceeded",
            504: "timeout"}.get(status, "server_error")


def render_v1(status: int, code: str, message: str, field: str | None = None, headers: dict | None = None,
              **extra: Any) -> Response:
    prefixed = field is None or message.startswith((field, f"`{field}`"))
    text = message if prefixed else f"{field}: {message}"
    body = {"id": uuid.uuid4().hex, "name": _name(status, code), "message": text}
    return JSONResponse(body, status_code=400 if status == 422 else status, headers=headers)


def render_v2(status: int, code: str, message: str, field: str | None = None, headers: dict | None = None,
              **extra: Any) -> Response:
    body = {"id": uuid.uuid4().hex, "name": _name(status, code), "errors": [message]}
    return JSONResponse(body, status_code=400 if status == 422 else status, headers=headers)


# Error shapes by path prefix; `create_app` installs them (nothing registers itself at import).
SURFACES = [("/v1/generation", render_v1), ("/v1/engines", render_v1), ("/v1/user", render_v1),
            ("/v2beta", render_v2)]


# ----------------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------------


class TextPrompt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(..., max_length=2000)
    weight: float = 1.0


class TextToImage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text_prompts: list[TextPrompt]
    cfg_scale: float = Field(7.0, ge=0, le=35)
    clip_guidance_preset: str = "NONE"
    height: int | None = None
    width: int | None = None
    samples: int = Field(1, ge=1, le=10)
    seed: int = Field(0, ge=0, le=4_294_967_295)
    steps: int | None = Field(None, ge=10, le=150)
    sampler: str | None = None
    style_preset: str | None = None
    extras: dict[str, Any] | None = None


def _org_header(request: Request, principal) -> None:
    org = request.headers.get("organization")
    if org and org != principal.org_id:
        raise Forbidden(f"this API key belongs to organisation {principal.org_id!r}, not {org!r}.",
                        field="Organization", value=org)


# Stability's own engine ids (its docs and samples) and the family each is; `SOLVENT_STABILITY_ENGINES` maps them
# to installed models, else the first served model of that family serves them, else the default model.
STABILITY_ENGINES = {
    "stable-diffusion-v1-6": "sd1", "stable-diffusion-v1-5": "sd1", "stable-diffusion-512-v2-1": "sd2",
    "stable-diffusion-768-v2-1": "sd2", "stable-diffusion-xl-1024-v0-9": "sdxl", "stable-diffusion-xl-1024-v1-0": "sdxl",
    "stable-diffusion-xl-beta-v2-2-2": "sd1",
}


def _engine(services, engine_id: str) -> dict:
    """The served model an engine id names: a Solvent model id, or one of Stability's (mapped, else by family)."""
    models = served(services)
    mapped = services.settings.stability_engines.get(engine_id)
    if mapped is None and engine_id not in models and engine_id in STABILITY_ENGINES:
        family = STABILITY_ENGINES[engine_id]
        mapped = min((k for k, r in models.items() if r.get("family") == family), default=None) or \
            default_model(services, models)
    record = models.get(mapped or engine_id)
    if record is None:
        raise NotFound(f"engine {engine_id!r} was not found; see GET /v1/engines/list.", field="engine_id",
                       value=engine_id)
    return record


def _check_size(family: str, width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if v % 64:
            raise _named("invalid_height_or_width", f"{name} must be a multiple of 64 but is {v}", name, v)
    if family == "sdxl":
        if (width, height) not in SDXL_DIMENSIONS:
            allowed = ", ".join(f"{w}x{h}" for w, h in sorted(SDXL_DIMENSIONS))
            raise _named("invalid_sdxl_v1_dimensions", f"for SDXL engines width and height must be one of "
                         f"{allowed} but are {width}x{height}", "width", f"{width}x{height}")
        return
    lo, hi = PIXEL_BOUNDS.get(family, PIXEL_BOUNDS["sd1"])
    if not lo <= width * height <= hi:
        raise _named("invalid_pixel_count", f"for this engine {lo} <= width*height <= {hi} but it is "
                     f"{width * height} ({width}x{height})", "width", width * height)


def _named(name: str, message: str, field: str, value: Any = None) -> StabilityError:
    return NAMED_ERRORS[name](message, field=field, value=value)


def _prompts(items: list[TextPrompt], style: str | None) -> tuple[str, str]:
    pos, neg = [], []
    if not items or not any(p.text.strip() for p in items):
        raise _named("invalid_prompts", "text_prompts must contain at least one prompt with text", "text_prompts")
    for p in items:
        text = p.text.strip()
        if not text:
            continue
        w = abs(p.weight)
        part = text if math.isclose(w, 1.0) else f"({text}:{w:g})"
        (neg if p.weight < 0 else pos).append(part)
    if style is not None:
        if style not in STYLE_PRESETS:
            raise ValidationFailed(f"style_preset must be one of {', '.join(STYLE_PRESETS)} but is {style!r}",
                                   field="style_preset", value=style)
        pos.append(STYLE_PRESETS[style])
    return ", ".join(pos), ", ".join(neg)


def _common(services, engine_id: str, t: TextToImage, accept: str, width: int | None, height: int | None) -> dict:
    record = _engine(services, engine_id)
    family = FAMILIES[record["family"]]
    width, height = width or family.client_side, height or family.client_side
    _check_size(record["family"], width, height)
    if t.samples > 1 and "image/png" in accept:
        raise _named("invalid_samples", "samples > 1 is only allowed with Accept: application/json", "samples",
                     t.samples)
    if t.clip_guidance_preset not in CLIP_PRESETS:
        raise ValidationFailed(f"clip_guidance_preset must be one of {', '.join(CLIP_PRESETS)} but is "
                               f"{t.clip_guidance_preset!r}", field="clip_guidance_preset",
                               value=t.clip_guidance_preset)
    if t.sampler is not None:
        if t.sampler not in stability_names():
            raise ValidationFailed(f"sampler must be one of {', '.join(stability_names())} but is {t.sampler!r}",
                                   field="sampler", value=t.sampler)
        resolve_sampler(t.sampler)
    prompt, negative = _prompts(t.text_prompts, t.style_preset)
    return dict(model=record["id"], prompt=prompt, negative_prompt=negative, width=width, height=height,
                steps=t.steps, cfg_scale=t.cfg_scale, sampler=t.sampler, seed=t.seed or -1, batch_size=t.samples)


async def _answer(request: Request, services, principal, fields: dict) -> Response:
    accept = request.headers.get("accept", "application/json")
    done = await generate(request, services, principal, GenerationIn(**fields))
    if "image/png" in accept:
        data, seed, _ = done.images[0]
        return Response(data, media_type="image/png", headers={"Finish-Reason": "SUCCESS", "Seed": str(seed)})
    return JSONResponse({"artifacts": [{"base64": b64(d), "seed": seed, "finishReason": "SUCCESS"}
                                       for d, seed, _ in done.images]})


def _phrase(field: str, msg: str, value: Any, kind: str) -> str:
    return f"{field}: {(msg or 'is invalid').lower()}"


def _parse(model, data: dict) -> Any:
    return parse_model(model, data, _phrase)


@router.post("/v1/generation/{engine_id}/text-to-image", summary="Stability v1: text to image")
async def text_to_image(engine_id: str, request: Request, services: ServicesDep, principal: PrincipalDep):
    _org_header(request, principal)
    data = await read_json_object(request, BadRequest, "the body is not valid JSON: {}", "the body must be a JSON object")
    t = _parse(TextToImage, data)
    fields = _common(services, engine_id, t, request.headers.get("accept", ""), t.width, t.height)
    return await _answer(request, services, principal, fields)


async def _form(request: Request) -> tuple[dict, dict[str, bytes]]:
    items, files = await read_multipart(request, "this endpoint")
    for key, data in files.items():
        if len(data) > 10 * 1024 * 1024:
            raise _named("invalid_file_size", f"{key} is larger than 10 MiB", key, len(data))
    fields: dict[str, Any] = {}
    prompts: dict[int, dict] = {}
    for key, value in items:
        if key.startswith("text_prompts["):
            idx, _, rest = key[len("text_prompts["):].partition("]")
            try:
                prompts.setdefault(int(idx), {})[rest.strip("[]")] = value
            except ValueError as e:
                raise _named("invalid_prompts", f"bad prompt field {key!r}", "text_prompts") from e
        else:
            fields[key] = value
    fields["text_prompts"] = [prompts[i] for i in sorted(prompts)]
    return fields, files


class ImageToImage(TextToImage):
    model_config = ConfigDict(extra="ignore")
    init_image_mode: str = "IMAGE_STRENGTH"
    image_strength: float = Field(0.35, ge=0, le=1)
    step_schedule_start: float = Field(0.65, ge=0, le=1)
    step_schedule_end: float | None = Field(None, ge=0, le=1)
    mask_source: str | None = None


def _init_image(files: dict[str, bytes], key: str = "init_image") -> bytes:
    data = files.get(key)
    if not data:
        raise BadRequest(f"{key}: is required", field=key)
    return data


async def _img2img_fields(engine_id: str, request: Request, services) -> tuple[dict, dict[str, bytes]]:
    fields, files = await _form(request)
    t = _parse(ImageToImage, fields)
    init = _init_image(files)
    w, h = await asyncio.to_thread(image_size, services, init, "init_image")
    try:
        out = _common(services, engine_id, t, request.headers.get("accept", ""), w, h)
    except StabilityError as e:
        if e.code in ("invalid_height_or_width", "invalid_pixel_count", "invalid_sdxl_v1_dimensions"):
            raise _named("invalid_image_dimensions", f"init_image dimensions {w}x{h} are not valid for this "
                         f"engine: {e.message}", "init_image", f"{w}x{h}") from e
        raise
    if t.init_image_mode == "IMAGE_STRENGTH":
        strength = 1 - t.image_strength
    elif t.init_image_mode == "STEP_SCHEDULE":
        strength = 1 - t.step_schedule_start
    else:
        raise ValidationFailed(f"init_image_mode must be IMAGE_STRENGTH or STEP_SCHEDULE but is "
                               f"{t.init_image_mode!r}", field="init_image_mode", value=t.init_image_mode)
    out.update(init_image=b64(init), strength=max(0.01, min(1.0, strength)))
    return {**out, "_mask_source": t.mask_source}, files


@router.post("/v1/generation/{engine_id}/image-to-image", summary="Stability v1: image to image")
async def image_to_image(engine_id: str, request: Request, services: ServicesDep, principal: PrincipalDep):
    _org_header(request, principal)
    fields, _ = await _img2img_fields(engine_id, request, services)
    fields.pop("_mask_source")
    return await _answer(request, services, principal, fields)


@router.post("/v1/generation/{engine_id}/image-to-image/masking", summary="Stability v1: inpainting")
async def masking(engine_id: str, request: Request, services: ServicesDep, principal: PrincipalDep):


    _org_header(request, principal)
    fields, files = await _img2img_fields(engine_id, request, services)
    fields["mask"], rgb = await asyncio.to_thread(_mask_of, services, files, fields.pop("_mask_source"))
    if rgb is not None:
        fields["init_image"] = rgb
    return await _answer(request, services, principal, fields)


def _mask_of(services, files: dict[str, bytes], source: str | None) -> tuple[str, str | None]:
    """(the mask, the init image without its alpha when the alpha was the mask) as base64 PNGs."""

    from PIL import ImageOps

    init = open_image(services, files["init_image"], "init_image")
    if source in ("MASK_IMAGE_WHITE", "MASK_IMAGE_BLACK"):
        data = files.get("mask_image")
        if not data:
            raise _named("invalid_mask_image", "mask_image: is required for mask_source " + source, "mask_image")
        mask = open_image(services, data, "mask_image", mode="L")
        if mask.size != init.size:
            raise _named("invalid_mask_image", f"mask_image must be {init.size[0]}x{init.size[1]} like init_image "
                         f"but is {mask.size[0]}x{mask.size[1]}", "mask_image")
        if source == "MASK_IMAGE_BLACK":
            mask = ImageOps.invert(mask)
    elif source == "INIT_IMAGE_ALPHA":
        if "A" not in init.getbands():
            raise _named("invalid_mask_image", "init_image has no alpha channel for mask_source INIT_IMAGE_ALPHA",
                         "init_image")
        mask = mask_from_alpha(init)
    else:
        raise ValidationFailed(f"mask_source must be MASK_IMAGE_WHITE, MASK_IMAGE_BLACK or INIT_IMAGE_ALPHA but "
                               f"is {source!r}", field="mask_source", value=source)
    if source != "INIT_IMAGE_ALPHA":
        return png_b64(mask), None
    return png_b64(mask), png_b64(init.convert("RGB"))


@router.get("/v1/engines/list", summary="Stability v1: engines (Solvent's models)")
def engines(services: ServicesDep, principal: PrincipalDep) -> list[dict]:
    principal.require("read")
    models = served(services)
    out = [{"id": m, "name": m, "description": f"{FAMILIES[r['family']].label} model served by Solvent",
            "type": "PICTURE"} for m, r in sorted(models.items())]
    for alias in (*STABILITY_ENGINES, *services.settings.stability_engines):  # Stability's ids its samples use
        if alias not in models:
            try:
                target = _engine(services, alias)["id"]
            except NotFound:
                continue
            out.append({"id": alias, "name": alias, "description": f"Stability engine id, served by {target}",
                        "type": "PICTURE"})
    return out


@router.get("/v1/user/account", summary="Stability v1: the account")
def account(services: ServicesDep, principal: PrincipalDep) -> dict:
    from ...accounts import me

    principal.require("read")  # account details: not for a generate-only key
    info = me(services.db, principal)
    user = info.get("user") or {}
    return {"id": user.get("id") or principal.key_id, "email": user.get("email", ""), "profile_picture": "",
            "organizations": [{"id": info["org"]["id"], "name": info["org"]["name"],
                               "role": info.get("role") or "MEMBER", "is_default": True}]}


@router.get("/v1/user/balance", summary="Stability v1: credit balance")
def balance(services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("read")
    mc = services.billing.ledger.balance(principal.org_id)["available_mc"]
    return {"credits": mc_to_credits_number(mc)}  # the wire format is a JSON number; the ledger stays in integers


# ----------------------------------------------------------------------------------------------
# v2beta stable-image
# ----------------------------------------------------------------------------------------------


def _aspect_size(native: int, ratio: str, multiple: int = 8) -> tuple[int, int]:
    a, b = (int(x) for x in ratio.split(":"))
    w = max(multiple, round(native * math.sqrt(a / b) / multiple) * multiple)
    h = max(multiple, round(native * math.sqrt(b / a) / multiple) * multiple)
    return w, h


SD3_MODELS = ("sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash", "sd3-large", "sd3-large-turbo",
              "sd3-medium")


@router.post("/v2beta/stable-image/generate/{service}", summary="Stability v2beta: stable-image generate")
async def stable_image(service: str, request: Request, services: ServicesDep, principal: PrincipalDep):
    """`ultra`, `core` and `sd3` (with `model`: sd3.5-large, sd3.5-large-turbo, sd3.5-medium, …), each mapped to
    an installed model by a setting; `ultra` and `sd3` also take `image` + `strength` (sd3: `mode=image-to-image`)
    and sd3 takes `cfg_scale`."""
    models = services.settings.stability_v2_models
    if service not in models:
        raise NotFound(f"unknown service {service!r}; one of {', '.join(models)}", field="service", value=service)
    items, files = await read_multipart(request, "this endpoint")
    form = dict(items)
    prompt = str(form.get("prompt", ""))
    if not 1 <= len(prompt) <= 10000:
        raise ValidationFailed("prompt: must be 1 to 10000 characters", field="prompt")
    model = models[service]
    if service == "sd3":
        name = str(form.get("model", "sd3.5-large"))
        if name not in SD3_MODELS:
            raise ValidationFailed(f"model: must be one of {', '.join(SD3_MODELS)} but is {name!r}", field="model",
                                   value=name)
        model = services.settings.stability_sd3_models.get(name) or model
    mode = str(form.get("mode", "image-to-image" if service == "ultra" and files.get("image") else "text-to-image"))
    if mode not in ("text-to-image", "image-to-image") or (mode == "image-to-image" and service == "core"):
        allowed = "text-to-image" if service == "core" else "text-to-image, image-to-image"
        raise ValidationFailed(f"mode: must be one of {allowed} but is {mode!r}", field="mode", value=mode)
    image = files.get("image")
    if mode == "image-to-image" and not image:
        raise ValidationFailed("image: is required for image-to-image", field="image")
    if mode == "text-to-image" and image and service == "sd3":
        raise ValidationFailed("image: is only for mode=image-to-image", field="image")
    ratio = str(form.get("aspect_ratio", "1:1"))
    if ratio not in ASPECT_RATIOS:
        raise ValidationFailed(f"aspect_ratio: must be one of {', '.join(ASPECT_RATIOS)} but is {ratio!r}",
                               field="aspect_ratio", value=ratio)
    fmt = form_format(form)
    numbers: dict[str, float] = {}
    for key, lo, hi, default in (("seed", 0, 4_294_967_294, 0), ("strength", 0, 1, None), ("cfg_scale", 1, 10, None)):
        if key in form:
            try:
                numbers[key] = float(form[key]) if key != "seed" else int(form[key])
            except ValueError as e:
                raise ValidationFailed(f"{key}: must be a number but is {form[key]!r}", field=key,
                                       value=form[key]) from e
            if not lo <= numbers[key] <= hi:
                raise ValidationFailed(f"{key}: must be between {lo} and {hi} but is {form[key]}", field=key,
                                       value=form[key])
        elif default is not None:
            numbers[key] = default
    if mode == "image-to-image" and "strength" not in numbers:
        raise ValidationFailed("strength: is required for image-to-image (0 keeps the image, 1 replaces it)",
                               field="strength")
    if "cfg_scale" in numbers and service != "sd3":
        raise ValidationFailed(f"cfg_scale: is not a parameter of generate/{service}", field="cfg_scale")
    style = form.get("style_preset")
    if style is not None and style not in STYLE_PRESETS:
        raise ValidationFailed(f"style_preset: must be one of {', '.join(STYLE_PRESETS)}", field="style_preset")
    record = _engine(services, model)
    family = FAMILIES[record["family"]]
    extra: dict[str, Any] = {}
    if mode == "image-to-image":
        iw, ih = await asyncio.to_thread(image_size, services, image, "image")  # decodable, under the limits
        ratio = _ratio(iw, ih)  # the output keeps the input's aspect
        extra.update(init_image=b64(image), strength=max(0.01, float(numbers["strength"])))
    w, h = _aspect_size(family.client_side, ratio, family.multiple)
    full = prompt + (", " + STYLE_PRESETS[style] if style else "")
    done = await generate(request, services, principal, GenerationIn(
        model=model, prompt=full, negative_prompt=str(form.get("negative_prompt", ""))[:10000], width=w, height=h,
        seed=int(numbers["seed"]) or -1, cfg_scale=numbers.get("cfg_scale"), **extra))
    data, seed_used, _ = done.images[0]
    data = await asyncio.to_thread(reencode, data, fmt)  # image encoding: off the event loop
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"image": b64(data), "finish_reason": "SUCCESS", "seed": seed_used})
    return Response(data, media_type=f"image/{fmt}", headers={"finish-reason": "SUCCESS", "seed": str(seed_used)})


CONTROL_PREPROCESSORS = {"sketch": "scribble", "structure": "canny"}  # what each service reads from the image
CONTROL_SERVICES = (*CONTROL_PREPROCESSORS, "style")  # style: the image is an IP-Adapter reference


@router.post("/v2beta/stable-image/control/{service}",
             summary="Stability v2beta: control (sketch, structure: a ControlNet; style: an IP-Adapter)")
async def stable_image_control(service: str, request: Request, services: ServicesDep, principal: PrincipalDep):
    if service not in CONTROL_SERVICES:
        raise NotFound(f"unknown control service {service!r}; one of {', '.join(CONTROL_SERVICES)}",
                       field="service", value=service)
    items, files = await read_multipart(request, "this endpoint")
    form = dict(items)
    prompt = str(form.get("prompt", ""))
    if not 1 <= len(prompt) <= 10000:
        raise ValidationFailed("prompt: must be 1 to 10000 characters", field="prompt")
    image = files.get("image")
    if not image:
        raise ValidationFailed("image: is required", field="image")
    knob = "fidelity" if service == "style" else "control_strength"  # style's "how closely the style follows"
    try:
        strength = float(form.get(knob, 0.5 if service == "style" else 0.7))
        seed = int(form.get("seed", 0))
    except ValueError as e:
        raise ValidationFailed(f"{knob} and seed must be numbers: {e}", field=knob) from e
    if not 0 <= strength <= 1:
        raise ValidationFailed(f"{knob}: must be between 0 and 1 but is {strength:g}", field=knob, value=strength)
    if not 0 <= seed <= 4_294_967_294:
        raise ValidationFailed("seed: must be between 0 and 4294967294", field="seed", value=seed)
    fmt = form_format(form)
    style = form.get("style_preset")
    if style is not None and style not in STYLE_PRESETS:
        raise ValidationFailed(f"style_preset: must be one of {', '.join(STYLE_PRESETS)}", field="style_preset")
    ratio = str(form.get("aspect_ratio", "1:1"))
    if service == "style" and ratio not in ASPECT_RATIOS:
        raise ValidationFailed(f"aspect_ratio: must be one of {', '.join(ASPECT_RATIOS)} but is {ratio!r}",
                               field="aspect_ratio", value=ratio)
    models = services.settings.stability_v2_models
    model = models.get(service) or models.get("core") or services.settings.default_model
    record = _engine(services, model)
    family = FAMILIES[record["family"]]
    extra: dict[str, Any]
    if service == "style":
        adapters = record.get("ip_adapters") or []
        if not adapters:
            raise NotFound(f"no IP-Adapter (with its image encoder) is installed for {model!r}, so control/style "
                           "cannot run; add one that fits it with `solvent models add`.", field="service",
                           value=service)
        await asyncio.to_thread(image_size, services, image, "image")  # decodable, under the limits
        w, h = _aspect_size(family.client_side, ratio, family.multiple)
        extra = {"ip_adapters": [{"model": adapters[0], "images": [b64(image)], "weight": strength}]}
    else:
        nets = [n for n in record.get("controlnets") or [] if n not in (record.get("t2i_adapters") or [])] or \
            record.get("controlnets") or []
        if not nets:
            raise NotFound(f"no ControlNet is installed for {model!r}, so control/{service} cannot run; add one that "
                           "fits it with `solvent models add`.", field="service", value=service)
        net = next((n for n in nets if service in n), nets[0])
        iw, ih = await asyncio.to_thread(image_size, services, image, "image")
        w, h = _aspect_size(family.client_side, _ratio(iw, ih), family.multiple)
        extra = {"controlnets": [{"model": net, "image": b64(image), "weight": strength,
                                  "preprocessor": CONTROL_PREPROCESSORS[service]}]}
    full = prompt + (", " + STYLE_PRESETS[style] if style else "")
    done = await generate(request, services, principal, GenerationIn(
        model=model, prompt=full, negative_prompt=str(form.get("negative_prompt", ""))[:10000], width=w, height=h,
        seed=seed or -1, **extra))
    data, seed_used, _ = done.images[0]
    data = await asyncio.to_thread(reencode, data, fmt)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"image": b64(data), "finish_reason": "SUCCESS", "seed": seed_used})
    return Response(data, media_type=f"image/{fmt}", headers={"finish-reason": "SUCCESS", "seed": str(seed_used)})


def _ratio(width: int, height: int) -> str:
    """The input's aspect as `a:b` in small numbers (the output keeps it, at the family's native area)."""
    from fractions import Fraction

    f = Fraction(width, height).limit_denominator(8)
    return f"{f.numerator}:{f.denominator}"
