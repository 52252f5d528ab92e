"""AUTOMATIC1111's `/sdapi/v1`: txt2img, img2img, progress, models, samplers, options, interrupt, png-info.

Auth: Bearer, or HTTP Basic whose password is an API key (`webuiapi.set_auth(user, key)`).
Fields A1111 has and Solvent does not implement (hires fix, face restoration, tiling, scripts,
subseeds) are accepted and ignored, as A1111 itself ignores unknown fields.
inpainting_fill: 0 fill (masked area painted with the image's mean colour first), 1 original,
2 latent noise (strength 1.0), 3 latent nothing (masked area grey first).
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image, ImageFilter, ImageStat
from pydantic import BaseModel, ConfigDict, Field

from ...accounts.keys import key_preferences, set_key_preference
from ...errors import ValidationFailed
from ...generation import JobSpec
from ...generation.metadata import parse_infotext, read_metadata
from ...generation.samplers import SAMPLERS, resolve_sampler
from ...storage.models import JobState
from ..bodies import parse_model, read_json_object
from ..deps import PrincipalDep, ServicesDep
from ..schemas import GenerationIn
from .common import (
    b64,
    decode_b64_image,
    default_model,
    generate,
    image_size,
    open_image,
    png_b64,
    precheck,
    served,
)

router = APIRouter(prefix="/sdapi/v1", tags=["automatic1111"])
MAX_INFOTEXT = 64 * 1024  # characters of `parameters` text parsed (the parser is linear; this bounds its work)


def render(status: int, code: str, message: str, field: str | None = None, headers: dict | None = None,
           **extra: Any) -> Response:
    if status == 401:  # as A1111 with --api-auth answers: clients (webuiapi, requests) retry with Basic credentials
        headers = {**(headers or {}), "WWW-Authenticate": 'Basic realm="solvent"'}
    if status == 422:  # FastAPI's validation shape, as A1111 answers it
        return JSONResponse({"detail": [{"loc": ["body", field or "body"], "msg": message, "type": code}]},
                            status_code=422, headers=headers)
    return JSONResponse({"error": code, "detail": message, "body": "", "errors": ""}, status_code=status,
                        headers=headers)


SURFACES = [("/sdapi/", render)]  # installed by `create_app`


class Txt2Img(BaseModel):
    model_config = ConfigDict(extra="ignore")
    prompt: str = Field("", max_length=10_000)
    negative_prompt: str = Field("", max_length=10_000)
    styles: list[str] | None = None
    seed: int = Field(-1, ge=-1, le=2**32 - 1)
    sampler_name: str | None = None
    sampler_index: str | None = None
    scheduler: str | None = Field(None, max_length=64)  # A1111 1.9+: the schedule type beside the sampler
    batch_size: int = Field(1, ge=1, le=16)
    n_iter: int = Field(1, ge=1, le=16)
    steps: int = Field(20, ge=1, le=150)
    cfg_scale: float = Field(7.0, ge=0, le=35)
    distilled_cfg_scale: float | None = Field(None, ge=0, le=30)  # Forge: Flux's distilled guidance
    width: int = Field(512, ge=8, le=4096)
    height: int = Field(512, ge=8, le=4096)
    override_settings: dict[str, Any] | None = None
    alwayson_scripts: dict[str, Any] | None = None  # sd-webui-controlnet's units (`compat.controlnet`)
    refiner_checkpoint: str | None = None  # A1111 1.6+: an SDXL refiner for the last steps
    refiner_switch_at: float = Field(0.8, gt=0, lt=1)
    send_images: bool = True
    # Hires fix: the image made at width×height, upscaled (hr_scale, or to hr_resize_x×hr_resize_y) with
    # hr_upscaler, then refined by an image-to-image pass at denoising_strength.
    enable_hr: bool = False
    denoising_strength: float = Field(0.7, ge=0, le=1)
    hr_scale: float = Field(2.0, ge=1, le=8)
    hr_upscaler: str | None = Field(None, max_length=100)
    hr_second_pass_steps: int = Field(0, ge=0, le=150)
    hr_resize_x: int = Field(0, ge=0, le=4096)
    hr_resize_y: int = Field(0, ge=0, le=4096)
    hr_sampler_name: str | None = Field(None, max_length=64)
    hr_prompt: str = Field("", max_length=10_000)
    hr_negative_prompt: str = Field("", max_length=10_000)


class Img2Img(Txt2Img):
    init_images: list[str] = Field(default_factory=list)
    denoising_strength: float = Field(0.75, ge=0, le=1)
    mask: str | None = None
    mask_blur: int = Field(4, ge=0, le=64)
    inpainting_fill: int = Field(1, ge=0, le=3)
    inpainting_mask_invert: int = Field(0, ge=0, le=1)
    include_init_images: bool = False


def _phrase(field: str, msg: str, value: Any, kind: str) -> str:
    return f"{msg} (`{field}` = {value!r})"


def _parse(model, data: Any):
    if not isinstance(data, dict):
        raise ValidationFailed("the body must be a JSON object.", field="body")
    return parse_model(model, data, _phrase)


async def _json(request: Request) -> dict:
    return await read_json_object(request)


def _model_for(services, principal, t: Txt2Img) -> str:
    models = served(services)
    wanted = (t.override_settings or {}).get("sd_model_checkpoint") or key_preferences(
        services.db, principal.key_id).get("sd_model_checkpoint")
    if wanted:
        return _checkpoint(models, wanted)
    return default_model(services, models)


def _title(model_id: str, record: dict) -> str:
    return f"{model_id} [{record.get('short_hash') or ''}]".replace(" []", "")


def _checkpoint(models: dict, name: str) -> str:
    """A model id from an A1111 checkpoint title (`name [hash]`), file name or id."""
    base = str(name).split(" [", 1)[0].strip()
    for mid, rec in models.items():
        if base in (mid, _title(mid, rec)) or name == _title(mid, rec) or base.rsplit(".", 1)[0] == mid:
            return mid
    raise ValidationFailed(f"`sd_model_checkpoint` {name!r} is not a served model; one of "
                           f"{', '.join(_title(m, r) for m, r in models.items()) or 'none'}.",
                           field="sd_model_checkpoint", value=name)


_LORA_TAG = re.compile(r"<lora:([^:<>]{1,200})(?::([-+]?\d*\.?\d+))?(?::[^<>]*)?>")


def _prompt_loras(prompt: str) -> tuple[str, list[dict]]:
    """A1111's `<lora:name:weight>` tags taken out of the prompt as LoRAs (weight 1 when it is left out)."""
    loras = [{"name": m.group(1).strip(), "weight": float(m.group(2)) if m.group(2) else 1.0}
             for m in _LORA_TAG.finditer(prompt)]
    return (_LORA_TAG.sub("", prompt).strip() if loras else prompt), loras


