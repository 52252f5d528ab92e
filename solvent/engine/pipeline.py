"""The engine: validate a `GenerationRequest`, load (and cache) the model, run diffusers, report `Usage`.

One `Engine` per process and device. Loaded pipelines live in an LRU cache bounded by a memory
budget; each has a lock, so one pipeline is never called from two threads at once.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..config import Settings, get_settings
from ..errors import (
    Cancelled,
    EngineError,
    IncompatibleAdapter,
    InvalidImage,
    ModelNotFound,
    ModelTooLarge,
    OutOfMemory,
    ValidationFailed,
)
from ..generation.control import (
    CONTROL_MODES,
    MAX_REFERENCES,
    MAX_UNITS,
    ControlUnit,
    ImagePrompt,
    check_image_prompt,
    check_unit,
    preprocess,
)
from ..generation.families import FAMILIES, Family, lora_preset, shipped_config
from ..generation.metadata import infotext, parse_infotext, with_fields
from ..generation.prompts import chunk_prompt, is_weighted, plain_prompt
from ..generation.request import (
    BUILTIN_UPSCALERS,
    LATENT_MODES,
    MAX_SEED,
    GenerationRequest,
    GenerationResult,
    SegmentRequest,
    UpscaleRequest,
    Usage,
    batch_parts,
    part_ms,
    random_seed,
)
from ..generation.samplers import Sampler, resolve_sampler
from ..generation.tokens import clip_encode
from . import device as dev
from . import steering
from .adapters import (
    STEERING,
    check_fits,
    depth_map,
    load_controlnet,
    load_estimator,
    load_image_encoder,
    load_t2i_adapter,
    load_vae,
    read_ip_adapter,
)
from .checkpoint import load_components
from .embeddings import load_into, mentioned
from .lora import apply_loras, resolve_lora
from .prompts import PromptEncoder, sd3_reweight
from .schedulers import make_scheduler
from .store import ModelRecord, ModelStore

MAX_STEPS = 150
MAX_CFG = 35.0

# Latent → RGB factors for cheap previews (no VAE decode), per latent space.
_LATENT_RGB = {
    "sd": ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]],
           [0.0, 0.0, 0.0]),
    "sdxl": ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
              [-0.3165, -0.2492, -0.2188]], [0.1084, -0.0175, -0.0011]),
}


@dataclass
class ProgressEvent:
    """One denoising step done. `preview()` renders a cheap image of the current latents."""

    step: int
    total: int
    _preview: Callable[[], Image.Image] | None = None

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0

    def preview(self) -> Image.Image | None:
        return self._preview() if self._preview else None


ProgressFn = Callable[[ProgressEvent], None]


@dataclass
class UpscaleResult:
    image: Image.Image
    upscaler: str  # the store id, or "lanczos"
    scale: float
    passes: int  # how many times the model ran (×4 twice for ×8, …)
    device_seconds: float


@dataclass
class Resolved:
    """A request with every default filled in and every field validated."""

    request: GenerationRequest
    record: ModelRecord
    family: Family
    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: Sampler
    seed: int
    loras: list[tuple[Path, float]] = field(default_factory=list)
    init_image: Image.Image | None = None
    mask: Image.Image | None = None
    controls: list[tuple[ModelRecord, ControlUnit, Image.Image]] = field(default_factory=list)  # record, unit, map
    vae: ModelRecord | None = None  # a VAE from the store instead of the model's own
    embeddings: list[ModelRecord] = field(default_factory=list)  # textual inversions the prompts name
    ip_adapters: list[tuple[ModelRecord, ImagePrompt]] = field(default_factory=list)
    image_encoder: ModelRecord | None = None  # the one encoder every IP-Adapter of the request reads
    refiner: ModelRecord | None = None  # SDXL: the model that runs the steps after `request.refiner_switch`
    # The size asked for when it lies beyond the model's trained range (`width`×`height` is then the size it is
    # generated at, `Family.base_size`, and the images are upscaled to this with `upscaler`); 0 = as generated.
    out_width: int = 0
    out_height: int = 0
    upscaler: str = "lanczos"

    @property
    def upscaled(self) -> bool:
        return bool(self.out_width) and (self.out_width, self.out_height) != (self.width, self.height)

    @property
    def output_size(self) -> tuple[int, int]:
        return (self.out_width, self.out_height) if self.upscaled else (self.width, self.height)

    @property
    def controlnets(self) -> list[tuple[ModelRecord, ControlUnit, Image.Image]]:
        return [c for c in self.controls if c[0].kind == "controlnet"]

    @property
    def t2i_adapters(self) -> list[tuple[ModelRecord, ControlUnit, Image.Image]]:
        return [c for c in self.controls if c[0].kind == "t2i_adapter"]


def _keep_unmasked(images: list[Image.Image], rs: list[Resolved], counts: list[int]) -> list[Image.Image]:
    """Paste each request's init image back where its mask is black (as AUTOMATIC1111 does).

    The pipeline keeps those latents, but the VAE decoder attends over the whole image, so what
    it paints in the masked part can shift the colours of the kept part (solvent-tiny's decoder
    re-colours a kept background to match a newly drawn one).
    """
    out, first = [], 0
    for x, n in zip(rs, counts, strict=True):  # init and mask were resized to the request's size
        out.extend(Image.composite(img, x.init_image, x.mask) for img in images[first:first + n])
        first += n
    return out


class _PlainUNetView(torch.nn.Module):
    """A plain (non-inpainting) UNet whose config says 4 input channels, whatever its latents have."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet
        self.config = type(unet.config)({**unet.config, "in_channels": 4})

    def forward(self, *args, **kwargs):
        return self.unet(*args, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["unet"], name)


@dataclass
class LoadedModel:
    """A pipeline in memory with its prompt encoder, scheduler config, size and the LoRAs fused into it."""

    record: ModelRecord
    pipe: Any
    encoder: PromptEncoder
    scheduler_config: dict
    nbytes: int
    load_seconds: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    variants: dict[str, Any] = field(default_factory=dict)
    loras: set[str] = field(default_factory=set)
    dtype: Any = None  # the dtype its weights compute in (SD3 / Flux: bf16 on GPUs)


