"""The data that crosses every boundary: a `GenerationRequest` in, images and a `Usage` record out.

`Usage` travels from the engine through the worker API to the ledger as a dict (`to_dict`) and is read
back with `Usage.from_dict`; the batch-share arithmetic (`batch_parts`, `BatchPart.ms`) is defined here
once, for the engine that splits a device call and the ledger that prices the parts.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from .control import ControlUnit, ImagePrompt

MAX_SEED = 2**32 - 1  # seeds are unsigned 32-bit (A1111's and Stability's range); -1 asks for a random one


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


@dataclass
class LoraSpec:
    """One LoRA adapter and the weight it is applied with."""

    name: str
    weight: float = 1.0


# AUTOMATIC1111's latent upscale modes (its `/sdapi/v1/latent-upscale-modes`): torch interpolation mode, antialias.
LATENT_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False), "Latent (antialiased)": ("bilinear", True), "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True), "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False)}
# Image upscalers every worker has (A1111's built-in names); installed upscalers are named by their id.
BUILTIN_UPSCALERS = ("Lanczos", "Nearest", "None")


@dataclass
class Hires:
    """Hires fix as AUTOMATIC1111 defines it: the first pass at the request's size, upscaled by `scale` (or to
    `resize_x`×`resize_y`; one of them 0 keeps the aspect) with `upscaler` (a latent mode, Lanczos, Nearest or an
    installed upscaler), then an image-to-image pass of `steps` steps (0: the first pass's) at `denoising`
    strength, with its own sampler and prompts when given."""

    scale: float = 2.0
    resize_x: int = 0
    resize_y: int = 0
    upscaler: str = "Latent"
    steps: int = 0
    denoising: float = 0.7
    sampler: str | None = None
    prompt: str = ""  # "" = the first pass's
    negative_prompt: str = ""

    @property
    def latent(self) -> bool:
        return self.upscaler in LATENT_MODES

    def target(self, width: int, height: int, multiple: int = 8) -> tuple[int, int]:
        """The final size for a first pass of `width`×`height` (A1111's arithmetic, then to the family's multiple)."""
        if self.resize_x or self.resize_y:
            w = self.resize_x or round(self.resize_y * width / height)
            h = self.resize_y or round(self.resize_x * height / width)
        else:
            w, h = round(width * self.scale), round(height * self.scale)
        return max(multiple, w // multiple * multiple), max(multiple, h // multiple * multiple)


@dataclass
class GenerationRequest:
    """Everything the engine needs to make images. Unset fields take the model's defaults.

    `seed` None (or -1) draws a random seed; image *i* of a batch uses `seed + i`.
    `init_image` turns the request into img2img (with `strength`), and `mask` into inpainting
    (white = repaint, black = keep).
    """

    prompt: str = ""
    negative_prompt: str = ""
    model: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    seed: int | None = None
    batch_size: int = 1
    init_image: Image.Image | None = None
    strength: float = 0.75
    mask: Image.Image | None = None
    loras: list[LoraSpec] = field(default_factory=list)
    controls: list[ControlUnit] = field(default_factory=list)  # ControlNet / T2I-Adapter units
    ip_adapters: list[ImagePrompt] = field(default_factory=list)  # IP-Adapter image prompts
    refiner: str | None = None  # SDXL: a refiner model that takes over the last denoising steps
    refiner_switch: float = 0.8  # the fraction of the steps the base model runs before the refiner
    vae: str | None = None  # a VAE in the store; None = the model's default (its own, or the one set for it)
    clip_skip: int = 1  # A1111's "Clip skip" / CLIP_stop_at_last_layers: 1 = the text encoder's last layer
    shift: float | None = None  # SD3 / Flux: the flow-matching timestep shift; None = the model's own
    hires: Hires | None = None  # hires fix: a second, image-to-image pass at a larger size (text-to-image only)
    # Inpainting where a segmenter finds `mask_prompt` in `init_image` (instead of a `mask`), grown by `mask_grow`
    # pixels; `segmenter`: an installed segmenter's id, None = the first installed.
    mask_prompt: str | None = None
    mask_grow: int = 0
    segmenter: str | None = None
    # A transparent background: each image keeps what the segmenter finds for this prompt, the rest transparent.
    cutout: str | None = None
    # Usage terms recorded in the image metadata (e.g. commercial_use, license), set by the service.
    terms: dict[str, Any] = field(default_factory=dict)
    # The engine's own (hires fix): latents to start image-to-image from, and a first pass that returns latents.
    init_latents: Any = field(default=None, repr=False)
    latents_out: bool = False

    @property
    def mode(self) -> str:
        if self.init_image is None and self.init_latents is None:
            return "txt2img"
        return "inpaint" if self.mask is not None or self.mask_prompt else "img2img"

    def public_params(self) -> dict[str, Any]:
        """The request as plain JSON-able values (images left out)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("init_image", "mask", "init_latents", "latents_out"):
                continue
            value = getattr(self, f.name)
            if f.name == "loras":
                value = [{"name": lora.name, "weight": lora.weight} for lora in value]
            elif f.name in ("controls", "ip_adapters"):
                value = [unit.public() for unit in value]
            elif f.name == "hires" and value is not None:
                value = dataclasses.asdict(value)
            out[f.name] = value
        out["mode"] = self.mode
        return out


@dataclass
class UpscaleRequest:
    """One image made larger: `upscaler` (an installed upscaler's id, or `lanczos`) to `width`×`height`, then,
    with `refine`, an image-to-image pass of that request (its prompt, model and strength) at the new size."""

    image: Image.Image
    upscaler: str
    width: int
    height: int
    refine: GenerationRequest | None = None
    terms: dict[str, Any] = field(default_factory=dict)


@dataclass
class SegmentRequest:
    """Remove an image's background: keep what a segmenter finds for `prompt` (the subject), the rest made
    transparent. `segmenter`: an installed segmenter's id, None = the first installed."""

    image: Image.Image
    prompt: str
    segmenter: str | None = None
    terms: dict[str, Any] = field(default_factory=dict)


def batch_parts(device_ms: int, works: list[int]) -> list[dict[str, Any]]:
    """`Usage.batch` of each request of one device call: the call's time and the request's share of the work."""
    batch_id, total, before, out = secrets.token_hex(8), sum(works), 0, []
    for work in works:
        out.append({"id": batch_id, "requests": len(works), "device_ms": device_ms, "work_before": before,
                    "work": work, "total_work": total})
        before += work
    return out


@dataclass(frozen=True)
class BatchPart:
    """One request's share of a device call (`Usage.batch`), checked: work in the call's range, times ≥ 0."""

    device_ms: int
    work_before: int
    work: int
    total_work: int
    id: str = ""
    requests: int = 0

    @classmethod
    def from_dict(cls, d: Any) -> BatchPart | None:
        """The part, or None when `d` is missing or not a consistent share (a worker's malformed report)."""
        try:
            t, before, work, total = (int(d[k]) for k in ("device_ms", "work_before", "work", "total_work"))
            extra = {"id": str(d.get("id", "")), "requests": int(d.get("requests", 0))}
        except (TypeError, KeyError, ValueError, AttributeError):
            return None
        if t >= 0 and 0 <= before and 0 < work and before + work <= total:
            return cls(t, before, work, total, **extra)
        return None

    @property
    def ms(self) -> int:
        """This part's ms of the call; the parts telescope, so they add up to the call's ms exactly."""
        t, before, work, total = self.device_ms, self.work_before, self.work, self.total_work
        return t * (before + work) // total - t * before // total


def part_ms(part: dict[str, Any]) -> int:
    """A request's ms of its call (`batch_parts`); see `BatchPart.ms`."""
    checked = BatchPart.from_dict(part)
    if checked is None:
        raise ValueError(f"not a batch part: {part!r}")
    return checked.ms


@dataclass
class Usage:
    """What one request consumed, as measured on the device that ran it."""

    device: str
    dtype: str
    device_seconds: float
    steps_run: int
    steps_requested: int
    images: int
    pixels: int
    model_id: str
    model_hash: str
    peak_memory_bytes: int
    load_seconds: float = 0.0
    # Set when the request ran in one device call with others: the call's device time and this request's
    # share of the work (pixels × steps × images), as integers from which the ledger splits cost exactly.
    batch: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Usage:
        """A usage report read back (from the worker API or a job row); missing fields are zero, unknown ignored."""
        d = d if isinstance(d, dict) else {}

        def num(key: str, kind: type, default: Any = 0) -> Any:
            try:
                return kind(d[key]) if d.get(key) is not None else default
            except (TypeError, ValueError):
                return default

        return cls(device=str(d.get("device", "")), dtype=str(d.get("dtype", "")),
                   device_seconds=num("device_seconds", float, 0.0), steps_run=num("steps_run", int),
                   steps_requested=num("steps_requested", int), images=num("images", int), pixels=num("pixels", int),
                   model_id=str(d.get("model_id", "")), model_hash=str(d.get("model_hash", "")),
                   peak_memory_bytes=num("peak_memory_bytes", int), load_seconds=num("load_seconds", float, 0.0),
                   batch=d.get("batch") if isinstance(d.get("batch"), dict) else None)

    @property
    def batch_part(self) -> BatchPart | None:
        return BatchPart.from_dict(self.batch)


@dataclass
class GenerationResult:
    """Images (PIL, RGB), the seed of each, the infotext of each, and the usage of the request."""

    images: list[Image.Image]
    seeds: list[int]
    infotexts: list[str]
    params: dict[str, Any]
    usage: Usage

    def encode(self, index: int, fmt: str = "png") -> bytes:
        """Image `index` as PNG / WEBP / JPEG bytes with its metadata embedded."""
        from .metadata import encode_image

        return encode_image(self.images[index], fmt, self.infotexts[index], self.metadata(index))

    def metadata(self, index: int) -> dict[str, Any]:
        params = dict(self.params)
        params["seed"] = self.seeds[index]
        return {"solvent": 1, "params": params, "usage": self.usage.to_dict()}