# A1111 1.9+'s schedule types: those Solvent's table has as sampler variants, and those that are the default.
SCHEDULE_SUFFIX = {"karras": "_karras", "sgm uniform": "_trailing"}
SCHEDULE_DEFAULT = ("automatic", "uniform", "normal", "simple", "")


def _with_schedule(sampler: str | None, schedule: str | None) -> str | None:
    """`Euler` + `SGM Uniform` → `euler_trailing`, `DPM++ 2M` + `Karras` → `dpmpp_2m_karras`; the default schedule
    types keep the sampler; any other is refused with those that run."""
    key = (schedule or "").strip().lower()
    if key in SCHEDULE_DEFAULT:
        return sampler
    base = resolve_sampler(sampler or "euler", "sampler_name").name.removesuffix("_karras").removesuffix("_trailing")
    if key in SCHEDULE_SUFFIX:
        try:
            return resolve_sampler(base + SCHEDULE_SUFFIX[key], "scheduler").name
        except ValidationFailed:
            pass
    raise ValidationFailed(f"`scheduler` {schedule!r} does not run with `sampler_name` {sampler or 'Euler'!r}; Solvent "
                           "runs Automatic, Uniform, Normal, Simple, and Karras or SGM Uniform where the sampler has "
                           "them.", field="scheduler", value=schedule)


