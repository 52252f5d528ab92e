"""What every compatibility layer shares, so each layer only translates its wire format:

- reading a body: `api.bodies` (`read_json_object`, `read_multipart`, `parse_model`), shared with the
  native routes;
- images: `decode_b64_image`, `open_image` / `image_size` under the server's limits, `png_b64`,
  `mask_from_alpha`, `reencode`;
- models: `served`, `default_model`;
- jobs: `submit` a request as an ordinary job, `wait` for it, `generate` (both), `precheck` before decoding.
"""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from PIL import Image as PILImage
from PIL import ImageOps

from ...accounts import Principal
from ...errors import Cancelled, EngineError, SolventError, ValidationFailed
from ...generation.images import b64, load_image, png_b64  # noqa: F401 - the toolkit hands these on
from ...generation.images import decode_base64 as decode_b64_image  # noqa: F401
from ...jobs.results import images_of_job
from ...storage.models import FINAL_STATES, Job, JobState
from ..admission import admit
from ..schemas import GenerationIn

WAIT_SECONDS = 600  # a synchronous compat request gives up (and cancels its job) after this long


class TimedOut(SolventError):
    status = 504
    code = "timeout"


@dataclass
class Done:
    job: Job
    images: list[tuple[bytes, int, str]]  # (PNG with metadata, seed, image id)
    infotexts: list[str]


async def submit(request: Request, services, principal: Principal, body: GenerationIn, part: int = 0) -> Job:
    """Admit one job. `part` > 0 derives a distinct idempotency key per part of one request (A1111's `n_iter`),
    so a retried request replays each part and never collapses them into one job."""
    key = request.headers.get("idempotency-key")
    if key is not None and part:
        key = f"{key[:180]}#{part}"
    job, _ = await asyncio.to_thread(admit, services, principal, body, key, request.app.state.admission_hooks)
    return job


async def wait(request: Request, services, principal: Principal, job: Job, allow_cancel: bool = False) -> Done:
    """Poll the job until it is final; cancel it if the client goes away or it takes too long."""
    with request.app.state.waits.hold(principal.org_id, "synchronous request"):
        return await _wait(request, services, principal, job, allow_cancel)


async def _wait(request: Request, services, principal: Principal, job: Job, allow_cancel: bool) -> Done:
    deadline = time.monotonic() + WAIT_SECONDS
    while job.state not in FINAL_STATES:
        if await request.is_disconnected():
            await asyncio.to_thread(services.queue.cancel, principal.org_id, job.id)
            raise Cancelled("the client disconnected; the job was canceled.", field="request")
        if time.monotonic() > deadline:
            await asyncio.to_thread(services.queue.cancel, principal.org_id, job.id)
            raise TimedOut(f"job {job.id} did not finish within {WAIT_SECONDS} s; it was canceled.", field="job")
        await asyncio.sleep(0.05)
        job = await asyncio.to_thread(services.queue.get, principal.org_id, job.id)
    if job.state == JobState.failed:
        if job.error_code == ValidationFailed.code:  # the input was wrong in a way only the worker could see
            raise ValidationFailed(str(job.error_message), field="job", value=job.id)
        raise EngineError(f"generation failed: {job.error_message}", field="job", value=job.id)
    if job.state == JobState.canceled and not allow_cancel:
        raise Cancelled(f"job {job.id} was canceled.", field="job", value=job.id)

    def load() -> list[tuple[bytes, int, str]]:
        return [(services.images.get(r.blob), r.seed, r.id) for r in images_of_job(services.db, job.org_id, job.id)]

    images = await asyncio.to_thread(load)
    return Done(job, images, list((job.result or {}).get("infotexts", [])))


async def generate(request: Request, services, principal: Principal, body: GenerationIn,
                   allow_cancel: bool = False, part: int = 0) -> Done:
    job = await submit(request, services, principal, body, part)
    return await wait(request, services, principal, job, allow_cancel)


async def precheck(services, principal: Principal, fields: dict, mask: bool = False) -> None:
    """Refuse (limits, credits) before any input image is decoded; the images are stand-ins here."""
    from ..admission import precheck as admission_precheck

    body = GenerationIn(**{**fields, "init_image": "pending", **({"mask": "pending"} if mask else {})})
    await asyncio.to_thread(admission_precheck, services, principal, body)


def open_image(services, data: bytes, field: str, mode: str | None = None) -> PILImage.Image:
    """Decode an uploaded image under the server's byte and pixel limits (checked from the header first)."""
    s = services.settings
    return load_image(data, field, max_bytes=s.max_input_bytes, max_pixels=s.max_input_pixels, mode=mode)


def image_size(services, data: bytes, field: str) -> tuple[int, int]:
    """An uploaded image's size from its header alone, under the same limits."""
    s = services.settings
    return load_image(data, field, max_bytes=s.max_input_bytes, max_pixels=s.max_input_pixels,
                      header_only=True).size


def reencode(data: bytes, fmt: str, quality: int | None = None) -> bytes:
    """A stored PNG in another format (at `quality` 0–100 for JPEG and WEBP), keeping its metadata."""
    if fmt == "png":
        return data
    from ...generation.metadata import encode_image, read_metadata

    text, solvent = read_metadata(data)
    return encode_image(PILImage.open(io.BytesIO(data)), fmt, text or "", solvent, quality)


def served(services) -> dict[str, dict]:
    from ...jobs.registry import served_models

    return served_models(services.db)


def default_model(services, models: dict[str, dict] | None = None) -> str:
    """The model a request that names none gets: `SOLVENT_DEFAULT_MODEL` when a worker serves it, else the
    first served model by name (or the setting itself when none is served, so the error names it)."""
    models = served(services) if models is None else models
    wanted = services.settings.default_model
    return wanted if wanted in models or not models else sorted(models)[0]


# -- multipart form fields (Stability's v2beta) -----------------------------------------------------


def form_format(form: dict) -> str:
    """`output_format` (png, jpeg or webp; png when absent)."""
    fmt = str(form.get("output_format", "png"))
    if fmt not in ("png", "jpeg", "webp"):
        raise ValidationFailed(f"output_format: must be png, jpeg or webp but is {fmt!r}", field="output_format",
                               value=fmt)
    return fmt


def form_number(form: dict, key: str, lo: float, hi: float, default: float, kind: type = float) -> Any:
    """A number field of a form, as `kind`, between `lo` and `hi` (`default` when absent), or an error naming it."""
    if key not in form:
        return default
    try:
        value = kind(form[key])
    except ValueError as e:
        raise ValidationFailed(f"{key}: must be {'an integer' if kind is int else 'a number'} but is "
                               f"{form[key]!r}", field=key, value=form[key]) from e
    if not lo <= value <= hi:
        raise ValidationFailed(f"{key}: must be between {lo:g} and {hi:g} but is {form[key]}", field=key,
                               value=form[key])
    return value


# -- images -------------------------------------------------------------------------------------


def mask_from_alpha(img: PILImage.Image) -> PILImage.Image:
    """The repaint mask an image's alpha channel means: transparent = repaint (white), opaque = keep."""
    return ImageOps.invert(img.getchannel("A"))
