"""Stability v2beta's `edit` services, each an ordinary inpainting job built as the native outpaint and erase routes
build theirs: `inpaint` (a prompt where the mask — or the image's transparency — is), `outpaint` (the image extended
by `left`/`right`/`up`/`down`), `erase` (the masked part repainted towards its surroundings). `remove-background`
(a segmenter's cut-out), `search-and-replace` and `search-and-recolor` (inpainting where a segmenter finds
`search_prompt` / `select_prompt`) need a segmentation model the operator installs; without one they answer 404
naming what to install."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ...errors import NotFound, ValidationFailed
from ...generation.edits import grow_mask
from ...generation.images import png_b64
from ..admission import pick_segmenter
from ..bodies import read_multipart
from ..deps import PrincipalDep, ServicesDep
from ..routes.edits import erase_job, outpaint_job
from ..schemas import EraseIn, GenerationIn, OutpaintIn, SegmentIn
from .common import (
    b64,
    default_model,
    form_format,
    form_number,
    generate,
    mask_from_alpha,
    open_image,
    reencode,
    served,
)
from .stability import STYLE_PRESETS

router = APIRouter(tags=["stability"])
SURFACES: list = []  # /v2beta renders with Stability's renderer
SERVICES = ("inpaint", "outpaint", "erase", "remove-background", "search-and-replace", "search-and-recolor")
NEEDS_SEGMENTER = ("remove-background", "search-and-replace", "search-and-recolor")
SEARCH_FIELD = {"search-and-replace": "search_prompt", "search-and-recolor": "select_prompt"}
RECOLOR_STRENGTH = 0.8  # search-and-recolor repaints the found region keeping some of its shape and shading


def _common(services, form: dict) -> dict:
    fmt = form_format(form)
    style = form.get("style_preset")
    if style is not None and style not in STYLE_PRESETS:
        raise ValidationFailed(f"style_preset: must be one of {', '.join(STYLE_PRESETS)}", field="style_preset",
                               value=style)
    prompt = str(form.get("prompt", ""))
    if len(prompt) > 10000:
        raise ValidationFailed("prompt: must be at most 10000 characters", field="prompt")
    model = services.settings.stability_v2_models.get("core") or default_model(services)
    model = model if model in served(services) else default_model(services)
    return {"model": model, "prompt": prompt + (", " + STYLE_PRESETS[style] if style else ""),
            "negative_prompt": str(form.get("negative_prompt", ""))[:10000],
            "seed": form_number(form, "seed", 0, 4_294_967_294, 0, int) or -1, "output_format": fmt}


def _inpaint_job(services, image: bytes, mask: bytes | None, grow: int, fields: dict) -> GenerationIn:
    img = open_image(services, image, "image", mode=None)
    if mask is not None:
        m = open_image(services, mask, "mask", mode="L")
        if m.size != img.size:
            raise ValidationFailed(f"mask: must be {img.width}x{img.height} like image but is {m.width}x{m.height}",
                                   field="mask", value=f"{m.width}x{m.height}")
    elif "A" in img.getbands():
        m = mask_from_alpha(img)
    else:
        raise ValidationFailed("mask: is required when image has no alpha channel", field="mask")
    m = grow_mask(m, grow)
    return GenerationIn(init_image=png_b64(img.convert("RGB")), mask=png_b64(m), width=img.width // 8 * 8,
                        height=img.height // 8 * 8, strength=1.0, **fields)


def _search_job(services, service: str, image: bytes, form: dict, fields: dict) -> GenerationIn:
    """Search and replace / recolor: inpainting where the segmenter finds `search_prompt` / `select_prompt` (the
    worker finds the region, grows it by `grow_mask`, and repaints it with the prompt)."""
    key = SEARCH_FIELD[service]
    found = str(form.get(key, "")).strip()
    if not fields["prompt"].strip():
        raise ValidationFailed("prompt: is required", field="prompt")
    if not found or len(found) > 500:
        raise ValidationFailed(f"{key}: is required (what to find in the image), at most 500 characters",
                               field=key, value=found[:100])
    img = open_image(services, image, "image", mode="RGB")
    return GenerationIn(init_image=png_b64(img), mask_prompt=found, width=img.width // 8 * 8,
                        height=img.height // 8 * 8, mask_grow=form_number(form, "grow_mask", 0, 20, 3, int),
                        strength=RECOLOR_STRENGTH if service == "search-and-recolor" else 1.0, **fields)


@router.post("/v2beta/stable-image/edit/{service}",
             summary="Stability v2beta: edit (inpaint, outpaint, erase; remove-background, search-and-replace and "
                     "search-and-recolor with an installed segmentation model)")
async def edit(service: str, request: Request, services: ServicesDep, principal: PrincipalDep):
    if service not in SERVICES:
        raise NotFound(f"unknown edit service {service!r}; one of {', '.join(SERVICES)}", field="service",
                       value=service)
    if service in NEEDS_SEGMENTER:
        await asyncio.to_thread(pick_segmenter, services, None, f"edit/{service}", "service")
    principal.require("generate")
    items, files = await read_multipart(request, "this endpoint")
    form = dict(items)
    image = files.get("image")
    if not image:
        raise ValidationFailed("image: is required", field="image")
    if service == "remove-background":
        fmt = str(form.get("output_format", "png"))
        if fmt not in ("png", "webp"):  # a cut-out needs an alpha channel
            raise ValidationFailed(f"output_format: must be png or webp but is {fmt!r}", field="output_format",
                                   value=fmt)
        fields: dict = {"output_format": fmt}
        body = SegmentIn(image=b64(image), output_format=fmt)
    else:
        fields = _common(services, form)
    if service in SEARCH_FIELD:
        body = await asyncio.to_thread(_search_job, services, service, image, form, fields)
    elif service == "inpaint":
        if not fields["prompt"].strip():
            raise ValidationFailed("prompt: is required", field="prompt")
        body = await asyncio.to_thread(_inpaint_job, services, image, files.get("mask"),
                                       form_number(form, "grow_mask", 0, 100, 5, int), fields)
    elif service == "outpaint":
        sides = {k: form_number(form, k, 0, 2000, 0, int) for k in ("left", "right", "up", "down")}
        creativity = form_number(form, "creativity", 0, 1, 0.5)
        o = OutpaintIn(image=b64(image), **sides, strength=min(1.0, 0.75 + creativity / 4), **fields)
        body = await asyncio.to_thread(outpaint_job, services, o)
    elif service == "erase":
        mask = files.get("mask")
        e = EraseIn(image=b64(image), mask=b64(mask) if mask else None,
                    grow_mask=form_number(form, "grow_mask", 0, 20, 5, int),
                    **fields)
        body = await asyncio.to_thread(erase_job, services, e)
    done = await generate(request, services, principal, body)
    data, seed, _ = done.images[0]
    data = await asyncio.to_thread(reencode, data, fields["output_format"])
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"image": b64(data), "finish_reason": "SUCCESS", "seed": seed})
    return Response(data, media_type=f"image/{fields['output_format']}",
                    headers={"finish-reason": "SUCCESS", "seed": str(seed)})
