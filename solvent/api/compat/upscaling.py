"""Upscaling on the compatible APIs, each an ordinary upscale job (`UpscaleIn` through the same `admit`):

- AUTOMATIC1111: `/sdapi/v1/extra-single-image`, `/extra-batch-images` (upscaler_1 by `upscaling_resize` or to
  `upscaling_resize_w`×`_h`, cropped to fit when `upscaling_crop`), `/upscalers`, `/latent-upscale-modes`,
  `/realesrgan-models`;
- Stability v1: `/v1/generation/{engine_id}/image-to-image/upscale` (`esrgan-v1-x2plus` and
  `stable-diffusion-x4-latent-upscaler` are aliases of the default upscaler; an installed upscaler's id works too);
- Stability v2beta: `upscale/fast` (×4), `upscale/conservative` (to about 4 MP, refined at `creativity` with the
  prompt), `upscale/creative` (the same, asynchronous: answers an id), and `GET /v2beta/results/{id}` for any job.

Errors render in each surface's own shape (the A1111 and Stability renderers already cover these prefixes).
"""

from __future__ import annotations

import asyncio
import io
import math
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from ...errors import BadRequest, EngineError, NotFound, ValidationFailed
from ...generation.request import BUILTIN_UPSCALERS, LATENT_MODES
from ...storage.db import utcnow
from ...storage.models import FINAL_STATES, JobState
from ..bodies import parse_model, read_json_object, read_multipart
from ..deps import PrincipalDep, ServicesDep
from ..schemas import UpscaleIn
from .common import (
    b64,
    decode_b64_image,
    default_model,
    form_format,
    form_number,
    generate,
    image_size,
    reencode,
    served,
    submit,
)

router = APIRouter(tags=["upscaling"])
SURFACES: list = []  # /sdapi/ and /v1/generation, /v2beta render with A1111's and Stability's renderers
STABILITY_ALIASES = {"esrgan-v1-x2plus": 2.0, "stable-diffusion-x4-latent-upscaler": 4.0}
CONSERVATIVE_PIXELS = 2048 * 2048  # what Stability's conservative and creative upscales aim at (about 4 MP)
RESULTS_TTL = timedelta(hours=24)  # an asynchronous result is fetchable this long after it ends, as Stability's


def _upscalers(services) -> dict[str, dict]:
    from ...jobs.registry import served_models

    return served_models(services.db, "upscaler")


def _name(services, name: str | None, field: str) -> str:
    """An A1111 upscaler name as Solvent's: None / Lanczos → lanczos; an installed id as itself."""
    if name is None or name in ("None", "Lanczos", "lanczos"):
        return "lanczos"
    ups = _upscalers(services)
    if name not in ups:
        names = ["None", "Lanczos", *sorted(k for k in ups if k != "lanczos")]
        raise NotFound(f"`{field}` {name!r} is not an upscaler here; available: {', '.join(names)}.", field=field,
                       value=name)
    return name


# -- AUTOMATIC1111 ------------------------------------------------------------------------------


class Extras(BaseModel):
    model_config = ConfigDict(extra="ignore")
    resize_mode: int = Field(0, ge=0, le=1)  # 0: by upscaling_resize, 1: to upscaling_resize_w × _h
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(0, ge=0, le=1)
    codeformer_visibility: float = Field(0, ge=0, le=1)
    codeformer_weight: float = Field(0, ge=0, le=1)
    upscaling_resize: float = Field(2, ge=1, le=16)
    upscaling_resize_w: int = Field(512, ge=1, le=16384)
    upscaling_resize_h: int = Field(512, ge=1, le=16384)
    upscaling_crop: bool = True
    upscaler_1: str | None = Field("None", max_length=100)
    upscaler_2: str | None = Field("None", max_length=100)
    extras_upscaler_2_visibility: float = Field(0, ge=0, le=1)
    upscale_first: bool = False


