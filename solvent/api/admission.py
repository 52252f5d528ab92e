"""Admission: every API surface turns its request into a `GenerationIn` and calls `admit`.

Cheapest first, so a refused request costs the server as little as possible and leaves nothing:
1. the fields against the model's family (served by a live worker) — no tokeniser, no decoder;
2. billing's precheck (caps, rate limits, the key's cap, credits) — a few reads;
3. the prompts' token chunks and the input images (decoded under the limits, not yet stored);
4. the admission hooks (budgets plug in here);
5. enqueue — idempotently — with billing's limits, price and credit reservation inside the enqueue
   transaction, and only then the input images stored (their keys written into the job's params).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ..accounts import Principal
from ..billing import Payer, PriceRequest
from ..errors import InvalidImage, ModelNotFound, ValidationFailed
from ..generation import Hires, JobSpec, LoraSpec
from ..generation.control import MAX_REFERENCES, ControlUnit, ImagePrompt, check_image_prompt, check_unit
from ..generation.families import FAMILIES, lora_preset
from ..generation.images import load_image, png_bytes
from ..generation.prompts import chunk_prompt
from ..generation.request import BUILTIN_UPSCALERS, LATENT_MODES
from ..generation.samplers import resolve_sampler
from ..generation.tokens import clip_encode
from ..jobs.registry import served_models
from ..jobs.webhooks import secret_of
from ..services import Services
from ..storage.models import Job
from .schemas import GenerationIn, SegmentIn, UpscaleIn

AdmissionHook = Callable[[Services, Principal, dict], None]


def _check_prompt(text: str, field: str, max_chunks: int) -> None:
    chunk_prompt(clip_encode, text, max_chunks, field)


def validate(services: Services, body: GenerationIn) -> tuple[str, dict, PriceRequest, dict]:
    """(mode, params, what pricing needs, usage terms) for the queue, or a typed error naming the field.

    Cheap checks only: nothing here tokenises a prompt or decodes an image (see `inputs`).
    """
    models = served_models(services.db)
    record = models.get(body.model)
    if record is None:
        raise ModelNotFound(
            f"`model` {body.model!r} is not served by any running worker; available: "
            f"{', '.join(sorted(models)) or 'none (no worker is running)'}.",
            field="model",
            value=body.model,
        )
    family = FAMILIES[record["family"]]
    width, height = body.width or family.native, body.height or family.native
    family.validate_size(width, height)
    if body.sampler is not None:
        resolve_sampler(body.sampler, architecture=family.architecture)
    if body.mask is not None and body.init_image is None:
        raise ValidationFailed("`mask` needs an `init_image` to paint into.", field="mask")
    segmenter = _mask_segmenter(body, record)
    controls = _controls(body, record)
    prompts = _image_prompts(body, record)
    refiner = _refiner(body, record)
    fits = record.get("loras")
    for i, lora in enumerate(body.loras):
        if fits is not None and lora.name not in fits:  # (older workers did not declare their LoRAs)
            raise ModelNotFound(f"`loras[{i}].name` {lora.name!r} is not a LoRA the workers serving {body.model!r} "
                                f"have for it; available: {', '.join(fits) or 'none'}.", field=f"loras[{i}].name",
                                value=lora.name)
    if body.vae is not None and body.vae.lower() not in ("automatic", "none", "") and body.vae not in (
            record.get("vaes") or []):
        raise ModelNotFound(f"`vae` {body.vae!r} is not a VAE the workers serving {body.model!r} have for it; "
                            f"available: {', '.join(record.get('vaes') or []) or 'none'}.", field="vae", value=body.vae)
    layers = int(record.get("text_layers") or 12)
    if body.clip_skip > layers:
        raise ValidationFailed(f"`clip_skip` must be at most {layers} for {body.model!r} (its text encoder's layers) "
                               f"but is {body.clip_skip}.", field="clip_skip", value=body.clip_skip)
    mode = "txt2img" if body.init_image is None else (
        "inpaint" if body.mask is not None or body.mask_prompt else "img2img")
    few = lora_preset([x.name for x in body.loras], family.name) if not record.get("preset") else None
    steps = body.steps or (few.steps if few else None) or record.get("default_steps") or family.default_steps
    spec = JobSpec(prompt=body.prompt, negative_prompt=body.negative_prompt, model=body.model, width=width,
                   height=height, steps=body.steps, cfg_scale=body.cfg_scale, sampler=body.sampler, seed=body.seed,
                   batch_size=body.batch_size, strength=body.strength, output_format=body.output_format,
                   loras=[LoraSpec(x.name, x.weight) for x in body.loras], controls=controls,
                   ip_adapters=prompts, clip_skip=body.clip_skip, vae=body.vae, refiner=refiner,
                   refiner_switch=body.refiner_switch, shift=body.shift,
                   hires=body.hires.model_dump() if body.hires is not None else None,
                   mask_prompt=body.mask_prompt, mask_grow=body.mask_grow, segmenter=segmenter,
                   cutout=services.settings.subject_prompt if body.background == "transparent" else None)
    if mode != "txt2img" and int(steps * body.strength) < 1:
        # diffusers would run no step at all (steps × strength rounds to 0): run exactly one.
        spec.strength = min(1.0, 1.0001 / steps)
    params = spec.to_params()
    t2i = sum(1 for c in controls if c["model"] in (record.get("t2i_adapters") or []))
    # Beyond the trained range: generated at the closest size the model supports, then upscaled (priced apart).
    base_w, base_h = family.base_size(width, height, record.get("max_side"))
    out_w, out_h, second = width, height, None
    if body.hires is not None:
        out_w, out_h, second = _hires(body, record, family, mode, width, height, steps)
    priced = PriceRequest(model=body.model, cost_class=record.get("cost_class") or family.cost_class, width=base_w,
                          height=base_h, out_width=out_w, out_height=out_h, hires=second, steps=steps,
                          images=body.batch_size, mode=mode,
                          strength=params["strength"], control_units=len(controls) - t2i, t2i_units=t2i,
                          references=sum(len(u["scales"]) for u in prompts))
    terms = {"license": record.get("license_name") or None, "license_url": record.get("license_url") or None}
    return mode, params, priced, terms


def _mask_segmenter(body: GenerationIn, record: dict) -> str | None:
    """The segmenter that finds a `mask_prompt`'s region or makes a transparent background (one the workers
    serving the model have), or None when the request needs none."""
    transparent = body.background == "transparent"
    if body.mask_prompt is None and not transparent:
        if body.segmenter is not None:
            raise ValidationFailed("`segmenter` is for `mask_prompt` or `background: transparent`; leave it out "
                                   "without them.", field="segmenter", value=body.segmenter)
        return None
    if body.mask_prompt is not None and body.init_image is None:
        raise ValidationFailed("`mask_prompt` needs an `init_image` to search.", field="mask_prompt",
                               value=body.mask_prompt)
    if body.mask_prompt is not None and body.mask is not None:
        raise ValidationFailed("send a `mask` or a `mask_prompt`, not both.", field="mask_prompt",
                               value=body.mask_prompt)
    if transparent and body.output_format == "jpeg":
        raise ValidationFailed("`background: transparent` needs an `output_format` with alpha (png or webp), not "
                               "jpeg.", field="output_format", value=body.output_format)
    have = record.get("segmenters") or []
    field, value = ("mask_prompt", body.mask_prompt) if body.mask_prompt is not None else ("background", "transparent")
    if not have:
        raise ModelNotFound(f"`{field}` {value!r} needs a segmentation model, and no worker serving {body.model!r} "
                            "has one; the operator adds a CLIPSeg folder (e.g. CIDAS/clipseg-rd64-refined) with "
                            "`solvent models add FOLDER` (docs/models.md, Segmenters).", field=field, value=value)
    if body.segmenter is not None and body.segmenter not in have:
        raise ModelNotFound(f"`segmenter` {body.segmenter!r} is not a segmenter the workers serving {body.model!r} "
                            f"have; available: {', '.join(have)}.", field="segmenter", value=body.segmenter)
    return body.segmenter or have[0]


NO_SEGMENTER = ("needs a segmentation model, and this server has none installed: the operator downloads a CLIPSeg "
                "folder (e.g. CIDAS/clipseg-rd64-refined) and adds it with `solvent models add FOLDER` "
                "(docs/models.md, Segmenters)")


def pick_segmenter(services: Services, name: str | None, what: str, field: str = "segmenter") -> dict:
    """The served segmenter `name` names (None: the first by id), or an error saying what to install (`what`
    needs it: "edit/remove-background", …)."""
    segs = served_models(services.db, "segmenter")
    if not segs:
        raise ModelNotFound(f"{what} {NO_SEGMENTER}.", field=field, value=name)
    name = name or min(segs)
    if name not in segs:
        raise ModelNotFound(f"`{field}` {name!r} is not a segmenter a running worker has; available: "
                            f"{', '.join(sorted(segs))}.", field=field, value=name)
    return segs[name]


def validate_segment(services: Services, body: SegmentIn) -> tuple[str, dict, PriceRequest, dict]:
    """A background-removal job's (mode, params, pricing, terms), priced by its pixels like an upscale."""
    settings = services.settings
    seg = pick_segmenter(services, body.segmenter, "removing a background")
    w, h = load_image(body.image, "image", max_bytes=settings.max_input_bytes, max_pixels=settings.max_input_pixels,
                      header_only=True).size
    spec = JobSpec(task="segment", segmenter=seg["id"], model=seg["id"], width=w, height=h,
                   prompt=body.prompt or settings.subject_prompt, output_format=body.output_format)
    priced = PriceRequest(model=seg["id"], cost_class="segment", width=w, height=h, steps=1, mode="segment")
    terms = {"license": seg.get("license_name") or None, "license_url": None}
    return "segment", spec.to_params(), priced, terms