def _fields(services, principal, t: Txt2Img) -> dict:
    sampler = t.sampler_name or t.sampler_index
    if sampler:
        sampler = resolve_sampler(sampler, "sampler_name").name
    sampler = _with_schedule(sampler, t.scheduler)
    from .controlnet import units

    prompt, loras = _prompt_loras(t.prompt)
    model = _model_for(services, principal, t)
    family = (served(services).get(model) or {}).get("family")
    # A client that leaves steps and CFG out gets the model's own defaults (few-step models: 1–8 steps, no
    # CFG) rather than A1111's 20 and 7. Flux takes Forge's `distilled_cfg_scale` as its guidance; A1111's
    # `cfg_scale` is true CFG, which Flux.1 [dev] was distilled not to need.
    given = t.model_fields_set
    cfg = t.cfg_scale if "cfg_scale" in given else None
    if family == "flux":
        cfg = t.distilled_cfg_scale
    out = dict(model=model, prompt=prompt, negative_prompt=t.negative_prompt, width=t.width, height=t.height,
               steps=t.steps if "steps" in given else None, cfg_scale=cfg, sampler=sampler, seed=t.seed,
               batch_size=t.batch_size)
    if loras:
        out["loras"] = loras
    if t.enable_hr and not isinstance(t, Img2Img):
        if not t.denoising_strength > 0:
            raise ValidationFailed("`denoising_strength` must be above 0 for hires fix (`enable_hr`) but is 0.",
                                   field="denoising_strength", value=t.denoising_strength)
        hr_sampler = t.hr_sampler_name if t.hr_sampler_name not in (None, "", "Use same sampler") else None
        out["hires"] = dict(scale=t.hr_scale, resize_x=t.hr_resize_x, resize_y=t.hr_resize_y,
                            upscaler=t.hr_upscaler or "Latent", steps=t.hr_second_pass_steps,
                            denoising=t.denoising_strength, sampler=hr_sampler, prompt=t.hr_prompt,
                            negative_prompt=t.hr_negative_prompt)
    skip = (t.override_settings or {}).get("CLIP_stop_at_last_layers")
    if skip is not None:
        if not isinstance(skip, int) or isinstance(skip, bool) or not 1 <= skip <= 12:
            raise ValidationFailed(f"`override_settings.CLIP_stop_at_last_layers` must be an integer from 1 to 12 but "
                                   f"is {skip!r}.", field="CLIP_stop_at_last_layers", value=skip)
        out["clip_skip"] = skip
    vae = (t.override_settings or {}).get("sd_vae")
    if isinstance(vae, str) and vae.lower() not in ("automatic", "none", ""):
        out["vae"] = vae.rsplit(".", 1)[0] if vae.endswith((".safetensors", ".pt", ".ckpt")) else vae
    record = served(services).get(model) or {}
    if t.refiner_checkpoint and t.refiner_checkpoint.lower() not in ("none", ""):
        name = t.refiner_checkpoint.split(" [", 1)[0].strip()
        out.update(refiner=name.rsplit(".", 1)[0] if name.endswith((".safetensors", ".ckpt")) else name,
                   refiner_switch=t.refiner_switch_at)
    controls, prompts = units(t.alwayson_scripts, record.get("controlnets") or [], record.get("ip_adapters") or [])
    if controls:
        out["controlnets"] = controls
    if prompts:
        out["ip_adapters"] = prompts
    return out


async def _run(request: Request, services, principal, t: Txt2Img, fields: dict) -> dict:
    images, seeds, infotexts = [], [], []
    first_seed = None
    for i in range(t.n_iter):
        f = dict(fields)
        if first_seed is not None:
            f["seed"] = first_seed + i * t.batch_size
        done = await generate(request, services, principal, GenerationIn(**f), allow_cancel=True, part=i)
        if done.images and first_seed is None:
            first_seed = done.images[0][1]
        images += [b64(d) for d, _, _ in done.images]
        seeds += [seed for _, seed, _ in done.images]
        infotexts += done.infotexts
        if done.job.state == JobState.canceled:
            break  # interrupted: return what was made
    params = t.model_dump()
    info = {"prompt": t.prompt, "all_prompts": [t.prompt] * len(seeds), "negative_prompt": t.negative_prompt,
            "all_negative_prompts": [t.negative_prompt] * len(seeds), "seed": seeds[0] if seeds else t.seed,
            "all_seeds": seeds, "subseed": -1, "all_subseeds": [-1] * len(seeds), "subseed_strength": 0,
            "width": fields["width"], "height": fields["height"], "sampler_name": t.sampler_name or t.sampler_index,
            "cfg_scale": t.cfg_scale, "steps": t.steps, "batch_size": t.batch_size, "restore_faces": False,
            "sd_model_name": fields["model"], "sd_model_hash": None, "seed_resize_from_w": -1,
            "seed_resize_from_h": -1, "denoising_strength": fields.get("strength"), "extra_generation_params": {},
            "index_of_first_image": 0, "infotexts": infotexts, "styles": t.styles or [],
            "job_timestamp": datetime.now(UTC).strftime("%Y%m%d%H%M%S"), "clip_skip": fields.get("clip_skip", 1),
            "is_using_inpainting_conditioning": False}
    return {"images": images if t.send_images else [], "parameters": params, "info": json.dumps(info)}