class ExtrasSingle(Extras):
    image: str = Field("", max_length=64 * 1024 * 1024)


class BatchItem(BaseModel):
    data: str = Field(..., max_length=64 * 1024 * 1024)
    name: str = Field("", max_length=500)


class ExtrasBatch(Extras):
    imageList: list[BatchItem] = Field(default_factory=list, max_length=16)  # noqa: N815 - A1111's field name


def _phrase(field: str, msg: str, value: Any, kind: str) -> str:
    return f"{msg} (`{field}` = {value!r})"


def _check_extras(e: Extras) -> None:
    for field, value in (("gfpgan_visibility", e.gfpgan_visibility), ("codeformer_visibility",
                                                                      e.codeformer_visibility)):
        if value > 0:
            raise ValidationFailed(f"`{field}` {value:g}: face restoration is not installed on this server; send 0.",
                                   field=field, value=value)
    if e.extras_upscaler_2_visibility > 0 and e.upscaler_2 not in (None, "None"):
        raise ValidationFailed("`upscaler_2` blending is not supported; send `extras_upscaler_2_visibility` 0.",
                               field="extras_upscaler_2_visibility", value=e.extras_upscaler_2_visibility)


def _extras_size(e: Extras, w: int, h: int) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """(the size the upscaler makes, the crop box to A1111's exact size or None)."""
    if e.resize_mode == 0:
        return (round(w * e.upscaling_resize), round(h * e.upscaling_resize)), None
    tw, th = e.upscaling_resize_w, e.upscaling_resize_h
    if not e.upscaling_crop:
        return (tw, th), None
    scale = max(tw / w, th / h)  # cover the target, then crop its centre (A1111's "crop to fit")
    cw, ch = max(tw, math.ceil(w * scale)), max(th, math.ceil(h * scale))
    left, top = (cw - tw) // 2, (ch - th) // 2
    return (cw, ch), (left, top, left + tw, top + th)


async def _extras_one(request: Request, services, principal, e: Extras, data: str, field: str,
                      part: int = 0) -> tuple[str, str]:
    """One image through an upscale job; (base64 PNG, infotext)."""
    raw = decode_b64_image(data, field) if isinstance(data, str) else data
    w, h = await asyncio.to_thread(image_size, services, raw, field)
    size, crop = _extras_size(e, w, h)
    upscaler = _name(services, e.upscaler_1, "upscaler_1")
    done = await generate(request, services, principal, UpscaleIn(image=b64(raw), upscaler=upscaler, width=size[0],
                                                                  height=size[1]), part=part)
    out = done.images[0][0]
    if crop is not None:
        out = await asyncio.to_thread(_crop, out, crop)
    return b64(out), (done.infotexts or [""])[0]


