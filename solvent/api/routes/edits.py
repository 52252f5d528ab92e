"""Native outpainting and erasing: each becomes an ordinary inpainting job (`generation.edits` prepares the canvas
and the mask with PIL in the API process), so it is queued, priced, limited and stored like any other."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from ...errors import ModelNotFound, ValidationFailed
from ...generation.edits import fill_masked, grow_mask, outpaint_canvas
from ...generation.families import FAMILIES
from ...generation.images import png_b64
from ...jobs.registry import served_models
from ..compat.common import mask_from_alpha, open_image
from ..deps import PrincipalDep, ServicesDep
from ..schemas import EditIn, EraseIn, GenerationIn, JobOut, OutpaintIn
from .jobs import _body, admitted

router = APIRouter(prefix="/api", tags=["jobs"])


def _multiple(services, model: str) -> int:
    record = served_models(services.db).get(model)
    if record is None:
        raise ModelNotFound(f"`model` {model!r} is not served by any running worker.", field="model", value=model)
    return FAMILIES[record["family"]].multiple


def _inpaint(e: EditIn, image, mask, strength: float) -> GenerationIn:
    return GenerationIn(model=e.model, prompt=e.prompt, negative_prompt=e.negative_prompt, steps=e.steps,
                        cfg_scale=e.cfg_scale, sampler=e.sampler, seed=e.seed, width=image.width,
                        height=image.height, init_image=png_b64(image), mask=png_b64(mask), strength=strength,
                        output_format=e.output_format, webhook_url=e.webhook_url)


def outpaint_job(services, e: OutpaintIn) -> GenerationIn:
    """The inpainting request that extends `e.image` (the canvas sized to the model's multiple)."""
    image = open_image(services, e.image, "image", mode="RGB")
    canvas, mask = outpaint_canvas(image, e.left, e.right, e.up, e.down, e.feather, _multiple(services, e.model))
    return _inpaint(e, canvas, mask, e.strength)


def erase_job(services, e: EraseIn) -> GenerationIn:
    """The inpainting request that erases `e.mask` (or the image's transparent part) from `e.image`."""
    image = open_image(services, e.image, "image")
    if e.mask is not None:
        mask = open_image(services, e.mask, "mask", mode="L")
        if mask.size != image.size:
            raise ValidationFailed(f"`mask` must be the size of `image` ({image.width}×{image.height}) but is "
                                   f"{mask.width}×{mask.height}.", field="mask", value=f"{mask.width}x{mask.height}")
    elif "A" in image.getbands():
        mask = mask_from_alpha(image)
    else:
        raise ValidationFailed("send a `mask` (white = erase), or an image whose transparent part is what to erase.",
                               field="mask")
    m = _multiple(services, e.model)
    image = image.convert("RGB")
    size = (image.width // m * m, image.height // m * m)
    if min(size) < m:
        raise ValidationFailed(f"`image` is {image.width}×{image.height}, too small to erase from.", field="image")
    image, mask = image.crop((0, 0, *size)), grow_mask(mask, e.grow_mask).crop((0, 0, *size))
    return _inpaint(e, fill_masked(image, mask), mask, e.strength)


async def _edit(request: Request, response: Response, services, principal, idempotency_key, model, build) -> JobOut:
    principal.require("generate")
    body = await _body(request, model)
    return await admitted(request, response, services, principal, await asyncio.to_thread(build, services, body),
                          idempotency_key)


@router.post("/outpaint", status_code=201, response_model=JobOut,
             summary="Create an outpainting job (the image extended on any side)")
async def create_outpaint(request: Request, response: Response, services: ServicesDep, principal: PrincipalDep,
                          idempotency_key: Annotated[str | None, Header()] = None) -> JobOut:
    return await _edit(request, response, services, principal, idempotency_key, OutpaintIn, outpaint_job)


@router.post("/erase", status_code=201, response_model=JobOut,
             summary="Create an erasing job (a masked region repainted towards its surroundings)")
async def create_erase(request: Request, response: Response, services: ServicesDep, principal: PrincipalDep,
                       idempotency_key: Annotated[str | None, Header()] = None) -> JobOut:
    return await _edit(request, response, services, principal, idempotency_key, EraseIn, erase_job)