class Engine:
    """Turns generation requests into images on one device."""

    def __init__(self, settings: Settings | None = None, store: ModelStore | None = None):
        self.settings = settings or get_settings()
        self.store = store or ModelStore(self.settings)
        self.device = dev.pick_device(self.settings.device)
        self.dtype = dev.pick_dtype(self.device, self.settings.dtype)
        self._cache: OrderedDict[str, LoadedModel] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._estimators: dict[tuple, Any] = {}  # (id, sha256) → depth estimators ((model, processor)) and upscalers in use

    # ------------------------------------------------------------------------------------------
    # Validation
    # ------------------------------------------------------------------------------------------

    def resolve(self, req: GenerationRequest) -> Resolved:
        """Fill defaults and validate every field; raises a typed error naming the field."""
        record = self.store.get(req.model or self.store.default_id())
        if record.kind != "checkpoint":
            where = {"refiner": "`refiner`", "ip_adapter": "`ip_adapters`", "vae": "`vae`",
                     "upscaler": "an upscale request", "segmenter": "`segmenter`",
                     "embedding": "the prompt"}.get(record.kind, "`controlnets`")
            raise ValidationFailed(f"`model` {record.id!r} is a {record.kind}, not a model that makes images; name "
                                   f"it in {where} with a model of its family instead.", field="model",
                                   value=record.id)
        family = FAMILIES[record.family]
        out_width = family.native if req.width is None else req.width
        out_height = family.native if req.height is None else req.height
        family.validate_size(out_width, out_height)
        # Beyond the trained range (or an SD3 transformer's position table): generated smaller, then upscaled.
        width, height = family.base_size(out_width, out_height, record.details.get("max_side"))
        # A few-step LoRA (LCM, Lightning, Hyper) brings its own defaults to a model that has none of its own.
        few = lora_preset([spec.name for spec in req.loras], record.family) if not record.preset else None
        steps = (few.steps if few else record.default_steps) if req.steps is None else req.steps
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
            raise ValidationFailed(
                f"`steps` must be an integer between 1 and {MAX_STEPS} but is {steps!r}.", field="steps", value=steps
            )
        cfg = (few.cfg if few else record.default_cfg) if req.cfg_scale is None else req.cfg_scale
        if not isinstance(cfg, int | float) or isinstance(cfg, bool) or not 0 <= cfg <= MAX_CFG:
            raise ValidationFailed(
                f"`cfg_scale` must be a number between 0 and {MAX_CFG:g} but is {cfg!r}.", field="cfg_scale", value=cfg
            )
        sampler = resolve_sampler(req.sampler or (few.sampler if few else record.default_sampler),
                                  architecture=family.architecture)
        seed = req.seed
        if seed is None or seed == -1:
            seed = random_seed()
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
            raise ValidationFailed(
                f"`seed` must be an integer between 0 and {MAX_SEED} (or -1 for random) but is {seed!r}.",
                field="seed",
                value=seed,
            )
        batch = req.batch_size
        if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= self.settings.max_batch_size:
            raise ValidationFailed(
                f"`batch_size` must be between 1 and {self.settings.max_batch_size} but is {batch!r}.",
                field="batch_size",
                value=batch,
            )
        if seed + batch - 1 > MAX_SEED:
            seed = seed - batch + 1  # keep every image's seed (seed + i) in range
        for name in ("prompt", "negative_prompt"):
            text = getattr(req, name)
            if not isinstance(text, str):
                raise ValidationFailed(f"`{name}` must be a string but is {type(text).__name__}.", field=name)
            chunk_prompt(clip_encode, text, self.settings.max_prompt_chunks, name)
        init, mask = self._resolve_images(req, width, height) if req.init_latents is None else (None, None)
        loras = [(resolve_lora(spec.name, self.settings.loras_dir), spec.weight) for spec in req.loras]
        for path, weight in loras:
            if not isinstance(weight, int | float) or not -10 <= weight <= 10:
                raise ValidationFailed(
                    f"`loras` weight for {path.stem!r} must be between -10 and 10 but is {weight!r}.",
                    field="loras",
                    value=weight,
                )
        layers = self.store.text_layers(record)
        if not isinstance(req.clip_skip, int) or isinstance(req.clip_skip, bool) or not 1 <= req.clip_skip <= layers:
            raise ValidationFailed(f"`clip_skip` must be an integer between 1 and {layers} (the text encoder's layers "
                                   f"of {record.id!r}) but is {req.clip_skip!r}.", field="clip_skip",
                                   value=req.clip_skip)
        if family.flow:
            _check_flow(req, record, family)
        elif req.shift is not None:
            raise ValidationFailed(f"`shift` is for flow-matching models (SD3, Flux), and `model` {record.id!r} is "
                                   f"{record.family}; leave it out.", field="shift", value=req.shift)
        controls = self._resolve_controls(req, record, family, width, height)
        ips, encoder = self._resolve_ip_adapters(req, record)
        upscaler = "lanczos"
        if (width, height) != (out_width, out_height):
            upscaler = self._size_upscaler(record)
        return Resolved(req, record, family, width, height, steps, float(cfg), sampler, seed, loras, init, mask,
                        controls, self._resolve_vae(req, record), self._resolve_embeddings(req, record, family),
                        ips, encoder, self._resolve_refiner(req, record, family, controls), out_width, out_height,
                        upscaler)

    def _size_upscaler(self, record: ModelRecord) -> str:
        """What upscales `record`'s images past its trained size (`SOLVENT_SIZE_UPSCALER`). `auto`, per model:
        solvent-tiny gets solvent-tiny-upscale (trained on its scenes), any other model the first upscaler the
        operator installed (by id), else Lanczos."""
        name = self.settings.size_upscaler
        if name.lower() == "lanczos":
            return "lanczos"
        if name.lower() == "auto":
            ups = self.store.list("upscaler")
            if record.family == "tiny":
                return next((r.id for r in ups if r.id == "solvent-tiny-upscale"), "lanczos")
            return next((r.id for r in sorted(ups, key=lambda r: r.id) if r.source != "builtin"), "lanczos")
        return self._named(name, "SOLVENT_SIZE_UPSCALER", ("upscaler",), "an upscaler").id

    def _resolve_refiner(self, req: GenerationRequest, record: ModelRecord, family: Family,
                         controls: list) -> ModelRecord | None:
        if req.refiner is None or str(req.refiner).lower() in ("", "none"):
            return None
        refiner = self._named(req.refiner, "refiner", ("refiner",), "an SDXL refiner")
        if family.architecture != "sdxl":
            raise IncompatibleAdapter(f"`refiner` {refiner.id!r} refines SDXL images, but `model` {record.id!r} is "
                                      f"{record.family}.", field="refiner", value=refiner.id)
        if req.mode == "inpaint":
            raise ValidationFailed("`refiner` follows text-to-image and image-to-image generations; for inpainting, "
                                   "leave it out.", field="refiner", value=refiner.id)
        if any(c.kind == "controlnet" for c, _, _ in controls):
            raise ValidationFailed("`refiner` cannot follow ControlNet units: diffusers' SDXL ControlNet pipelines do "
                                   "not hand their latents over mid-way; leave one of them out.", field="refiner",
                                   value=refiner.id)
        if self.store.latent_channels(refiner) != self.store.latent_channels(record):
            raise IncompatibleAdapter(f"`refiner` {refiner.id!r} reads {self.store.latent_channels(refiner)} latent "
                                      f"channels but `model` {record.id!r} makes {self.store.latent_channels(record)}.",
                                      field="refiner", value=refiner.id)
        switch = req.refiner_switch
        if not isinstance(switch, int | float) or isinstance(switch, bool) or not 0 < switch < 1:
            raise ValidationFailed(f"`refiner_switch` must be a number between 0 and 1 (exclusive) but is {switch!r}.",
                                   field="refiner_switch", value=switch)
        return refiner

    def _resolve_ip_adapters(self, req: GenerationRequest, record: ModelRecord):
        """Each image prompt's IP-Adapter (it must fit the model's width and layers) and the one image encoder
        they all read (diffusers' pipelines hold one)."""
        if not req.ip_adapters:
            return [], None
        total = sum(len(u.scales) for u in req.ip_adapters)
        if total > MAX_REFERENCES:
            raise ValidationFailed(f"`ip_adapters` may hold at most {MAX_REFERENCES} reference images in all but "
                                   f"holds {total}.", field="ip_adapters", value=total)
        width, layers = self.store.cross_attention_width(record), self.store.cross_attention_layers(record)
        out, encoders = [], {}
        for i, unit in enumerate(req.ip_adapters):
            where = f"ip_adapters[{i}]"
            check_image_prompt(unit, i)
            rec = self._named(unit.model, f"{where}.model", ("ip_adapter",), "an IP-Adapter")
            got = rec.details.get("layers")
            if (width and rec.cross_attention_dim != width) or (layers and got and got != layers):
                raise IncompatibleAdapter(
                    f"`{where}.model` {rec.id!r} is an IP-Adapter for models with {rec.cross_attention_dim}-wide text "
                    f"conditioning and {got} cross-attention layers, but `model` {record.id!r} is {record.family} "
                    f"({width}-wide, {layers} layers); pick an IP-Adapter made for it.", field=f"{where}.model",
                    value=rec.id)
            try:
                enc = self.store.image_encoder_for(rec)
            except ModelNotFound as e:
                raise ModelNotFound(e.message, field=f"{where}.model", value=rec.id) from e
            encoders[enc.id] = enc
            if len(unit.images) != len(unit.scales):
                raise ValidationFailed(f"`{where}.images` holds {len(unit.images)} images for {len(unit.scales)} "
                                       "scales.", field=f"{where}.images")
            for j, img in enumerate(unit.images):
                if img is None:
                    raise ValidationFailed(f"`{where}.images[{j}]` is required: a reference image.",
                                           field=f"{where}.images[{j}]")
                if img.size[0] * img.size[1] > self.settings.max_input_pixels:
                    raise InvalidImage(f"`{where}.images[{j}]` has more than {self.settings.max_input_pixels} "
                                       "pixels.", field=f"{where}.images[{j}]", value=img.size)
            out.append((rec, unit))
        if len(encoders) > 1:
            raise ValidationFailed(f"the IP-Adapters of one request must read the same image encoder, but these read "
                                   f"{', '.join(sorted(encoders))}; use adapters trained with one encoder.",
                                   field="ip_adapters")
        return out, next(iter(encoders.values()))

    def _named(self, name: str, where: str, kinds: tuple[str, ...], label: str) -> ModelRecord:
        """The store record `name` of one of `kinds`, or an error naming the field."""
        try:
            rec = self.store.get(name)
        except ModelNotFound as e:
            raise ModelNotFound(e.message.replace("`model`", f"`{where}`"), field=where, value=name) from e
        if rec.kind not in kinds:
            raise ValidationFailed(f"`{where}` {rec.id!r} is a {rec.kind}, not {label}.", field=where, value=rec.id)
        return rec

    def _resolve_embeddings(self, req: GenerationRequest, record: ModelRecord, family: Family) -> list[ModelRecord]:
        """The store's embeddings that fit the model and that the prompt or negative prompt names."""
        fits = self.embeddings_for(record)
        if not fits:
            return []
        names = mentioned(f"{req.prompt}\n{req.negative_prompt}", [e.id for e in fits])
        return [e for e in fits if e.id in names]

    def fits(self, record: ModelRecord) -> dict[str, list[str]]:
        """What in the store a checkpoint can take, by kind: the lists a worker declares for it (and the rules
        `resolve` enforces): ControlNets and T2I-Adapters (`controlnets`, both named in control units; the
        adapters also in `t2i_adapters`), `ip_adapters` (those whose image encoder is installed), `vaes`,
        `embeddings`, `refiners` (SDXL)."""
        family = FAMILIES[record.family]
        width, layers = self.store.cross_attention_width(record), self.store.cross_attention_layers(record)
        t2i_arch = _t2i_style(record)
        latent = self.store.latent_channels(record)
        every = self.store.list(None)
        if family.flow:  # SD3 / Flux take VAEs of their latent space; no UNet adapter fits them
            return {"controlnets": [], "t2i_adapters": [], "ip_adapters": [], "embeddings": [], "refiners": [],
                    "vaes": [r.id for r in every if r.kind == "vae" and r.latent_channels == latent],
                    "estimators": []}

        def ip_ok(r: ModelRecord) -> bool:
            try:
                self.store.image_encoder_for(r)
            except ModelNotFound:
                return False
            return (width is None or r.cross_attention_dim == width) and (
                layers is None or r.details.get("layers") in (None, layers))

        out = {
            "controlnets": [r.id for r in every if r.kind == "controlnet" and r.architecture == family.architecture
                            and (None in (width, r.cross_attention_dim) or width == r.cross_attention_dim)],
            "t2i_adapters": [r.id for r in every if r.kind == "t2i_adapter" and r.architecture == t2i_arch],
            "ip_adapters": [r.id for r in every if r.kind == "ip_adapter" and ip_ok(r)],
            "vaes": [r.id for r in every if r.kind == "vae" and r.latent_channels in (None, latent)],
            "embeddings": [e.id for e in self.embeddings_for(record)],
        }
        out["controlnets"] += out["t2i_adapters"]
        out["refiners"] = [r.id for r in every if r.kind == "refiner" and family.architecture == "sdxl"
                           and self.store.latent_channels(r) == latent]
        out["estimators"] = sorted({r.details.get("task") for r in every if r.kind == "estimator"} - {None})
        out["segmenters"] = [r.id for r in every if r.kind == "segmenter"]  # for `mask_prompt` (search and replace)
        return out

    def upscale(self, image: Image.Image, upscaler: str = "lanczos", scale: float | None = None) -> UpscaleResult:
        """`image` upscaled by `scale` (default: the upscaler's own factor; Lanczos: 2) with an installed upscaler
        (run as often as the scale needs, tiled, then resized to the exact size) or `lanczos`. The output is
        bounded by `SOLVENT_MAX_INPUT_PIXELS` (what any image entering Solvent may have)."""
        limit = self.settings.max_input_pixels
        if image.width * image.height > limit:
            raise InvalidImage(f"`image` has more than {limit} pixels.", field="image", value=image.size)
        record = None
        if str(upscaler).lower() not in ("lanczos", "none", ""):
            record = self._named(upscaler, "upscaler", ("upscaler",), "an upscaler")
        native = int(record.details.get("scale", 4)) if record else 2
        factor = native if scale is None else scale
        if not isinstance(factor, int | float) or isinstance(factor, bool) or not 1 < factor <= 16:
            raise ValidationFailed(f"`scale` must be a number above 1 and at most 16 but is {factor!r}.",
                                   field="scale", value=factor)
        size = (round(image.width * factor), round(image.height * factor))
        if size[0] * size[1] > limit:
            raise ValidationFailed(f"`scale` {factor:g} would make {size[0]}×{size[1]} = {size[0] * size[1]} pixels, "
                                   f"more than SOLVENT_MAX_INPUT_PIXELS ({limit}).", field="scale", value=factor)
        t0 = time.perf_counter()
        out, passes = self._upscale_to(image, record, size)
        dev.synchronize(self.device)
        return UpscaleResult(out, record.id if record else "lanczos", float(factor), passes,
                             time.perf_counter() - t0)

    def run_upscale(self, req: UpscaleRequest, progress: ProgressFn | None = None,
                    cancel: threading.Event | Callable[[], bool] | None = None) -> GenerationResult:
        """An upscale job: `req.image` to `req.width`×`req.height` with its upscaler, then (with `req.refine`) an
        image-to-image pass of that request at the new size. One image, its usage and an infotext that says what
        was done (A1111's `Postprocess upscaler` fields)."""
        is_cancelled = cancel.is_set if isinstance(cancel, threading.Event) else (cancel or (lambda: False))
        limit = self.settings.max_input_pixels
        size = (req.width, req.height)
        if req.image.width * req.image.height > limit:
            raise InvalidImage(f"`image` has more than {limit} pixels.", field="image", value=req.image.size)
        if not (isinstance(req.width, int) and isinstance(req.height, int)) or min(size) < 8 or \
                req.width * req.height > limit:
            raise ValidationFailed(f"the upscaled size {req.width}×{req.height} must have sides of at least 8 and at "
                                   f"most SOLVENT_MAX_INPUT_PIXELS ({limit}) pixels.", field="scale", value=size)
        record = None
        if str(req.upscaler).lower() != "lanczos":
            record = self._named(req.upscaler, "upscaler", ("upscaler",), "an upscaler")
        name = record.id if record else "lanczos"
        fields = {"Postprocess upscaler": name, "Postprocess upscale to": f"{size[0]}x{size[1]}",
                  "Postprocess upscale from": f"{req.image.width}x{req.image.height}"}
        if req.refine is not None:
            r = self.resolve(req.refine)  # every field of the refining pass checked before the upscale runs
            if r.upscaled:  # the size is beyond the model's range: refine at the closest size it has, then upscale
                refined = self._generate([dataclasses.replace(req.refine, width=r.width, height=r.height)],
                                         _scaled(progress, 0.0, 0.9), cancel)[0]
                t0 = time.perf_counter()
                refined.images = [self._upscale_to(refined.images[0], record, size)[0]]
                dev.synchronize(self.device)
                refined.usage.device_seconds += time.perf_counter() - t0
                refined.usage.pixels = size[0] * size[1]
                refined.infotexts = [with_fields(t, {**fields, "Size": f"{size[0]}x{size[1]}"})
                                     for t in refined.infotexts]
                refined.params.update(task="upscale", upscaler=name, width=size[0], height=size[1],
                                      refined_at={"width": r.width, "height": r.height},
                                      source_width=req.image.width, source_height=req.image.height)
                return refined
        if is_cancelled():
            raise Cancelled("the request was cancelled before it started.")
        dev.reset_peak(self.device)
        t0 = time.perf_counter()
        out, passes = self._upscale_to(req.image, record, size)
        dev.synchronize(self.device)
        seconds = time.perf_counter() - t0
        if req.refine is None:
            if progress is not None:
                progress(ProgressEvent(1, 1))
            usage = Usage(device=str(self.device), dtype=dev.dtype_name(self.dtype), device_seconds=seconds,
                          steps_run=passes, steps_requested=passes, images=1, pixels=size[0] * size[1],
                          model_id=name, model_hash=record.sha256 if record else "",
                          peak_memory_bytes=dev.peak_memory(self.device))
            text = ", ".join(f"{k}: {v}" for k, v in {**fields, "Version": "solvent", **_terms_text(req.terms)}.items())
            params = {"task": "upscale", "upscaler": name, "width": size[0], "height": size[1], "passes": passes,
                      "source_width": req.image.width, "source_height": req.image.height}
            return GenerationResult([out], [0], [f"\n{text}"], params, usage)
        if progress is not None:
            progress(ProgressEvent(1, 4))
        refined = self._generate([dataclasses.replace(req.refine, init_image=out)], _scaled(progress, 0.25, 1.0),
                                 cancel)[0]
        refined.usage.device_seconds += seconds
        refined.infotexts = [with_fields(t, fields) for t in refined.infotexts]
        refined.params.update(task="upscale", upscaler=name, passes=passes, source_width=req.image.width,
                              source_height=req.image.height)
        return refined

    def _upscale_to(self, image: Image.Image, record: ModelRecord | None,
                    size: tuple[int, int]) -> tuple[Image.Image, int]:
        """`image` at `size`: the upscaler `record` run as often as it takes (tiled), then Lanczos to the exact size
        (Lanczos alone when `record` is None). Returns the image and how many times the model ran."""
        from .upscale import load_upscaler, upscale_image

        out, passes = image.convert("RGB"), 0
        if record is not None:
            key = (record.id, record.sha256)
            if key not in self._estimators:
                self._estimators[key] = load_upscaler(self.store.path_of(record))
            model, native = self._estimators[key], int(record.details.get("scale") or 4)
            while out.width < size[0] or out.height < size[1]:
                if passes and (out.width * native > size[0] or out.height * native > size[1]):
                    # the last pass would overshoot: its input (the model's own output, never the original) is
                    # made just small enough first, so the model does the work the output keeps and no more
                    out = out.resize((-(-size[0] // native), -(-size[1] // native)), Image.Resampling.LANCZOS)
                out = upscale_image(model, out, self.device, self.dtype)
                passes += 1
        return (out if out.size == size else out.resize(size, Image.Resampling.LANCZOS)), passes

    # ------------------------------------------------------------------------------------------
    # Segmentation (remove the background; find the region to repaint)
    # ------------------------------------------------------------------------------------------

    def _segmenter(self, name: str | None, where: str = "segmenter") -> ModelRecord:
        """The segmenter `name` names (None: the first installed, by id), or an error saying what to install."""
        if name:
            return self._named(name, where, ("segmenter",), "a segmenter")
        found = sorted(self.store.list("segmenter"), key=lambda r: r.id)
        if not found:
            raise ModelNotFound(f"`{where}`: no segmentation model is installed where this runs; download a CLIPSeg "
                                "folder (e.g. CIDAS/clipseg-rd64-refined) and add it with `solvent models add FOLDER`.",
                                field=where)
        return found[0]

    def segment(self, image: Image.Image, prompt: str, segmenter: str | None = None) -> Image.Image:
        """Where `image` shows `prompt`, by an installed segmenter: a greyscale map of `image`'s size (255 = surely)."""
        from .segment import load_segmenter, probability

        if not str(prompt or "").strip():
            raise ValidationFailed("the segmenter's prompt (what to find) is empty.", field="prompt", value=prompt)
        limit = self.settings.max_input_pixels
        if image.width * image.height > limit:
            raise InvalidImage(f"`image` has more than {limit} pixels.", field="image", value=image.size)
        record = self._segmenter(segmenter)
        key = (record.id, record.sha256)
        if key not in self._estimators:
            model, processor = load_segmenter(self.store.path_of(record))
            self._estimators[key] = (model.to(self.device), processor)
        model, processor = self._estimators[key]
        return probability(model, processor, image, prompt, self.device)

    def _masked(self, req: GenerationRequest) -> GenerationRequest:
        """A request whose mask a segmenter finds (`mask_prompt`) with that mask, grown; others as they are."""
        if not req.mask_prompt or req.mask is not None:
            return req
        from ..generation.edits import grow_mask
        from .segment import region

        if req.init_image is None:
            raise ValidationFailed("`mask_prompt` needs an `init_image` to search.", field="mask_prompt",
                                   value=req.mask_prompt)
        try:
            prob = self.segment(req.init_image, req.mask_prompt, req.segmenter)
        except ValidationFailed as e:
            raise ValidationFailed(e.message, field="mask_prompt" if e.field == "prompt" else e.field,
                                   value=e.value) from e
        found = region(prob)
        if found.getbbox() is None:
            raise ValidationFailed(f"`mask_prompt` {req.mask_prompt!r} was not found in the image (no pixel reached "
                                   "the segmenter's threshold); name what is there, or send a `mask`.",
                                   field="mask_prompt", value=req.mask_prompt)
        segmenter = self._segmenter(req.segmenter).id
        return dataclasses.replace(req, mask=grow_mask(found, int(req.mask_grow or 0)), segmenter=segmenter)

    def run_segment(self, req: SegmentRequest, progress: ProgressFn | None = None,
                    cancel: threading.Event | Callable[[], bool] | None = None) -> GenerationResult:
        """Remove the background: `req.image` with what the segmenter finds for `req.prompt` kept and the rest
        transparent (the probability as alpha). One RGBA image, its usage and an infotext saying what was done."""
        is_cancelled = cancel.is_set if isinstance(cancel, threading.Event) else (cancel or (lambda: False))
        if is_cancelled():
            raise Cancelled("the request was cancelled before it started.")
        from .segment import cut_out

        record = self._segmenter(req.segmenter)
        dev.reset_peak(self.device)
        t0 = time.perf_counter()
        prob = self.segment(req.image, req.prompt, record.id)
        dev.synchronize(self.device)
        seconds = time.perf_counter() - t0
        out = cut_out(req.image, prob)
        if progress is not None:
            progress(ProgressEvent(1, 1))
        w, h = out.size
        usage = Usage(device=str(self.device), dtype="float32", device_seconds=seconds, steps_run=1,
                      steps_requested=1, images=1, pixels=w * h, model_id=record.id, model_hash=record.sha256,
                      peak_memory_bytes=dev.peak_memory(self.device))
        fields = {"Segmenter": record.id, "Segmenter hash": record.short_hash, "Kept": req.prompt, "Size": f"{w}x{h}"}
        text = ", ".join(f"{k}: {v}" for k, v in {**fields, "Version": "solvent", **_terms_text(req.terms)}.items())
        params = {"task": "segment", "segmenter": record.id, "prompt": req.prompt, "width": w, "height": h}
        return GenerationResult([out], [0], [f"\n{text}"], params, usage)

    def estimators(self) -> dict[str, Callable[[Image.Image], Image.Image]]:
        """The estimated preprocessors this engine can run (`depth`, with the first installed depth estimator)."""
        found = next((r for r in self.store.list("estimator") if r.details.get("task") == "depth"), None)
        if found is None:
            return {}

        def depth(img: Image.Image) -> Image.Image:
            key = (found.id, found.sha256)
            if key not in self._estimators:
                model, processor = load_estimator(self.store.path_of(found))
                self._estimators[key] = (model.to(self.device), processor)
            model, processor = self._estimators[key]
            return depth_map(model, processor, img, self.device)

        return {"depth": depth}

    def embeddings_for(self, record: ModelRecord) -> list[ModelRecord]:
        """Installed embeddings of the model's architecture and text width."""
        arch = FAMILIES[record.family].architecture
        width = self.store.cross_attention_width(record)
        return [e for e in self.store.list("embedding")
                if e.architecture == arch and (width is None or e.cross_attention_dim == width)]

    def _resolve_vae(self, req: GenerationRequest, record: ModelRecord) -> ModelRecord | None:
        name = req.vae if req.vae is not None else record.default_vae
        if name is None or str(name).lower() in ("", "automatic", "none"):
            return None
        try:
            vae = self.store.get(name)
        except ModelNotFound as e:
            raise ModelNotFound(e.message.replace("`model`", "`vae`"), field="vae", value=name) from e
        if vae.kind != "vae":
            raise ValidationFailed(f"`vae` {vae.id!r} is a {vae.kind}, not a VAE.", field="vae", value=vae.id)
        return vae

    def _resolve_controls(self, req: GenerationRequest, record: ModelRecord, family: Family, width: int,
                          height: int) -> list[tuple[ModelRecord, ControlUnit, Image.Image]]:
        """Each ControlNet unit's record (it must fit the model) and its control map at the output size."""
        if len(req.controls) > MAX_UNITS:
            raise ValidationFailed(f"`controlnets` may hold at most {MAX_UNITS} units but holds {len(req.controls)}.",
                                   field="controlnets", value=len(req.controls))
        out = []
        width_of_model = self.store.cross_attention_width(record) if req.controls else None
        estimators = self.estimators() if req.controls else {}
        for i, unit in enumerate(req.controls):
            check_unit(unit, i, tuple(estimators))
            where = f"controlnets[{i}]"
            cn = self._named(unit.model, f"{where}.model", STEERING, "a ControlNet or T2I-Adapter")
            arch = _t2i_style(record) if cn.kind == "t2i_adapter" else family.architecture
            check_fits(cn.id, cn.architecture, cn.cross_attention_dim, record.id, record.family, arch,
                       width_of_model, f"{where}.model", cn.kind)
            if unit.image is None:
                raise ValidationFailed(f"`{where}.image` is required: the control image.", field=f"{where}.image")
            if unit.image.size[0] * unit.image.size[1] > self.settings.max_input_pixels:
                raise InvalidImage(f"`{where}.image` has more than {self.settings.max_input_pixels} pixels.",
                                   field=f"{where}.image", value=unit.image.size)
            out.append((cn, unit, preprocess(unit.image, unit.preprocessor, width, height, unit.threshold_a,
                                             unit.threshold_b, estimators)))
        if len({u.control_mode == "controlnet" for c, u, _ in out if c.kind == "controlnet"}) > 1:
            raise ValidationFailed("every ControlNet unit of a request must agree on `control_mode` `controlnet` "
                                   "(diffusers' guess mode applies to the whole call).", field="controlnets")
        return out

    def _resolve_images(self, req: GenerationRequest, width: int, height: int):
        if req.init_image is None:
            if req.mask is not None:
                raise ValidationFailed("`mask` needs an `init_image` to paint into.", field="mask")
            return None, None
        if not isinstance(req.strength, int | float) or not 0 < req.strength <= 1:
            raise ValidationFailed(
                f"`strength` must be greater than 0 and at most 1 but is {req.strength!r}.",
                field="strength",
                value=req.strength,
            )
        limit = self.settings.max_input_pixels
        for name, img in (("init_image", req.init_image), ("mask", req.mask)):
            if img is not None and img.size[0] * img.size[1] > limit:
                raise InvalidImage(f"`{name}` has more than {limit} pixels.", field=name, value=img.size)
        init = req.init_image.convert("RGB")
        mask = None
        if req.mask is not None:
            if req.mask.size != init.size:
                raise InvalidImage(
                    f"`mask` must be the size of `init_image` ({init.size[0]}×{init.size[1]}) but is "
                    f"{req.mask.size[0]}×{req.mask.size[1]}.",
                    field="mask",
                    value=f"{req.mask.size[0]}x{req.mask.size[1]}",
                )
            mask = req.mask.convert("L")
        if init.size != (width, height):
            init = init.resize((width, height), Image.Resampling.LANCZOS)
            mask = mask.resize((width, height), Image.Resampling.NEAREST) if mask is not None else None
        return init, mask

    # ------------------------------------------------------------------------------------------
    # Loading and the model cache
    # ------------------------------------------------------------------------------------------

    def load(self, model_id: str) -> LoadedModel:
        """The loaded pipeline of `model_id`, loading it (and evicting others) if needed."""
        with self._cache_lock:
            if model_id in self._cache:
                self._cache.move_to_end(model_id)
                return self._cache[model_id]
        record = self.store.get(model_id)
        loaded = self._load(record)
        with self._cache_lock:
            self._cache[model_id] = loaded
            self._evict(keep=model_id)
        return loaded

    def loaded_models(self) -> list[str]:
        with self._cache_lock:
            return list(self._cache)

    def unload(self, model_id: str | None = None) -> None:
        with self._cache_lock:
            for key in [model_id] if model_id else list(self._cache):
                lm = self._cache.pop(key, None)
                if lm is not None:
                    with lm.lock:
                        lm.pipe = lm.variants = None
        dev.free_memory(self.device)

    def _evict(self, keep: str) -> None:
        budget = self.settings.model_cache_bytes
        total = sum(m.nbytes for m in self._cache.values())
        for key in list(self._cache):
            if total <= budget or key == keep:
                continue
            lm = self._cache[key]
            if not lm.lock.acquire(blocking=False):
                continue  # in use: evicted on a later load
            try:
                del self._cache[key]
                total -= lm.nbytes
                lm.pipe = lm.variants = None
            finally:
                lm.lock.release()
        dev.free_memory(self.device)

    def _load(self, record: ModelRecord) -> LoadedModel:
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        t0 = time.perf_counter()
        family = FAMILIES[record.family]
        self._check_fits(record, self._dtype_for(family))
        if family.flow:
            return self._load_flow(record, family, t0)
        refiner = record.kind == "refiner"
        cls = StableDiffusionXLPipeline if family.architecture == "sdxl" else StableDiffusionPipeline
        if refiner:
            from diffusers import StableDiffusionXLImg2ImgPipeline as cls  # noqa: N813
        path = self.store.path_of(record)
        extra = {} if family.architecture == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
        if refiner:
            extra = {"requires_aesthetics_score": True, "force_zeros_for_empty_prompt": False}
        try:
            if record.format == "single_file":
                comps = load_components(path, record.family, record.native_resolution, record.allow_pickle)
                sched_cfg = shipped_config(record.family, "scheduler")
                sched_cfg["prediction_type"] = record.prediction_type
                from diffusers import EulerDiscreteScheduler

                comps["scheduler"] = EulerDiscreteScheduler.from_config(sched_cfg)
                if family.architecture != "sdxl":
                    comps["feature_extractor"] = None
                pipe = cls(**comps, **extra)
            else:
                from .checkpoint import tokenizer

                kwargs: dict[str, Any] = dict(extra)
                if refiner:
                    kwargs.update(text_encoder=None, tokenizer=None)
                elif not (path / "tokenizer").is_dir():
                    kwargs["tokenizer"] = tokenizer(openclip=False)
                if family.architecture == "sdxl" and not (path / "tokenizer_2").is_dir():
                    kwargs["tokenizer_2"] = tokenizer(openclip=True)
                if family.architecture != "sdxl":
                    kwargs["feature_extractor"] = None
                pipe = cls.from_pretrained(
                    str(path), local_files_only=True, dtype=torch.float32,
                    use_safetensors=not record.allow_pickle, **kwargs,
                )
            self._place(pipe, self.dtype, "unet")
        except (OSError, ValueError, KeyError) as e:
            raise EngineError(f"model {record.id!r} could not be loaded from {path}: {e}", field="model") from e
        except RuntimeError as e:
            if dev.is_oom(e):
                dev.free_memory(self.device)
                raise OutOfMemory(f"not enough device memory to load {record.id!r}.", field="model") from e
            raise
        if family.architecture == "sdxl" and self.dtype == torch.float16:
            pipe.vae.to(torch.float32)  # SDXL's VAE overflows to NaN (black images) in fp16
        pipe.set_progress_bar_config(disable=True)
        if self.settings.compile and self.device.type == "cuda":
            pipe.unet = torch.compile(pipe.unet)
        nbytes = dev.module_bytes(*(getattr(pipe, n, None) for n in ("unet", "vae", "text_encoder", "text_encoder_2")))
        return LoadedModel(
            record=record,
            pipe=pipe,
            encoder=PromptEncoder(pipe, "sdxl-refiner" if refiner else family.architecture,
                                  self.settings.max_prompt_chunks),
            scheduler_config=dict(pipe.scheduler.config),
            nbytes=nbytes,
            load_seconds=time.perf_counter() - t0,
            dtype=self.dtype,
        )

    def _dtype_for(self, family: Family) -> torch.dtype:
        """SD3 and Flux compute in bf16 on CUDA unless a dtype is set (T5 overflows in fp16)."""
        if family.flow and self.settings.dtype in ("", "auto") and self.device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return self.dtype

    def _check_fits(self, record: ModelRecord, dtype: torch.dtype) -> None:
        """Refuse, before reading a weight, a model that would not fit the cache budget (or the GPU, without
        offload): its parameters at the working dtype, counted from the safetensors headers."""
        denoiser, rest = self.store.parameter_counts(record)
        size = torch.tensor([], dtype=dtype).element_size()
        need = (denoiser * (1 if self.settings.fp8_weights else size)) + rest * size
        gib = 1024**3
        budget = self.settings.model_cache_bytes
        if need > budget:
            raise ModelTooLarge(
                f"`model` {record.id!r} needs about {need / gib:.1f} GiB at {dev.dtype_name(dtype)}, more than the "
                f"model cache budget SOLVENT_MODEL_CACHE_BYTES ({budget / gib:.1f} GiB); raise it"
                + (" or set SOLVENT_FP8_WEIGHTS=true" if not self.settings.fp8_weights else "") + ".",
                field="model", value=record.id)
        if self.device.type == "cuda" and self.settings.offload == "none":
            free, _ = torch.cuda.mem_get_info(self.device)
            with self._cache_lock:
                freeable = sum(m.nbytes for m in self._cache.values() if not m.lock.locked())
            if need > free + freeable:
                raise ModelTooLarge(
                    f"`model` {record.id!r} needs about {need / gib:.1f} GiB of GPU memory at {dev.dtype_name(dtype)} "
                    f"and {(free + freeable) / gib:.1f} GiB can be had; set SOLVENT_OFFLOAD=model (or sequential), "
                    "SOLVENT_FP8_WEIGHTS=true, or use a larger GPU.", field="model", value=record.id)

    def _place(self, pipe, dtype: torch.dtype, denoiser: str) -> None:
        """Move a pipeline to the device at `dtype`, offloaded or with fp8 weights as the settings say."""
        pipe.to(dtype=dtype)
        if self.settings.fp8_weights:
            getattr(pipe, denoiser).enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
        if self.settings.offload != "none" and self.device.type == "cuda":
            if self.settings.offload == "model":
                pipe.enable_model_cpu_offload(device=self.device)
            else:
                pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)

    def _load_flow(self, record: ModelRecord, family: Family, t0: float) -> LoadedModel:
        """An SD3 or Flux pipeline: a diffusers folder, or a single file with its component files."""
        import diffusers

        from .flow import folder_tokenizers, load_flow_components

        dtype = self._dtype_for(family)
        cls = getattr(diffusers, "StableDiffusion3Pipeline" if family.architecture == "sd3" else "FluxPipeline")
        path = self.store.path_of(record)
        try:
            if record.format == "single_file":
                parts = {name: self.store.component_path(record, name) for name in record.details.get("components", {})}
                pipe = cls(**load_flow_components(path, record.family, parts, dtype))
            else:
                pipe = cls.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype, use_safetensors=True,
                                           **folder_tokenizers(path, record.family))
            self._place(pipe, dtype, "transformer")
        except (OSError, ValueError, KeyError) as e:
            raise EngineError(f"model {record.id!r} could not be loaded from {path}: {e}", field="model") from e
        except RuntimeError as e:
            if dev.is_oom(e):
                dev.free_memory(self.device)
                raise OutOfMemory(f"not enough device memory to load {record.id!r}.", field="model") from e
            raise
        pipe.set_progress_bar_config(disable=True)
        if self.settings.compile and self.device.type == "cuda":
            pipe.transformer = torch.compile(pipe.transformer)
        nbytes = dev.module_bytes(*(getattr(pipe, n, None) for n in ("transformer", "vae", "text_encoder",
                                                                      "text_encoder_2", "text_encoder_3")))
        return LoadedModel(record=record, pipe=pipe, encoder=None, scheduler_config=dict(pipe.scheduler.config),
                           nbytes=nbytes, load_seconds=time.perf_counter() - t0, dtype=dtype)

    def _vae(self, lm: LoadedModel, record: ModelRecord):
        """A VAE from the store for this model (cached beside it); its latent channels must be the model's."""
        own = lm.pipe.vae.config
        if record.latent_channels and record.latent_channels != own.latent_channels:
            raise IncompatibleAdapter(f"`vae` {record.id!r} has {record.latent_channels} latent channels but `model` "
                                      f"{lm.record.id!r} ({lm.record.family}) uses {own.latent_channels}; pick a VAE "
                                      "made for it.", field="vae", value=record.id)
        key = ("vae", record.id, record.sha256)
        if key not in lm.variants:
            vae = load_vae(self.store.path_of(record), dict(own))
            upcast = FAMILIES[lm.record.family].architecture == "sdxl" and self.dtype == torch.float16
            lm.variants[key] = vae.to(self.device, torch.float32 if upcast else (lm.dtype or self.dtype))
        return lm.variants[key]

    def _controlnet(self, lm: LoadedModel, record: ModelRecord):
        key = ("controlnet", record.id, record.sha256)
        if key not in lm.variants:
            net = load_controlnet(self.store.path_of(record), record.format, dict(lm.pipe.unet.config),
                                  lm.pipe.unet)
            lm.variants[key] = net.to(self.device, self.dtype)
        return lm.variants[key]

    def _control_variant(self, lm: LoadedModel, mode: str, records: list[ModelRecord]):
        """The mode's ControlNet pipeline over the loaded one (shared components), for these ControlNets."""
        key = ("pipe", mode, tuple(r.id for r in records))
        if key not in lm.variants:
            import diffusers
            from diffusers import MultiControlNetModel

            xl = FAMILIES[lm.record.family].architecture == "sdxl"
            name = {"txt2img": "Pipeline", "img2img": "Img2ImgPipeline", "inpaint": "InpaintPipeline"}[mode]
            cls = getattr(diffusers, ("StableDiffusionXLControlNet" if xl else "StableDiffusionControlNet") + name)
            nets = [self._controlnet(lm, r) for r in records]
            extra = {} if xl else {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
            variant = cls.from_pipe(lm.pipe, controlnet=nets[0] if len(nets) == 1 else MultiControlNetModel(nets),
                                    **extra)
            variant.set_progress_bar_config(disable=True)
            lm.variants[key] = variant
        return lm.variants[key]

    def _variant(self, lm: LoadedModel, mode: str):
        if mode == "txt2img":
            return lm.pipe
        if mode not in lm.variants:
            import diffusers

            arch = FAMILIES[lm.record.family].architecture
            name = {"img2img": "Img2ImgPipeline", "inpaint": "InpaintPipeline"}[mode]
            prefix = {"sdxl": "StableDiffusionXL", "sd3": "StableDiffusion3", "flux": "Flux"}.get(arch, "StableDiffusion")
            cls = getattr(diffusers, prefix + name)
            extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False} if (
                arch == "sd") else {}
            variant = cls.from_pipe(lm.pipe, **extra)
            if mode == "inpaint" and arch == "sd" and variant.unet.config.in_channels == variant.vae.config.latent_channels != 4:
                # solvent-tiny's plain UNet reads 8 latent channels; diffusers' inpaint pipeline takes
                # "4 input channels" to mean "a plain UNet: blend the known latents back each step" and
                # refuses anything but 4 or 9. The blend itself works for any channel count.
                object.__setattr__(variant, "unet", _PlainUNetView(variant.unet))
            variant.set_progress_bar_config(disable=True)
            lm.variants[mode] = variant
        return lm.variants[mode]

    # ------------------------------------------------------------------------------------------
    # Generation
    # ------------------------------------------------------------------------------------------

    def generate(
        self,
        req: GenerationRequest,
        progress: ProgressFn | None = None,
        cancel: threading.Event | Callable[[], bool] | None = None,
    ) -> GenerationResult:
        """Make `req.batch_size` images. Raises `Cancelled` between steps when `cancel` is set."""
        return self._cut_out(req, self._generate([req], progress, cancel)[0])

    def generate_batch(
        self,
        reqs: list[GenerationRequest],
        progress: ProgressFn | None = None,
        cancel: threading.Event | Callable[[], bool] | None = None,
    ) -> list[GenerationResult]:
        """Run compatible requests (see `batch_key`) in one device call; one result per request.

        Each result's usage carries the call's device time and the request's share of the work in
        `usage.batch`, and `device_seconds` is that share of the call's time.
        """
        return [self._cut_out(r, x) for r, x in zip(reqs, self._generate(reqs, progress, cancel), strict=True)]

    def _cut_out(self, req: GenerationRequest, result: GenerationResult) -> GenerationResult:
        """With `req.cutout`: each image's background made transparent (what the segmenter finds for the prompt
        kept, as alpha); the segmenter's time is added to the result's device time."""
        if not req.cutout:
            return result
        from .segment import cut_out

        record = self._segmenter(req.segmenter)
        t0 = time.perf_counter()
        result.images = [cut_out(img, self.segment(img, req.cutout, record.id)) for img in result.images]
        dev.synchronize(self.device)
        result.usage.device_seconds += time.perf_counter() - t0
        fields = {"Background": "transparent", "Segmenter": record.id, "Kept": req.cutout}
        result.infotexts = [with_fields(t, fields) for t in result.infotexts]
        result.params.update(background="transparent", segmenter=record.id)
        return result

    def _generate(self, reqs: list[GenerationRequest], progress, cancel) -> list[GenerationResult]:
        if any(x.hires is not None for x in reqs):
            if len(reqs) > 1:
                raise ValidationFailed("a hires-fix request runs alone, not batched with others.", field="batch")
            return [self._hires(reqs[0], progress, cancel)]
        # 1. Check inputs (several requests must be able to share one call); a mask found by a segmenter first
        reqs = [self._masked(r) for r in reqs]
        rs = [self.resolve(r) for r in reqs]
        if len(rs) > 1 and (len(keys := {batch_key(r) for r in rs}) != 1 or None in keys):
            raise ValidationFailed("requests batch together only when they are text-to-image with the same model, "
                                   "size, steps, CFG, sampler and LoRAs.", field="batch")
        is_cancelled = cancel.is_set if isinstance(cancel, threading.Event) else (cancel or (lambda: False))
        if is_cancelled():
            raise Cancelled("the request was cancelled before it started.")

        # 2. Load the model (cached)
        r = rs[0]
        was_loaded = r.record.id in self.loaded_models()
        lm = self.load(r.record.id)
        load_seconds = 0.0 if was_loaded else lm.load_seconds

        rlm = None
        if r.refiner is not None:
            was_loaded = r.refiner.id in self.loaded_models()
            rlm = self.load(r.refiner.id)
            load_seconds += 0.0 if was_loaded else rlm.load_seconds

        with lm.lock:
            if lm.pipe is None or (rlm is not None and rlm.pipe is None):  # evicted between load() and here
                return self._generate(reqs, progress, cancel)
            try:
                return self._run_many(lm, rs, progress, is_cancelled, load_seconds, rlm)
            except Cancelled:
                raise
            except (torch.OutOfMemoryError, RuntimeError) as e:
                if not dev.is_oom(e):
                    raise
                dev.free_memory(self.device)
                images = sum(x.request.batch_size for x in rs)
                raise OutOfMemory(
                    f"the device ran out of memory for {r.width}×{r.height} × {images} image(s) with "
                    f"{r.record.id!r}; memory was freed — try a smaller size or batch.",
                    field="batch_size",
                    value=images,
                ) from e

    def _run_many(self, lm: LoadedModel, rs: list[Resolved], progress, is_cancelled,
                  load_seconds: float, rlm: LoadedModel | None = None) -> list[GenerationResult]:
        r = rs[0]  # every request shares its model, size, steps, CFG, sampler and LoRAs (batch_key)
        if r.family.flow:
            return self._run_flow(lm, rs, progress, is_cancelled, load_seconds)
        req = r.request
        arch = r.family.architecture
        # 3. LoRA adapters (loaded once per model, activated per request); embeddings the prompts name
        apply_loras(lm.pipe, lm.loras, r.loras, arch)
        for e in r.embeddings:
            if ("embedding", e.id) not in lm.variants:
                load_into(lm.pipe, e.id, self.store.path_of(e))
                lm.variants[("embedding", e.id)] = True

        # 4. Pipeline for the mode, with a fresh scheduler (schedulers keep per-call state)
        pipe = (self._control_variant(lm, req.mode, [c[0] for c in r.controlnets]) if r.controlnets
                else self._variant(lm, req.mode))
        pipe.scheduler = make_scheduler(r.sampler, lm.scheduler_config, r.seed)

        dev.reset_peak(self.device)
        dev.synchronize(self.device)
        t0 = time.perf_counter()

        # 5. Encode the prompts (weighted, chunked; a batch at its longest prompt's chunk count)
        n_chunks = max(lm.encoder.chunk_count(x.request.prompt, x.request.negative_prompt) for x in rs)
        pairs = [lm.encoder.encode_pair(x.request.prompt, x.request.negative_prompt, self.device, n_chunks,
                                        req.clip_skip) for x in rs]
        counts = [x.request.batch_size for x in rs]

        # 6. Denoise, reporting progress and honouring cancellation between steps
        # (with a refiner the steps of both models count against the request's)
        on_step = _Steps(r.steps, is_cancelled, progress, lambda p, lat: self._preview(p, lat, arch),
                         fixed_total=rlm is not None)
        generators = _generators(rs)

        def stack(get) -> torch.Tensor:  # one row per image: each request's row repeated for its images
            if len(rs) == 1:
                return get(pairs[0])
            return torch.cat([get(pair).repeat_interleave(n, dim=0) for pair, n in zip(pairs, counts, strict=True)])

        call: dict[str, Any] = dict(
            prompt_embeds=stack(lambda pair: pair[0].embeds),
            negative_prompt_embeds=stack(lambda pair: pair[1].embeds),
            num_inference_steps=r.steps,
            guidance_scale=r.cfg_scale,
            num_images_per_prompt=req.batch_size if len(rs) == 1 else 1,
            generator=generators,
            callback_on_step_end=on_step,
            output_type="pil",
        )
        if arch == "sdxl":
            call.update(pooled_prompt_embeds=stack(lambda pair: pair[0].pooled),
                        negative_pooled_prompt_embeds=stack(lambda pair: pair[1].pooled))
        if req.mode == "txt2img":
            call.update(width=r.width, height=r.height)
        else:
            call.update(image=r.init_image if req.init_latents is None else req.init_latents,
                        strength=float(req.strength))
            if req.mode == "inpaint":
                call.update(mask_image=r.mask, width=r.width, height=r.height)
        if req.latents_out:
            call["output_type"] = "latent"
        if r.controlnets:
            call.update(_control_kwargs(r))
        own = {"vae": pipe.vae, "image_encoder": getattr(pipe, "image_encoder", None),
               "feature_extractor": getattr(pipe, "feature_extractor", None)}
        if r.vae is not None:
            pipe.vae = self._vae(lm, r.vae)  # for this call only (the model's lock is held)
        if rlm is not None:  # the base model stops at the switch and hands its latents to the refiner
            call.update(denoising_end=float(req.refiner_switch), output_type="latent")
        try:
            with torch.inference_mode(), self._steered(lm, pipe, r, call), _from_latents(pipe, req.init_latents):
                images = pipe(**call).images
        finally:
            for name, value in own.items():
                setattr(pipe, name, value)
        if rlm is not None:
            with rlm.lock, torch.inference_mode():
                images = self._refine(lm, rlm, r, images, on_step, generators)
        dev.synchronize(self.device)
        seconds = time.perf_counter() - t0
        if req.mode == "inpaint":
            images = _keep_unmasked(images, rs, counts)

        return self._results(rs, images, seconds, on_step.done, load_seconds)

    def _results(self, rs: list[Resolved], images: list[Image.Image], seconds: float, steps_run: int,
                 load_seconds: float) -> list[GenerationResult]:
        """Seeds, metadata and usage, per request; a batch's device time is shared by work. Images asked for
        beyond the model's trained size are upscaled here (the time counts as the call's)."""
        if any(x.upscaled for x in rs):
            t0 = time.perf_counter()
            images, first = list(images), 0
            for x in rs:
                n = x.request.batch_size
                images[first:first + n] = [self._grow(x, img) for img in images[first:first + n]]
                first += n
            dev.synchronize(self.device)
            seconds += time.perf_counter() - t0
        if len(rs) == 1:
            return [self._result(rs[0], images, seconds, steps_run, load_seconds, None)]
        parts = batch_parts(round(seconds * 1000), [x.width * x.height * x.steps * x.request.batch_size for x in rs])
        out, first = [], 0
        for x, part in zip(rs, parts, strict=True):
            n = x.request.batch_size
            out.append(self._result(x, images[first:first + n], part_ms(part) / 1000, steps_run, load_seconds, part))
            first += n
        return out

    def _hires(self, req: GenerationRequest, progress, cancel) -> GenerationResult:
        """Hires fix: the first pass at the request's size; its latents (a latent mode) or images (an image
        upscaler) upscaled to the hires size; then one image-to-image pass per image, with the image's own seed,
        at `denoising` strength — exactly the two passes run by hand (`tests/engine/test_hires.py`)."""
        h = req.hires
        if req.mode != "txt2img":
            raise ValidationFailed("hires fix (`enable_hr`) is for text-to-image; leave it out with an init image.",
                                   field="enable_hr", value=True)
        first = dataclasses.replace(req, hires=None, refiner=None)
        r1 = self.resolve(first)  # every first-pass field checked, the first pass's size known
        target = self._hires_checks(h, r1)
        if h.latent:  # latents are upscaled from the size the model made them at
            first = dataclasses.replace(first, width=r1.width, height=r1.height, latents_out=True)
        steps2 = h.steps or r1.steps
        run1, run2 = r1.steps, max(1, int(steps2 * h.denoising))
        split = run1 / (run1 + run2)
        one = self._generate([first], _scaled(progress, 0.0, split), cancel)[0]
        second = dataclasses.replace(
            req, hires=None, prompt=h.prompt or req.prompt, negative_prompt=h.negative_prompt or req.negative_prompt,
            sampler=h.sampler or req.sampler, steps=steps2, strength=float(h.denoising), width=target[0],
            height=target[1], batch_size=1, controls=[dataclasses.replace(c) for c in req.controls])
        t0 = time.perf_counter()
        if h.latent:
            mode, antialias = LATENT_MODES[h.upscaler]
            base = r1.family.base_size(*target, r1.record.details.get("max_side"))
            factor = r1.width // one.images.shape[-1]  # the VAE's downsampling (8)
            lat = torch.nn.functional.interpolate(one.images.float(), size=(base[1] // factor, base[0] // factor),
                                                  mode=mode, antialias=antialias)
            inits = [{"init_latents": lat[i:i + 1].to(one.images.dtype)} for i in range(len(one.seeds))]
        else:
            record = None if h.upscaler.lower() in ("lanczos", "none") or h.upscaler == "Nearest" else \
                self.store.get(h.upscaler)
            inits = [{"init_image": img.resize(target, Image.Resampling.NEAREST) if h.upscaler == "Nearest"
                      else self._upscale_to(img, record, target)[0]} for img in one.images]
        upscale_seconds = time.perf_counter() - t0
        outs = []
        for i, (seed, init) in enumerate(zip(one.seeds, inits, strict=True)):
            lo = split + (1 - split) * i / len(inits)
            outs.append(self._generate([dataclasses.replace(second, seed=seed, **init)],
                                       _scaled(progress, lo, lo + (1 - split) / len(inits)), cancel)[0])
        return self._hires_result(req, r1, one, outs, target, steps2, upscale_seconds)

    def _hires_checks(self, h, r1: Resolved) -> tuple[int, int]:
        """The hires fields checked, naming A1111's field; returns the final size."""
        # (hr_scale 1 is a second pass at the same size, or the scale is unused when hr_resize_x/y is set)
        for name, value, ok, rule in (("hr_scale", h.scale, lambda v: 1 <= v <= 8, "from 1 to 8"),
                                      ("denoising_strength", h.denoising, lambda v: 0 < v <= 1, "above 0 and at most 1")):
            if not isinstance(value, int | float) or isinstance(value, bool) or not ok(value):
                raise ValidationFailed(f"`{name}` must be a number {rule} but is {value!r}.", field=name, value=value)
        if not isinstance(h.steps, int) or not 0 <= h.steps <= MAX_STEPS:
            raise ValidationFailed(f"`hr_second_pass_steps` must be an integer from 0 (the first pass's) to "
                                   f"{MAX_STEPS} but is {h.steps!r}.", field="hr_second_pass_steps", value=h.steps)
        for name, v in (("hr_resize_x", h.resize_x), ("hr_resize_y", h.resize_y)):
            if not isinstance(v, int) or v < 0:
                raise ValidationFailed(f"`{name}` must be 0 or a size in pixels but is {v!r}.", field=name, value=v)
        if h.sampler:
            resolve_sampler(h.sampler, "hr_sampler_name", r1.family.architecture)
        if not h.latent and h.upscaler not in BUILTIN_UPSCALERS and h.upscaler.lower() != "lanczos":
            try:
                self._named(h.upscaler, "hr_upscaler", ("upscaler",), "an upscaler")
            except ModelNotFound as e:
                names = [*LATENT_MODES, *BUILTIN_UPSCALERS, *(r.id for r in self.store.list("upscaler"))]
                raise ModelNotFound(f"`hr_upscaler` {h.upscaler!r} is not an upscaler here; available: "
                                    f"{', '.join(names)}.", field="hr_upscaler", value=h.upscaler) from e
        target = h.target(*r1.output_size, r1.family.multiple)
        try:
            r1.family.validate_size(*target)
        except ValidationFailed as e:
            raise ValidationFailed(f"hires fix would make {target[0]}×{target[1]}: {e.message}", field="hr_scale",
                                   value=h.scale) from e
        return target

    def _hires_result(self, req: GenerationRequest, r1: Resolved, one: GenerationResult,
                      outs: list[GenerationResult], target: tuple[int, int], steps2: int,
                      upscale_seconds: float) -> GenerationResult:
        """The second pass's images with the first pass's seeds, A1111's hires infotext fields and both passes'
        usage."""
        h = req.hires
        fields = {"Denoising strength": f"{h.denoising:g}", "Hires upscale": f"{h.scale:g}",
                  **({"Hires resize": f"{target[0]}x{target[1]}"} if h.resize_x or h.resize_y else {}),
                  **({"Hires steps": h.steps} if h.steps else {}), "Hires upscaler": h.upscaler,
                  **({"Hires prompt": h.prompt} if h.prompt else {}),
                  **({"Hires negative prompt": h.negative_prompt} if h.negative_prompt else {})}
        last = parse_infotext(outs[0].infotexts[0])
        if h.sampler:
            fields["Hires sampler"] = last["Sampler"]
        if "Generated size" in last:  # the final size was beyond the trained range: upscaled again
            fields.update({"Generated size": last["Generated size"], "Upscaler": last["Upscaler"]})
        texts = [with_fields(t, fields) for t in one.infotexts]
        params = req.public_params()
        params.update({k: one.params[k] for k in ("model", "width", "height", "steps", "cfg_scale", "sampler",
                                                  "seed", "vae")})
        params["hires"] = {**params["hires"], "width": target[0], "height": target[1], "steps": steps2,
                           "sampler": outs[0].params["sampler"], "refiner": outs[0].params.get("refiner")}
        u = [one.usage, *(o.usage for o in outs)]
        usage = Usage(device=u[0].device, dtype=u[0].dtype,
                      device_seconds=sum(x.device_seconds for x in u) + upscale_seconds,
                      steps_run=sum(x.steps_run for x in u), steps_requested=sum(x.steps_requested for x in u),
                      images=len(outs), pixels=target[0] * target[1] * len(outs), model_id=u[0].model_id,
                      model_hash=u[0].model_hash, peak_memory_bytes=max(x.peak_memory_bytes for x in u),
                      load_seconds=sum(x.load_seconds for x in u))
        return GenerationResult(images=[o.images[0] for o in outs], seeds=list(one.seeds), infotexts=texts,
                                params=params, usage=usage)

    def _grow(self, r: Resolved, image: Image.Image) -> Image.Image:
        """One image generated at `r.width`×`r.height` upscaled to the size asked for (inpainting: the kept part
        pasted back from the full-size input, so only the repainted part is upscaled)."""
        if not r.upscaled:
            return image
        record = None if r.upscaler.lower() == "lanczos" else self.store.get(r.upscaler)
        out, _ = self._upscale_to(image, record, r.output_size)
        req = r.request
        if req.mode == "inpaint" and req.init_image is not None and req.mask is not None:
            init = req.init_image.convert("RGB").resize(r.output_size, Image.Resampling.LANCZOS)
            out = Image.composite(out, init, req.mask.convert("L").resize(r.output_size, Image.Resampling.NEAREST))
        return out

    def _run_flow(self, lm: LoadedModel, rs: list[Resolved], progress, is_cancelled,
                  load_seconds: float) -> list[GenerationResult]:
        """SD3 and Flux: diffusers' own prompt encoding (weights syntax read as plain text: T5 has no per-token
        weighting), the flow sampler with the model's shift (or the request's), Flux's distilled guidance."""
        r = rs[0]
        req = r.request
        arch = r.family.architecture
        apply_loras(lm.pipe, lm.loras, r.loras, arch)
        pipe = self._variant(lm, req.mode)
        base = dict(lm.scheduler_config)
        if req.shift is not None:  # a fixed shift replaces Flux's shift by image size
            base.update(shift=float(req.shift), use_dynamic_shifting=False)
        pipe.scheduler = make_scheduler(r.sampler, base, r.seed)
        dev.reset_peak(self.device)
        dev.synchronize(self.device)
        t0 = time.perf_counter()
        on_step = _Steps(r.steps, is_cancelled, progress, lambda p, lat: self._flow_preview(p, lat, r))

        every = [x for x in rs for _ in range(x.request.batch_size)]
        call: dict[str, Any] = dict(
            prompt=[plain_prompt(x.request.prompt) for x in every], num_inference_steps=r.steps,
            guidance_scale=r.cfg_scale, num_images_per_prompt=1,
            generator=_generators(rs),
            callback_on_step_end=on_step, output_type="pil")
        if arch == "sd3":
            call.update(negative_prompt=[plain_prompt(x.request.negative_prompt) for x in every],
                        clip_skip=(req.clip_skip - 1) or None)
            self._sd3_weights(pipe, call, every, req.clip_skip)
        else:  # schnell was distilled with 256 T5 tokens, dev with 512
            call["max_sequence_length"] = 512 if pipe.transformer.config.guidance_embeds else 256
        call.update(width=r.width, height=r.height)
        if req.mode != "txt2img":
            call.update(image=r.init_image if req.init_latents is None else req.init_latents,
                        strength=float(req.strength))
            if req.mode == "inpaint":
                call["mask_image"] = r.mask
        if req.latents_out:
            call["output_type"] = "latent"
        own_vae = pipe.vae
        if r.vae is not None:
            pipe.vae = self._vae(lm, r.vae)
        try:
            with torch.inference_mode():
                images = pipe(**call).images
        finally:
            pipe.vae = own_vae
        if req.latents_out and arch == "flux":  # Flux returns its latents packed in 2×2 patches
            images = pipe._unpack_latents(images, r.height, r.width, pipe.vae_scale_factor)
        dev.synchronize(self.device)
        seconds = time.perf_counter() - t0
        if req.mode == "inpaint":
            images = _keep_unmasked(images, rs, [x.request.batch_size for x in rs])
        return self._results(rs, images, seconds, on_step.done, load_seconds)

    def _sd3_weights(self, pipe, call: dict, every: list[Resolved], clip_skip: int) -> None:
        """Weighted prompts on SD3: encode as diffusers does, then weight the CLIP part of each weighted row
        (`prompts.sd3_reweight`); the call then takes embeddings instead of text."""
        texts = [x.request.prompt for x in every]
        negatives = [x.request.negative_prompt for x in every]
        if not any(is_weighted(t) for t in (*texts, *negatives)):
            return
        with torch.inference_mode():
            pe, npe, pooled, npooled = pipe.encode_prompt(
                prompt=call.pop("prompt"), prompt_2=None, prompt_3=None, negative_prompt=call.pop("negative_prompt"),
                do_classifier_free_guidance=True, clip_skip=call.pop("clip_skip"), device=self.device)
            for row, (text, negative) in enumerate(zip(texts, negatives, strict=True)):
                sd3_reweight(pipe, pe, row, text, clip_skip, self.settings.max_prompt_chunks, self.device)
                sd3_reweight(pipe, npe, row, negative, clip_skip, self.settings.max_prompt_chunks, self.device)
        call.update(prompt_embeds=pe, negative_prompt_embeds=npe, pooled_prompt_embeds=pooled,
                    negative_pooled_prompt_embeds=npooled)

    def _flow_preview(self, pipe, latents: torch.Tensor, r: Resolved) -> Image.Image:
        """A cheap preview of SD3 / Flux latents (Flux's are packed 2×2): a VAE decode for tiny VAEs, else the
        first three latent channels stretched to the visible range."""
        with torch.no_grad():
            lat = latents[:1]
            if r.family.architecture == "flux":
                lat = pipe._unpack_latents(lat, r.height, r.width, pipe.vae_scale_factor)
            cfg = pipe.vae.config
            if cfg.block_out_channels[-1] < 256:
                img = pipe.vae.decode((lat / cfg.scaling_factor + (cfg.shift_factor or 0)).to(pipe.vae.dtype)).sample[0]
                rgb = ((img.float().clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0)
            else:
                x = lat[0, :3].float()
                lo, hi = x.amin(dim=(1, 2), keepdim=True), x.amax(dim=(1, 2), keepdim=True)
                rgb = ((x - lo) / (hi - lo + 1e-6) * 255).permute(1, 2, 0)
            return Image.fromarray(rgb.byte().cpu().numpy())

    def _refine(self, lm: LoadedModel, rlm: LoadedModel, r: Resolved, latents, on_step, generators):
        """The refiner's part: the steps after the switch, from the base model's latents (diffusers' ensemble of
        expert denoisers), with the request's prompts encoded by the refiner's own text encoder."""
        req = r.request
        pipe = rlm.pipe
        pipe.scheduler = make_scheduler(r.sampler, rlm.scheduler_config, r.seed)
        pos, neg = rlm.encoder.encode_pair(req.prompt, req.negative_prompt, self.device, 0, req.clip_skip)
        call: dict[str, Any] = dict(
            prompt_embeds=pos.embeds, negative_prompt_embeds=neg.embeds, pooled_prompt_embeds=pos.pooled,
            negative_pooled_prompt_embeds=neg.pooled, image=latents, num_inference_steps=r.steps,
            denoising_start=float(req.refiner_switch), guidance_scale=r.cfg_scale,
            num_images_per_prompt=req.batch_size, generator=generators, callback_on_step_end=on_step,
            output_type="pil")
        own_vae = pipe.vae
        if r.vae is not None:
            pipe.vae = self._vae(lm, r.vae)  # the same latent space: the request's VAE decodes the refined image
        try:
            return pipe(**call).images
        finally:
            pipe.vae = own_vae

    @contextmanager
    def _steered(self, lm: LoadedModel, pipe, r: Resolved, call: dict):
        """T2I-Adapter features, prompt-weighted ControlNets and IP-Adapters attached for this call only."""
        with ExitStack() as stack:
            units = []
            for rec, unit, control_map in r.t2i_adapters:
                net = self._t2i(lm, rec)
                x = steering.adapter_input(control_map, net.config.in_channels, self.device, net.dtype)
                units.append(([f * float(unit.weight) for f in net(x)], unit))
            stack.enter_context(steering.t2i_features(lm.pipe.unet, pipe, units))
            if any(u.control_mode == "prompt" for _, u, _ in r.controlnets):
                stack.enter_context(steering.prompt_weighted(
                    [(self._controlnet(lm, rec), u.control_mode == "prompt") for rec, u, _ in r.controlnets]))
            if r.ip_adapters:
                key = tuple(rec.id for rec, unit in r.ip_adapters for _ in unit.scales)
                scales = [float(unit.weight) * float(s) for _, unit in r.ip_adapters for s in unit.scales]
                records = {rec.id: rec for rec, _ in r.ip_adapters}
                ips = lm.variants.setdefault("ip_adapters", steering.IPAdapters(lm.pipe.unet))
                stack.enter_context(ips.attached(
                    key,
                    lambda: {i: read_ip_adapter(self.store.path_of(records[i])) for i in records}, scales))
                pipe.image_encoder, pipe.feature_extractor = self._image_encoder(lm, r.image_encoder)
                call["ip_adapter_image"] = [img for _, unit in r.ip_adapters for img in unit.images]
            yield

    def _t2i(self, lm: LoadedModel, record: ModelRecord):
        key = ("t2i_adapter", record.id, record.sha256)
        if key not in lm.variants:
            lm.variants[key] = load_t2i_adapter(self.store.path_of(record)).to(self.device, self.dtype)
        return lm.variants[key]

    def _image_encoder(self, lm: LoadedModel, record: ModelRecord):
        key = ("image_encoder", record.id, record.sha256)
        if key not in lm.variants:
            model, processor = load_image_encoder(self.store.path_of(record))
            lm.variants[key] = (model.to(self.device, self.dtype), processor)
        return lm.variants[key]

    def _result(self, r: Resolved, images: list[Image.Image], seconds: float, steps_run: int, load_seconds: float,
                batch: dict | None) -> GenerationResult:
        req = r.request
        seeds = [r.seed + i for i in range(req.batch_size)]
        record = r.record
        texts = [
            infotext(
                prompt=req.prompt,
                negative_prompt=req.negative_prompt,
                steps=r.steps,
                sampler_label=r.sampler.a1111[0] if r.sampler.a1111 else r.sampler.name,
                cfg_scale=r.cfg_scale,
                seed=s,
                width=r.output_size[0],
                height=r.output_size[1],
                model_hash=record.short_hash,
                model_name=record.id,
                strength=float(req.strength) if req.mode != "txt2img" else None,
                loras=[(p.stem, w) for p, w in r.loras],
                extra={**({"Clip skip": req.clip_skip} if req.clip_skip != 1 else {}),
                       **({"Shift": f"{req.shift:g}"} if req.shift is not None else {}),
                       **({"Distilled CFG Scale": f"{r.cfg_scale:g}"} if r.family.architecture == "flux" else {}),
                       **({"VAE hash": r.vae.short_hash, "VAE": r.vae.id} if r.vae else {}), **_control_text(r),
                       **({"Refiner": f"{r.refiner.id} [{r.refiner.short_hash}]",
                           "Refiner switch at": f"{req.refiner_switch:g}"} if r.refiner else {}),
                       **({"TI hashes": ", ".join(f"{e.id}: {e.short_hash}" for e in r.embeddings)}
                          if r.embeddings else {}),
                       **({"Generated size": f"{r.width}x{r.height}", "Upscaler": r.upscaler} if r.upscaled else {}),
                       **({"Mask prompt": req.mask_prompt, "Segmenter": req.segmenter or "auto",
                           "Mask grow": int(req.mask_grow or 0)} if req.mask_prompt else {}),
                       "Version": "solvent", **_terms_text(req.terms)},
            )
            for s in seeds
        ]
        params = req.public_params()
        params.update(model=record.id, width=r.output_size[0], height=r.output_size[1], steps=r.steps,
                      cfg_scale=r.cfg_scale, sampler=r.sampler.name, seed=r.seed, vae=r.vae.id if r.vae else None,
                      refiner=r.refiner.id if r.refiner else None)
        if r.upscaled:  # the size policy: generated at the closest trained size, then upscaled
            params["size_policy"] = {"generated_width": r.width, "generated_height": r.height,
                                     "upscaler": r.upscaler}
        usage = Usage(
            device=str(self.device),
            dtype=dev.dtype_name(self.dtype),
            device_seconds=seconds,
            steps_run=steps_run,
            steps_requested=r.steps,
            images=len(images),
            pixels=r.output_size[0] * r.output_size[1] * len(images),
            model_id=record.id,
            model_hash=record.sha256,
            peak_memory_bytes=dev.peak_memory(self.device),
            load_seconds=load_seconds,
            batch=batch,
        )
        return GenerationResult(images=images, seeds=seeds, infotexts=texts, params=params, usage=usage)

    def _preview(self, pipe, latents: torch.Tensor, arch: str) -> Image.Image:
        """A cheap preview: a linear latent→RGB map for SD latents, a VAE decode for tiny ones."""
        with torch.no_grad():
            lat = latents[0].float()
            if pipe.vae.config.block_out_channels[-1] < 256:  # tiny VAE: decoding is cheaper than guessing
                img = pipe.vae.decode(latents[:1].to(pipe.vae.dtype) / pipe.vae.config.scaling_factor).sample[0]
                rgb = ((img.float().clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0)
            else:
                factors, bias = _LATENT_RGB["sdxl" if arch == "sdxl" else "sd"]
                m = torch.tensor(factors, device=lat.device)
                rgb = torch.einsum("chw,cr->hwr", lat, m) + torch.tensor(bias, device=lat.device)
                rgb = ((rgb.clamp(-1, 1) + 1) * 127.5)
            return Image.fromarray(rgb.byte().cpu().numpy())


def _t2i_style(record: ModelRecord) -> str:
    """The T2I-Adapter architecture a model takes: its features must match the UNet's down blocks, and SDXL's (and
    solvent-tiny's) first block has no attention and downsamples, so they take SDXL-style (`full_adapter_xl`)."""
    return "sdxl" if FAMILIES[record.family].architecture == "sdxl" or record.family == "tiny" else "sd"


def _control_kwargs(r: Resolved) -> dict[str, Any]:
    """The ControlNet arguments of a diffusers call: maps, weights, guidance window (one value, or a list per unit)."""
    one = len(r.controlnets) == 1
    pick = (lambda xs: xs[0]) if one else list
    maps = [m for _, _, m in r.controlnets]
    units = [u for _, u, _ in r.controlnets]
    key = "image" if r.request.mode == "txt2img" else "control_image"
    return {key: pick(maps), "controlnet_conditioning_scale": pick([float(u.weight) for u in units]),
            "control_guidance_start": pick([float(u.guidance_start) for u in units]),
            "control_guidance_end": pick([float(u.guidance_end) for u in units]),
            "guess_mode": units[0].control_mode == "controlnet"}


def _control_text(r: Resolved) -> dict[str, str]:
    """A1111's `ControlNet N: "Module: …, Model: …"` infotext fields (its extension's layout): every ControlNet
    and T2I-Adapter unit, then each IP-Adapter (module `ip-adapter`, as the extension names its units)."""
    out = {}
    for i, (cn, u, _) in enumerate(r.controls):
        out[f"ControlNet {i}"] = (f"Module: {u.preprocessor}, Model: {cn.id} [{cn.short_hash[:8]}], Weight: {u.weight:g}, "
                                  f"Resize Mode: Crop and Resize, Guidance Start: {u.guidance_start:g}, "
                                  f"Guidance End: {u.guidance_end:g}, Control Mode: {CONTROL_MODES[u.control_mode]}")
    for k, (rec, unit) in enumerate(r.ip_adapters, start=len(r.controls)):
        scales = ", ".join(f"{s:g}" for s in unit.scales)
        out[f"ControlNet {k}"] = (f"Module: ip-adapter, Model: {rec.id} [{rec.short_hash[:8]}], Weight: {unit.weight:g}, "
                                  f"Reference scales: {scales}, Image encoder: {r.image_encoder.id}")
    return out


def batch_key(r: Resolved) -> tuple | None:
    """What requests must share to run in one device call; None for requests that never batch (image inputs)."""
    if r.request.mode != "txt2img" or r.controls or r.ip_adapters or r.request.refiner:
        return None
    return (r.record.id, r.width, r.height, r.steps, r.cfg_scale, r.sampler.name, r.request.clip_skip,
            r.vae.id if r.vae else None, r.request.shift,
            tuple(sorted((str(p), float(w)) for p, w in r.loras)))


def _terms_text(terms: dict) -> dict[str, str]:
    """Usage terms as infotext fields: `Commercial use: no, License: …`."""
    out = {}
    if terms.get("commercial_use") is not None:
        out["Commercial use"] = "yes" if terms["commercial_use"] else "no (non-commercial plan)"
    if terms.get("license"):
        out["License"] = str(terms["license"])
    return out


class _Steps:
    """The step callback of one device call: counts the steps, stops between them when cancelled, and reports
    progress with a cheap preview of the latents."""

    def __init__(self, steps: int, is_cancelled, progress, preview, fixed_total: bool = False):
        self.steps, self.is_cancelled, self.progress, self.preview = steps, is_cancelled, progress, preview
        self.fixed_total = fixed_total  # report against `steps`, not the pipeline's own count of its steps
        self.done = 0

    def __call__(self, p, i, t, kwargs):
        self.done += 1
        if self.is_cancelled():
            raise Cancelled(f"cancelled after {self.done} steps.")
        if self.progress is not None:
            latents = kwargs["latents"]
            total = self.steps if self.fixed_total else (getattr(p, "_num_timesteps", None) or self.steps)
            self.progress(ProgressEvent(self.done, total, lambda lat=latents: self.preview(p, lat)))
        return kwargs


def _generators(rs: list[Resolved]) -> list[torch.Generator]:
    """One CPU generator per image: image i of a request is seeded with its seed + i."""
    return [torch.Generator("cpu").manual_seed(x.seed + i) for x in rs for i in range(x.request.batch_size)]


def _check_flow(req: GenerationRequest, record: ModelRecord, family: Family) -> None:
    """What SD3 and Flux models refuse: UNet adapters (ControlNet, T2I, IP-Adapter units for them are not served
    yet), Flux's CLIP skip, and a shift out of range."""
    where = "`controlnets`" if req.controls else "`ip_adapters`" if req.ip_adapters else None
    if where:
        raise IncompatibleAdapter(f"{where} units run UNet models; `model` {record.id!r} is {family.label} (a "
                                  "flow-matching transformer), which Solvent serves without them so far.",
                                  field=where.strip("`"), value=record.id)
    if family.architecture == "flux" and req.clip_skip != 1:
        raise ValidationFailed(f"`clip_skip` must be 1 for Flux models (their CLIP encoder gives only its pooled "
                               f"output) but is {req.clip_skip!r}.", field="clip_skip", value=req.clip_skip)
    if req.shift is not None and (not isinstance(req.shift, int | float) or isinstance(req.shift, bool)
                                  or not 0 < req.shift <= 20):
        raise ValidationFailed(f"`shift` must be a number above 0 and at most 20 but is {req.shift!r}.",
                               field="shift", value=req.shift)


def _scaled(progress: ProgressFn | None, lo: float, hi: float) -> ProgressFn | None:
    """A progress callback that maps one pass's 0…1 onto `lo`…`hi` of the whole request (hires fix)."""
    if progress is None:
        return None

    def report(ev: ProgressEvent) -> None:
        progress(ProgressEvent(round((lo + (hi - lo) * ev.fraction) * 1000), 1000, ev._preview))

    return report


@contextmanager
def _from_latents(pipe, latents):
    """Image-to-image from latents on a UNet pipeline whose latents are not 4 channels (solvent-tiny's 8): diffusers
    takes only 4-channel tensors as latents, so for this call its image processor passes them through and the
    VAE's encoder answers them back (unscaled, as the pipeline scales what the encoder gives)."""
    if latents is None or latents.shape[1] == 4 or not hasattr(pipe, "unet"):
        yield
        return
    from types import SimpleNamespace

    from diffusers.image_processor import VaeImageProcessor

    own = pipe.image_processor
    factor = pipe.vae.config.scaling_factor
    pipe.image_processor = VaeImageProcessor(vae_scale_factor=pipe.vae_scale_factor,
                                             vae_latent_channels=latents.shape[1])
    pipe.vae.encode = lambda x, *a, **k: SimpleNamespace(latents=x / factor)
    try:
        yield
    finally:
        pipe.image_processor = own
        del pipe.vae.encode
