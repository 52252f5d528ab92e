"""The typed job spec: what admission stores in a job's `params` and every room reads back.

Admission builds a `JobSpec` from the wire request (`to_params` → the jobs table); the worker turns it into
the engine's `GenerationRequest` (`to_request`); billing, the ledger and the routes read its fields instead
of decoding the dict again. Rows written before a field existed read back with its default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .control import ControlUnit, ImagePrompt
from .request import GenerationRequest, Hires, LoraSpec, SegmentRequest, UpscaleRequest

BLOB_FIELDS = ("init_image_blob", "mask_blob")  # input images, stored apart; the spec keeps their keys
# Fields that must be equal for jobs to share one device call (besides the model and text-to-image mode).
BATCH_FIELDS = ("width", "height", "steps", "cfg_scale", "sampler", "loras", "clip_skip", "vae", "shift")
HIRES_FIELDS = {f.name for f in dataclasses.fields(Hires)}


@dataclass
class JobSpec:
    # "generate" (text-to-image, image-to-image, inpainting) or "upscale" (`init_image_blob` made larger by
    # `upscaler` to `width`×`height`; with a prompt and `refine`, then refined by `model` at `strength`) or
    # "segment" (remove the background of `init_image_blob`: keep what `segmenter` finds for `prompt`).
    task: str = "generate"
    upscaler: str | None = None
    refine: bool = False
    prompt: str = ""
    negative_prompt: str = ""
    model: str = ""
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    seed: int | None = None
    batch_size: int = 1
    strength: float = 0.75
    loras: list[LoraSpec] = field(default_factory=list)
    output_format: str = "png"
    # ControlNet units: `ControlUnit.public()` fields plus `image_blob`, the stored control image's key.
    controls: list[dict[str, Any]] = field(default_factory=list)
    # IP-Adapter image prompts: `ImagePrompt.public()` fields plus `image_blobs`, the stored references' keys.
    ip_adapters: list[dict[str, Any]] = field(default_factory=list)
    clip_skip: int = 1
    vae: str | None = None
    refiner: str | None = None
    refiner_switch: float = 0.8
    shift: float | None = None
    hires: dict[str, Any] | None = None  # `Hires` fields (hires fix)
    mask_prompt: str | None = None  # inpaint where the segmenter finds this (search and replace), grown by mask_grow
    mask_grow: int = 0
    segmenter: str | None = None
    cutout: str | None = None  # a transparent background: keep what the segmenter finds for this prompt
    init_image_blob: str | None = None
    mask_blob: str | None = None
    webhook_url: str | None = None  # POSTed to, signed, when the job ends (`solvent.jobs.webhooks`)
    # Set at admission by billing: the price reserved (milli-credits), the plan, the usage terms.
    price_mc: int | None = None
    plan: str | None = None
    terms: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> int:
        """Images asked for (at least one, whatever an old row holds)."""
        try:
            return max(1, int(self.batch_size or 1))
        except (TypeError, ValueError):
            return 1

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> JobSpec:
        params = params or {}
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in params.items() if k in known}
        values["loras"] = [x if isinstance(x, LoraSpec) else LoraSpec(str(x["name"]), float(x.get("weight", 1.0)))
                           for x in values.get("loras") or []]
        values["terms"] = dict(values.get("terms") or {})
        return cls(**values)

    def to_params(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["loras"] = [{"name": x.name, "weight": x.weight} for x in self.loras]
        return out

    def blob_keys(self) -> list[str]:
        """Every stored input image of the job (init image, mask, control images)."""
        keys = [self.init_image_blob, self.mask_blob, *(c.get("image_blob") for c in self.controls),
                *(b for u in self.ip_adapters for b in u.get("image_blobs") or [])]
        return [k for k in keys if k]

    def public(self) -> dict[str, Any]:
        """The parameters a job's owner sees (no storage keys, no billing internals)."""
        return {k: v for k, v in visible(self.to_params()).items() if k not in ("terms", "plan")}

    def batch_key(self) -> tuple | None:
        """What jobs must share to run in one device call; None for a job that runs alone (control units, image
        prompts, a refiner and hires fix each need their own call)."""
        if self.controls or self.ip_adapters or self.refiner or self.hires or self.mask_prompt or \
                self.cutout or self.task != "generate":
            return None
        params = self.to_params()
        return tuple(repr(params[k]) for k in BATCH_FIELDS)

    def to_request(self, init_image=None, mask=None, control_images=None, references=None) -> GenerationRequest:
        """The engine's request (input images decoded by the caller from `init_image_blob` / `mask_blob`, each
        control unit's `image_blob` and each image prompt's `image_blobs`, in order)."""
        images = list(control_images or [None] * len(self.controls))
        controls = [ControlUnit(image=img, **{k: v for k, v in c.items() if k != "image_blob"})
                    for c, img in zip(self.controls, images, strict=True)]
        refs = list(references or [[None] * len(u.get("scales") or []) for u in self.ip_adapters])
        prompts = [ImagePrompt(u["model"], list(imgs), [float(x) for x in u.get("scales") or []],
                               float(u.get("weight", 1.0))) for u, imgs in zip(self.ip_adapters, refs, strict=True)]
        return GenerationRequest(
            prompt=self.prompt, negative_prompt=self.negative_prompt, model=self.model or None, width=self.width,
            height=self.height, steps=self.steps, cfg_scale=self.cfg_scale, sampler=self.sampler, seed=self.seed,
            batch_size=self.images, init_image=init_image, strength=self.strength, mask=mask,
            loras=list(self.loras), controls=controls, ip_adapters=prompts, clip_skip=self.clip_skip or 1, vae=self.vae,
            refiner=self.refiner, refiner_switch=self.refiner_switch, shift=self.shift,
            hires=Hires(**{k: v for k, v in self.hires.items() if k in HIRES_FIELDS}) if self.hires else None,
            mask_prompt=self.mask_prompt, mask_grow=int(self.mask_grow or 0), segmenter=self.segmenter,
            cutout=self.cutout, terms=dict(self.terms))

    def to_segment(self, image) -> SegmentRequest:
        """A background-removal job's request (its input image decoded by the caller from `init_image_blob`)."""
        return SegmentRequest(image=image, prompt=self.prompt, segmenter=self.segmenter, terms=dict(self.terms))

    def to_upscale(self, image) -> UpscaleRequest:
        """An upscale job's request (its input image decoded by the caller from `init_image_blob`)."""
        refine = None
        if self.refine:
            refine = dataclasses.replace(self.to_request(init_image=image), width=self.width, height=self.height)
        return UpscaleRequest(image=image, upscaler=self.upscaler or "lanczos", width=int(self.width or 0),
                              height=int(self.height or 0), refine=refine, terms=dict(self.terms))


def visible(params: dict[str, Any]) -> dict[str, Any]:
    """Job params without storage keys (what an API answer shows)."""
    out = {k: v for k, v in params.items() if k not in BLOB_FIELDS}
    if out.get("controls"):
        out["controls"] = [{k: v for k, v in c.items() if k != "image_blob"} for c in out["controls"]]
    if out.get("ip_adapters"):
        out["ip_adapters"] = [{k: v for k, v in u.items() if k != "image_blobs"} for u in out["ip_adapters"]]
    return out