@router.post("/txt2img", summary="A1111: text to image")
async def txt2img(request: Request, services: ServicesDep, principal: PrincipalDep) -> dict:
    t = _parse(Txt2Img, await _json(request))
    return await _run(request, services, principal, t, _fields(services, principal, t))


@router.post("/img2img", summary="A1111: image to image and inpainting")
async def img2img(request: Request, services: ServicesDep, principal: PrincipalDep) -> dict:
    t = _parse(Img2Img, await _json(request))
    if not t.init_images:
        raise ValidationFailed("`init_images` needs at least one image.", field="init_images")
    fields = _fields(services, principal, t)
    if "width" not in t.model_fields_set and "height" not in t.model_fields_set:  # the init image's size (header)
        fields["width"], fields["height"] = await asyncio.to_thread(
            image_size, services, decode_b64_image(t.init_images[0], "init_images"), "init_images")
    await precheck(services, principal, {**fields, "strength": max(0.01, t.denoising_strength)}, t.mask is not None)
    fields.update(await asyncio.to_thread(_img2img_inputs, services, t, fields["width"], fields["height"]))
    out = await _run(request, services, principal, t, fields)
    if t.include_init_images:
        out["images"] += t.init_images
    return out


def _img2img_inputs(services, t: Img2Img, width: int, height: int) -> dict:
    """Decode, resize and mask the init image under the server's limits (off the event loop)."""
    init = open_image(services, decode_b64_image(t.init_images[0], "init_images"), "init_images", "RGB")
    out: dict[str, Any] = {"strength": max(0.01, t.denoising_strength)}
    if "width" not in t.model_fields_set and "height" not in t.model_fields_set:
        out.update(width=init.width, height=init.height)
    else:
        out.update(width=width, height=height)
    if (out["width"], out["height"]) != init.size:
        init = init.resize((out["width"], out["height"]), Image.LANCZOS)
    if t.mask is not None:
        mask = open_image(services, decode_b64_image(t.mask, "mask"), "mask", "L").resize(init.size)
        if t.inpainting_mask_invert:
            mask = Image.eval(mask, lambda v: 255 - v)
        if t.mask_blur:
            mask = mask.filter(ImageFilter.GaussianBlur(t.mask_blur))
        hard = mask.point(lambda v: 255 if v >= 128 else 0)
        if t.inpainting_fill == 0:  # fill: the image's mean colour under the mask
            mean = tuple(int(c) for c in ImageStat.Stat(init, Image.eval(hard, lambda v: 255 - v)).mean)
            init = Image.composite(Image.new("RGB", init.size, mean), init, hard)
        elif t.inpainting_fill == 3:  # latent nothing: neutral grey under the mask
            init = Image.composite(Image.new("RGB", init.size, (127, 127, 127)), init, hard)
        elif t.inpainting_fill == 2:  # latent noise: repaint from pure noise
            out["strength"] = 1.0
        out["mask"] = png_b64(mask)
    out["init_image"] = png_b64(init)
    return out