def _crop(data: bytes, box: tuple[int, int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).crop(box).save(buf, "PNG")
    return buf.getvalue()


def _html(info: str) -> str:
    from html import escape

    return f"<p>{escape(info.strip())}</p>"


@router.post("/sdapi/v1/extra-single-image", summary="A1111: upscale one image (extras)")
async def extra_single_image(request: Request, services: ServicesDep, principal: PrincipalDep) -> dict:
    e = parse_model(ExtrasSingle, await read_json_object(request), _phrase)
    _check_extras(e)
    if not e.image:
        raise ValidationFailed("`image` is required (a base64 image).", field="image")
    image, info = await _extras_one(request, services, principal, e, e.image, "image")
    return {"html_info": _html(info), "image": image}


@router.post("/sdapi/v1/extra-batch-images", summary="A1111: upscale a list of images (extras)")
async def extra_batch_images(request: Request, services: ServicesDep, principal: PrincipalDep) -> dict:
    e = parse_model(ExtrasBatch, await read_json_object(request), _phrase)
    _check_extras(e)
    if not e.imageList:
        raise ValidationFailed("`imageList` must hold at least one image.", field="imageList")
    out, infos = [], []
    for i, item in enumerate(e.imageList):
        image, info = await _extras_one(request, services, principal, e, item.data, f"imageList[{i}].data", part=i)
        out.append(image)
        infos.append(info)
    return {"html_info": "".join(_html(i) for i in infos), "images": out}


@router.get("/sdapi/v1/upscalers", summary="A1111: the upscalers (None, Lanczos, Nearest and the installed ones)")
def upscalers(services: ServicesDep, principal: PrincipalDep) -> list[dict]:
    principal.require("read")
    out = [{"name": n, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
           for n in BUILTIN_UPSCALERS]
    out += [{"name": k, "model_name": u.get("architecture"), "model_path": f"{k}.safetensors", "model_url": None,
             "scale": u.get("scale", 4)} for k, u in sorted(_upscalers(services).items()) if k != "lanczos"]
    return out


@router.get("/sdapi/v1/latent-upscale-modes", summary="A1111: the latent upscale modes of hires fix")
def latent_upscale_modes(principal: PrincipalDep) -> list[dict]:
    principal.require("read")
    return [{"name": n} for n in LATENT_MODES]


@router.get("/sdapi/v1/realesrgan-models", summary="A1111: the installed Real-ESRGAN-family upscalers")
def realesrgan_models(services: ServicesDep, principal: PrincipalDep) -> list[dict]:
    principal.require("read")
    return [{"name": k, "path": f"{k}.safetensors", "scale": u.get("scale", 4)}
            for k, u in sorted(_upscalers(services).items()) if "esrgan" in str(u.get("architecture", "")).lower()]


# -- Stability v1 -------------------------------------------------------------------------------


@router.post("/v1/generation/{engine_id}/image-to-image/upscale", summary="Stability v1: upscale")
async def v1_upscale(engine_id: str, request: Request, services: ServicesDep, principal: PrincipalDep):
    ups = _upscalers(services)
    if engine_id not in STABILITY_ALIASES and engine_id not in ups:
        names = [*STABILITY_ALIASES, *sorted(ups)]
        raise NotFound(f"engine {engine_id!r} is not an upscaler; upscale engines: {', '.join(names)}",
                       field="engine_id", value=engine_id)
    items, files = await read_multipart(request, "this endpoint")
    form = dict(items)
    image = files.get("image")
    if not image:
        raise BadRequest("image: is required", field="image")
    width, height = (form_number(form, k, 1, 16384, None, int) if form.get(k) not in ("", None) else None
                     for k in ("width", "height"))
    if width is not None and height is not None:
        raise ValidationFailed("only one of width or height may be given; the other keeps the aspect ratio",
                               field="width", value=f"{width}x{height}")
    w, h = await asyncio.to_thread(image_size, services, image, "image")
    if width is None and height is None:
        factor = STABILITY_ALIASES.get(engine_id) or float(ups[engine_id].get("scale") or 2)
        width, height = round(w * factor), round(h * factor)
    body = UpscaleIn(image=b64(image), upscaler="auto" if engine_id in STABILITY_ALIASES else engine_id,
                     width=width, height=height)
    done = await generate(request, services, principal, body)
    data = done.images[0][0]
    if "image/png" in request.headers.get("accept", ""):
        return Response(data, media_type="image/png", headers={"Finish-Reason": "SUCCESS", "Seed": "0"})
    return JSONResponse({"artifacts": [{"base64": b64(data), "seed": 0, "finishReason": "SUCCESS"}]})


# -- Stability v2beta ---------------------------------------------------------------------------


async def _v2_body(request: Request, services, service: str) -> tuple[UpscaleIn, str]:
    items, files = await read_multipart(request, "this endpoint")
    form = dict(items)
    image = files.get("image")
    if not image:
        raise ValidationFailed("image: is required", field="image")
    fmt = form_format(form)
    w, h = await asyncio.to_thread(image_size, services, image, "image")
    if service == "fast":
        return UpscaleIn(image=b64(image), upscaler="auto", scale=4.0, output_format=fmt), fmt
    prompt = str(form.get("prompt", ""))
    if not 1 <= len(prompt) <= 10000:
        raise ValidationFailed("prompt: must be 1 to 10000 characters", field="prompt")
    lo, hi, default = (0.2, 0.5, 0.35) if service == "conservative" else (0.1, 0.5, 0.3)
    creativity = form_number(form, "creativity", lo, hi, default)
    seed = form_number(form, "seed", 0, 4_294_967_294, 0, int)
    factor = math.sqrt(CONSERVATIVE_PIXELS / (w * h))
    if factor < 1.05:
        raise ValidationFailed(f"image: is {w}x{h}, already about {CONSERVATIVE_PIXELS // 1_000_000} megapixels; "
                               f"{service} upscales smaller images to that size", field="image", value=f"{w}x{h}")
    out = (round(w * factor), round(h * factor))
    model = services.settings.stability_v2_models.get("core") or default_model(services)
    model = model if model in served(services) else default_model(services)
    return UpscaleIn(image=b64(image), upscaler="auto", width=out[0], height=out[1], model=model, prompt=prompt,
                     negative_prompt=str(form.get("negative_prompt", ""))[:10000], strength=creativity,
                     seed=seed or -1, output_format=fmt), fmt


def _v2_image(request: Request, data: bytes, seed: int, fmt: str) -> Response:
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"image": b64(data), "finish_reason": "SUCCESS", "seed": seed})
    return Response(data, media_type=f"image/{fmt}", headers={"finish-reason": "SUCCESS", "seed": str(seed)})