def pick_upscaler(services: Services, name: str, field: str = "upscaler") -> dict:
    """The served upscaler `name` names (`auto`: `SOLVENT_UPSCALER`, else the first one the operator installed, by
    id, else the built-in solvent-tiny-upscale, else Lanczos), or an error listing those there are."""
    ups = served_models(services.db, "upscaler")
    if name.lower() == "auto":
        name = services.settings.upscaler
        if name.lower() == "auto":  # the operator's own first (by id), then the built-in one, then Lanczos
            name = min((k for k in ups if k != "lanczos"), key=lambda k: (bool(ups[k].get("builtin")), k),
                       default="lanczos")
    name = "lanczos" if name.lower() in ("lanczos", "none") else name
    if name not in ups:
        raise ModelNotFound(f"`{field}` {name!r} is not an upscaler a running worker has; available: "
                            f"{', '.join(sorted(ups)) or 'none (no worker is running)'}.", field=field, value=name)
    return ups[name]


def validate_upscale(services: Services, body: UpscaleIn) -> tuple[str, dict, PriceRequest, dict]:
    """An upscale job's (mode, params, pricing, terms): the output size from the input's header and the scale
    (or the exact size asked), bounded by `SOLVENT_MAX_INPUT_PIXELS`; a refining model that serves the upscaler."""
    settings = services.settings
    up = pick_upscaler(services, body.upscaler)
    w, h = load_image(body.image, "image", max_bytes=settings.max_input_bytes, max_pixels=settings.max_input_pixels,
                      header_only=True).size
    if body.width or body.height:
        out = (body.width or round(body.height * w / h), body.height or round(body.width * h / w))
        field = "width"
    else:
        factor = body.scale or up.get("scale") or 2
        out, field = (round(w * factor), round(h * factor)), "scale"
    if out[0] * out[1] <= w * h or out[0] < 8 or out[1] < 8:
        raise ValidationFailed(f"the upscaled size {out[0]}×{out[1]} must be larger than the image's {w}×{h}.",
                               field=field, value=f"{out[0]}x{out[1]}")
    limit = settings.max_input_pixels
    if out[0] * out[1] > limit:
        raise ValidationFailed(f"upscaling {w}×{h} to {out[0]}×{out[1]} would make {out[0] * out[1]} pixels, more "
                               f"than SOLVENT_MAX_INPUT_PIXELS ({limit}).", field=field, value=f"{out[0]}x{out[1]}")
    terms = {"license": up.get("license_name") or None, "license_url": None}
    spec = JobSpec(task="upscale", upscaler=up["id"], model=up["id"], width=out[0], height=out[1],
                   output_format=body.output_format)
    priced = PriceRequest(model=up["id"], cost_class="upscale", width=out[0], height=out[1], steps=1, mode="upscale")
    if body.prompt.strip() and body.model:  # refined by a low-strength pass of a model that has this upscaler
        record = served_models(services.db).get(body.model)
        if record is None:
            raise ModelNotFound(f"`model` {body.model!r} is not served by any running worker.", field="model",
                                value=body.model)
        if up["id"] != "lanczos" and up["id"] not in (record.get("upscalers") or []):
            raise ModelNotFound(f"no worker serving {body.model!r} has the upscaler {up['id']!r}.", field="upscaler",
                                value=up["id"])
        family = FAMILIES[record["family"]]
        family.validate_size(*(v // family.multiple * family.multiple for v in out))
        out = tuple(v // family.multiple * family.multiple for v in out)
        steps = body.steps or record.get("default_steps") or family.default_steps
        spec = dataclasses.replace(spec, model=body.model, refine=True, prompt=body.prompt, width=out[0],
                                   height=out[1], negative_prompt=body.negative_prompt, strength=body.strength,
                                   steps=body.steps, seed=body.seed)
        base = family.base_size(*out, record.get("max_side"))
        priced = PriceRequest(model=body.model, cost_class=record.get("cost_class") or family.cost_class,
                              width=base[0], height=base[1], out_width=out[0], out_height=out[1], steps=steps,
                              mode="img2img", strength=body.strength)
        terms = {"license": record.get("license_name") or None, "license_url": record.get("license_url") or None}
    return "upscale", spec.to_params(), priced, terms


def _hires(body: GenerationIn, record: dict, family, mode: str, width: int, height: int,
           steps: int) -> tuple[int, int, tuple[int, int, int]]:
    """Hires fix checked against what the serving workers have: (final width, height, the second pass's
    width, height and steps run)."""
    h = body.hires
    if mode != "txt2img":
        raise ValidationFailed("hires fix (`enable_hr`) is for text-to-image; leave it out with an init image.",
                               field="enable_hr", value=True)
    upscalers = record.get("upscalers")
    if h.upscaler not in LATENT_MODES and h.upscaler not in BUILTIN_UPSCALERS and h.upscaler.lower() != "lanczos" \
            and upscalers is not None and h.upscaler not in upscalers:
        raise ModelNotFound(f"`hr_upscaler` {h.upscaler!r} is not an upscaler the workers serving {body.model!r} "
                            f"have; available: {', '.join([*LATENT_MODES, *BUILTIN_UPSCALERS, *upscalers])}.",
                            field="hr_upscaler", value=h.upscaler)
    if h.sampler is not None:
        resolve_sampler(h.sampler, "hr_sampler_name", family.architecture)
    target = Hires(h.scale, h.resize_x, h.resize_y).target(width, height, family.multiple)
    try:
        family.validate_size(*target)
    except ValidationFailed as e:
        raise ValidationFailed(f"hires fix would make {target[0]}×{target[1]}: {e.message}", field="hr_scale",
                               value=h.scale) from e
    w2, h2 = family.base_size(*target, record.get("max_side"))
    return target[0], target[1], (w2, h2, max(1, int((h.steps or steps) * h.denoising)))


def _controls(body: GenerationIn, record: dict) -> list[dict]:
    """The ControlNet units as the job spec stores them, each checked and known to fit the model (the worker
    that serves the model declared which ControlNets it can pair with it)."""
    fits = record.get("controlnets") or []
    out = []
    for i, c in enumerate(body.controlnets):
        unit = check_unit(ControlUnit(c.model, None, c.preprocessor, c.weight, c.guidance_start, c.guidance_end,
                                      c.control_mode, c.threshold_a, c.threshold_b), i, record.get("estimators") or ())
        if c.model not in fits:
            raise ModelNotFound(f"`controlnets[{i}].model` {c.model!r} is not a ControlNet the workers serving "
                                f"{body.model!r} have for it; available: {', '.join(fits) or 'none'}.",
                                field=f"controlnets[{i}].model", value=c.model)
        out.append({**unit.public(), "image_blob": None})
    return out


def _image_prompts(body: GenerationIn, record: dict) -> list[dict]:
    """The IP-Adapter image prompts as the job spec stores them, each checked and known to fit the model."""
    fits = record.get("ip_adapters") or []
    total = sum(len(p.images) for p in body.ip_adapters)
    if total > MAX_REFERENCES:
        raise ValidationFailed(f"`ip_adapters` may hold at most {MAX_REFERENCES} reference images in all but holds "
                               f"{total}.", field="ip_adapters", value=total)
    out = []
    for i, p in enumerate(body.ip_adapters):
        scales = [x.scale for x in p.images]
        unit = check_image_prompt(ImagePrompt(p.model, [None] * len(scales), scales, p.weight), i)
        if p.model not in fits:
            raise ModelNotFound(f"`ip_adapters[{i}].model` {p.model!r} is not an IP-Adapter the workers serving "
                                f"{body.model!r} have for it (with its image encoder); available: "
                                f"{', '.join(fits) or 'none'}.", field=f"ip_adapters[{i}].model", value=p.model)
        out.append({**unit.public(), "image_blobs": []})
    return out


def _refiner(body: GenerationIn, record: dict) -> str | None:
    if body.refiner is None or body.refiner.lower() in ("", "none"):
        return None
    fits = record.get("refiners") or []
    if body.refiner not in fits:
        raise ModelNotFound(f"`refiner` {body.refiner!r} is not a refiner the workers serving {body.model!r} can hand "
                            f"over to; available: {', '.join(fits) or 'none'} (refiners are for SDXL models).",
                            field="refiner", value=body.refiner)
    return body.refiner


def inputs(services: Services, body: GenerationIn | UpscaleIn | SegmentIn) -> dict[str, bytes]:
    """The costly checks: prompt token chunks, and input images decoded under the limits → PNG bytes to store."""
    settings = services.settings
    if isinstance(body, UpscaleIn | SegmentIn):
        for name in ("prompt", "negative_prompt"):
            _check_prompt(getattr(body, name, "") or "", name, settings.max_prompt_chunks)
        image = load_image(body.image, "image", mode="RGB", max_bytes=settings.max_input_bytes,
                           max_pixels=settings.max_input_pixels)
        return {"init_image_blob": png_bytes(image)}
    for name in ("prompt", "negative_prompt"):
        _check_prompt(getattr(body, name), name, settings.max_prompt_chunks)
    limits = dict(max_bytes=settings.max_input_bytes, max_pixels=settings.max_input_pixels)
    out: dict[str, bytes] = {}
    if body.init_image is not None:
        init = load_image(body.init_image, "init_image", **limits)
        out["init_image_blob"] = png_bytes(init)
        if body.mask is not None:
            mask = load_image(body.mask, "mask", mode="L", **limits)
            if mask.size != init.size:
                raise InvalidImage(
                    f"`mask` must be the size of `init_image` ({init.size[0]}×{init.size[1]}) but is "
                    f"{mask.size[0]}×{mask.size[1]}.", field="mask", value=f"{mask.size[0]}x{mask.size[1]}")
            out["mask_blob"] = png_bytes(mask)
    for i, c in enumerate(body.controlnets):
        out[f"controls.{i}"] = png_bytes(load_image(c.image, f"controlnets[{i}].image", mode="RGB", **limits))
    for i, p in enumerate(body.ip_adapters):
        for j, x in enumerate(p.images):
            out[f"ip.{i}.{j}"] = png_bytes(load_image(x.image, f"ip_adapters[{i}].images[{j}]", mode="RGB",
                                                      **limits))
    return out


def _validated(services: Services, body: GenerationIn | UpscaleIn | SegmentIn) -> tuple[str, dict, PriceRequest,
                                                                                       dict]:
    if isinstance(body, UpscaleIn):
        mode, params, priced, terms = validate_upscale(services, body)
    elif isinstance(body, SegmentIn):
        mode, params, priced, terms = validate_segment(services, body)
    else:
        mode, params, priced, terms = validate(services, body)
    if body.webhook_url:  # the outbound rules of every callback (no loopback, private or metadata addresses)
        params["webhook_url"] = services.webhooks.check(body.webhook_url)
    return mode, params, priced, terms


def admit(services: Services, principal: Principal, body: GenerationIn | UpscaleIn | SegmentIn,
          idempotency_key: str | None = None, hooks: list[AdmissionHook] | None = None) -> tuple[Job, bool]:
    """Validate, precheck billing, check inputs, run admission hooks, enqueue. Returns (job, created)."""
    principal.require("generate")
    if idempotency_key is not None and len(idempotency_key) > 200:
        raise ValidationFailed("`Idempotency-Key` must be at most 200 characters.", field="idempotency_key")
    if idempotency_key is not None:
        existing = services.queue.find_idempotent(principal.org_id, idempotency_key)
        if existing is not None:
            return existing, False
    mode, params, priced, terms = _validated(services, body)
    if params.get("webhook_url"):
        secret_of(services.db, principal.org_id)  # the signing secret exists before the first delivery
    payer = Payer(principal.org_id, principal.key_id)
    services.billing.precheck(payer, priced)
    blobs = inputs(services, body)
    for hook in hooks or []:
        hook(services, principal, params)
    stored: list[str] = []

    def on_insert(s, job: Job) -> None:
        admit_in(services, s, job, payer, priced, terms)
        params = dict(job.params)
        for name, data in blobs.items():  # stored only once the job is admitted
            stored.append(services.images.put(data))
            if name.startswith("controls."):
                i = int(name.split(".", 1)[1])
                params["controls"] = [dict(c, image_blob=stored[-1]) if k == i else c
                                      for k, c in enumerate(params["controls"])]
            elif name.startswith("ip."):
                i = int(name.split(".")[1])
                params["ip_adapters"] = [dict(u, image_blobs=[*u["image_blobs"], stored[-1]]) if k == i else u
                                         for k, u in enumerate(params["ip_adapters"])]
            else:
                params[name] = stored[-1]
        job.params = params

    try:
        return services.queue.enqueue(principal.org_id, params["model"] or body.model, params, mode=mode,
                                      idempotency_key=idempotency_key, api_key_id=principal.key_id,
                                      on_insert=on_insert)
    except BaseException:
        forget_blobs(services, stored)
        raise


def forget_blobs(services: Services, blobs: list[str]) -> None:
    """Delete stored blobs that no image and no job refers to (after a failed enqueue)."""
    from ..jobs.retention import blob_in_use

    for blob in blobs:
        with services.db.session() as s:
            used = blob_in_use(s, blob)
        if not used:
            services.images.delete(blob)


def admit_in(services: Services, s, job: Job, payer: Payer, priced: PriceRequest, terms: dict) -> None:
    """Inside the enqueue transaction: reserve credits, then the budgets' share of the estimated cost."""
    services.billing.admit_in(s, job, payer, priced, terms)
    services.budgets.admit_in(s, job)


def precheck(services: Services, principal: Principal, body: GenerationIn) -> None:
    """What a compat layer calls before decoding its inputs: would this request (as image-to-image or
    inpainting when `init_image`/`mask` are set, whatever their content) be refused for limits or credits?"""
    principal.require("generate")
    _, _, priced, _ = validate(services, body)
    services.billing.precheck(Payer(principal.org_id, principal.key_id), priced)


def quote(services: Services, principal: Principal, body: GenerationIn | UpscaleIn | SegmentIn) -> dict:
    """What `admit` would charge and whether it would be admitted now, without storing anything."""
    principal.require("generate")
    _, _, priced, _ = _validated(services, body)
    return services.billing.quote(Payer(principal.org_id, principal.key_id), priced)