@router.get("/progress", summary="A1111: progress of the caller's running job, with a live preview")
def progress(services: ServicesDep, principal: PrincipalDep, skip_current_image: bool = False) -> dict:
    if not principal.has("read"):
        skip_current_image = True  # a generate-only key learns its progress, never a preview
    jobs = services.queue.active_for(principal.org_id, principal.key_id)
    running = next((j for j in jobs if j.state == JobState.running), None)
    if running is None:
        return {"progress": 0.0, "eta_relative": 0.0, "current_image": None, "textinfo": None,
                "state": {"skipped": False, "interrupted": False, "job": "", "job_count": len(jobs),
                          "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}}
    steps = int(JobSpec.from_params(running.params).steps or 20)
    p = float(running.progress or 0.0)
    elapsed = (datetime.now(UTC) - (running.started_at or running.created_at)).total_seconds()
    eta = elapsed * (1 - p) / p if p > 0 else 0.0
    return {"progress": p, "eta_relative": eta,
            "current_image": None if skip_current_image else running.preview, "textinfo": None,
            "state": {"skipped": False, "interrupted": bool(running.cancel_requested), "job": running.id,
                      "job_count": len(jobs), "job_timestamp": running.created_at.strftime("%Y%m%d%H%M%S"),
                      "job_no": 0, "sampling_step": int(round(p * steps)), "sampling_steps": steps}}


@router.post("/interrupt", summary="A1111: stop the caller's running and queued jobs")
def interrupt(services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("generate")
    services.queue.cancel_active(principal.org_id, principal.key_id)
    return {}


@router.post("/skip", summary="A1111: same as interrupt (Solvent runs one job per request)")
def skip(services: ServicesDep, principal: PrincipalDep) -> dict:
    return interrupt(services, principal)


@router.get("/scripts", summary="A1111: scripts (Solvent runs none)")
def scripts(principal: PrincipalDep) -> dict:
    return {"txt2img": [], "img2img": []}


@router.get("/sd-models", summary="A1111: checkpoints (the models Solvent's workers serve)")
def sd_models(services: ServicesDep, principal: PrincipalDep) -> list[dict]:
    principal.require("read")
    return [{"title": _title(m, r), "model_name": m, "hash": r.get("short_hash") or None,
             "sha256": r.get("sha256") or None, "filename": m, "config": None}
            for m, r in sorted(served(services).items())]


@router.get("/embeddings", summary="A1111: the textual-inversion embeddings the workers serve")
def embeddings(services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("read")
    names = sorted({e for m in served(services).values() for e in m.get("embeddings") or []})
    return {"loaded": {n: {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": None,
                           "vectors": None} for n in names}, "skipped": {}}


@router.get("/loras", summary="A1111: the LoRAs the workers serve (a prompt names them as <lora:name:weight>)")
def loras(services: ServicesDep, principal: PrincipalDep) -> list[dict]:
    principal.require("read")
    names = sorted({n for m in served(services).values() for n in m.get("loras") or []})
    return [{"name": n, "alias": n, "path": f"{n}.safetensors", "metadata": {}} for n in names]


@router.get("/sd-vae", summary="A1111: the VAEs the workers serve")
def sd_vae(services: ServicesDep, principal: PrincipalDep) -> list[dict]:
    principal.require("read")
    names = sorted({v for m in served(services).values() for v in m.get("vaes") or []})
    return [{"model_name": n, "filename": n} for n in names]


@router.get("/samplers", summary="A1111: samplers")
def samplers(principal: PrincipalDep) -> list[dict]:
    return [{"name": s.a1111[0], "aliases": list(s.a1111[1:]) + [s.name], "options": {}}
            for s in SAMPLERS if s.a1111]


@router.get("/options", summary="A1111: options (the default checkpoint of this key)")
def get_options(services: ServicesDep, principal: PrincipalDep) -> dict:
    models = served(services)
    current = key_preferences(services.db, principal.key_id).get("sd_model_checkpoint")
    if current is None:
        mid = default_model(services, models)
        current = _title(mid, models.get(mid, {}))
    return {"sd_model_checkpoint": current, "sd_checkpoint_hash": None, "samples_format": "png",
            "CLIP_stop_at_last_layers": 1, "eta_noise_seed_delta": 0}


@router.post("/options", summary="A1111: set options; `sd_model_checkpoint` sets this key's default model")
async def set_options(request: Request, services: ServicesDep, principal: PrincipalDep) -> dict:
    data = await _json(request)
    if "sd_model_checkpoint" in data:
        if principal.key_id is None:
            raise ValidationFailed("`sd_model_checkpoint` is remembered per API key; call with a key.",
                                   field="sd_model_checkpoint")
        models = served(services)
        mid = _checkpoint(models, data["sd_model_checkpoint"])
        set_key_preference(services.db, principal.key_id, "sd_model_checkpoint", _title(mid, models[mid]))
    return {}


@router.post("/png-info", summary="A1111: read the generation parameters in an image")
async def png_info(request: Request, services: ServicesDep, principal: PrincipalDep) -> dict:
    data = await _json(request)
    value = data.get("image", "")
    return await asyncio.to_thread(_png_info, services, value)


def _png_info(services, value: str) -> dict:
    raw = decode_b64_image(value, "image")
    image_size(services, raw, "image")  # the header, checked under the limits, before metadata is read
    try:
        text, _ = read_metadata(raw)
    except (OSError, SyntaxError, ValueError) as e:
        raise ValidationFailed(f"`image` is not a readable image: {e}", field="image") from e
    parsed = parse_infotext(text[:MAX_INFOTEXT]) if text else {}
    return {"info": text or "", "items": {"parameters": text} if text else {}, "parameters": parsed}