@router.post("/v2beta/stable-image/upscale/{service}",
             summary="Stability v2beta: upscale (fast ×4; conservative and creative refine with a prompt)")
async def v2_upscale(service: str, request: Request, services: ServicesDep, principal: PrincipalDep):
    if service not in ("fast", "conservative", "creative"):
        raise NotFound(f"unknown upscale service {service!r}; one of fast, conservative, creative", field="service",
                       value=service)
    body, fmt = await _v2_body(request, services, service)
    if service == "creative":  # asynchronous: the id to poll GET /v2beta/results/{id} with
        job = await submit(request, services, principal, body)
        return JSONResponse({"id": job.id})
    done = await generate(request, services, principal, body)
    data, seed, _ = done.images[0]
    return _v2_image(request, await asyncio.to_thread(reencode, data, fmt), seed, fmt)


@router.get("/v2beta/results/{generation_id}",
            summary="Stability v2beta: an asynchronous result (202 while running, 200 with it, 404 once expired)")
async def v2_results(generation_id: str, request: Request, services: ServicesDep, principal: PrincipalDep):
    from ...jobs.results import images_of_job

    principal.require("read")
    job = await asyncio.to_thread(services.queue.get, principal.org_id, generation_id)  # NotFound: another org's
    if job.state not in FINAL_STATES:
        return JSONResponse({"id": job.id, "status": "in-progress"}, status_code=202)
    if job.finished_at is not None and utcnow() - job.finished_at > RESULTS_TTL:
        raise NotFound(f"the result of generation {job.id} has expired (results are kept 24 hours)", field="id",
                       value=job.id)
    if job.state != JobState.succeeded:
        raise EngineError(f"generation {job.id} did not succeed: {job.error_message or job.state}", field="id",
                          value=job.id)
    rows = await asyncio.to_thread(images_of_job, services.db, job.org_id, job.id)
    if not rows:
        raise NotFound(f"the result of generation {job.id} has expired", field="id", value=job.id)
    data = await asyncio.to_thread(services.images.get, rows[0].blob)
    fmt = str((job.params or {}).get("output_format") or "png")
    return _v2_image(request, await asyncio.to_thread(reencode, data, fmt), rows[0].seed, fmt)
