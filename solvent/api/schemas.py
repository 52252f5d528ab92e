"""Wire schemas of the native API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

MAX_SEED = 2**32 - 1


def _utc(value: datetime) -> datetime:
    try:
        out = value.astimezone(UTC)
    except (OverflowError, ValueError) as e:
        raise ValueError("must be a time between the years 1970 and 9999") from e
    if not 1970 <= out.year <= 9999:
        raise ValueError("must be a time between the years 1970 and 9999")
    return out


# A time as the API accepts it: with a time zone (naive times are refused), in 1970–9999, turned into UTC.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


class LoraIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"^\w[\w. -]*$",
                      description="an installed LoRA's name (never a path)")
    weight: float = Field(1.0, ge=-10, le=10)


class ControlIn(BaseModel):
    """One ControlNet unit: which ControlNet, its control image, how it is preprocessed and how strongly it steers."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=100, description="an installed ControlNet that fits the model")
    image: str = Field(description="the control image: base64 or a data URL")
    preprocessor: str = Field("none", max_length=64, description="none, canny, scribble, invert or threshold")
    weight: float = Field(1.0, ge=0, le=2)
    guidance_start: float = Field(0.0, ge=0, le=1)
    guidance_end: float = Field(1.0, ge=0, le=1)
    control_mode: Literal["balanced", "prompt", "controlnet"] = "balanced"
    threshold_a: float | None = Field(None, ge=0, le=1000, description="canny low / threshold cut")
    threshold_b: float | None = Field(None, ge=0, le=1000, description="canny high")


def _reference(value: Any) -> Any:
    """A bare base64 string is a reference at scale 1."""
    return {"image": value} if isinstance(value, str) else value


class ReferenceIn(BaseModel):
    """One reference image of an image prompt, with its own scale."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(description="the reference image: base64 or a data URL")
    scale: float = Field(1.0, ge=0, le=2, description="this reference's share (times the prompt's weight)")


class ImagePromptIn(BaseModel):
    """An IP-Adapter image prompt: reference images that steer the look (style, subject, face)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=100, description="an installed IP-Adapter that fits the model")
    images: list[Annotated[ReferenceIn, BeforeValidator(_reference)]] = Field(
        min_length=1, max_length=4, description="base64 images, or {image, scale} objects")
    weight: float = Field(1.0, ge=0, le=2, description="how strongly the references steer (IP-Adapter scale)")


class HiresIn(BaseModel):
    """Hires fix (AUTOMATIC1111's `enable_hr`): a second, image-to-image pass at a larger size."""

    model_config = ConfigDict(extra="forbid")
    scale: float = Field(2.0, ge=1, le=8, description="A1111's hr_scale: the first pass's size × this")
    resize_x: int = Field(0, ge=0, le=4096, description="hr_resize_x: the final width (0: by scale, or by aspect)")
    resize_y: int = Field(0, ge=0, le=4096, description="hr_resize_y: the final height")
    upscaler: str = Field("Latent", min_length=1, max_length=100,
                          description="a latent mode (Latent, Latent (bicubic), …), Lanczos, Nearest or an installed "
                                      "upscaler's id")
    steps: int = Field(0, ge=0, le=150, description="hr_second_pass_steps: 0 = the first pass's steps")
    denoising: float = Field(0.7, gt=0, le=1, description="denoising_strength of the second pass")
    sampler: str | None = Field(None, max_length=64, description="hr_sampler_name: none = the first pass's")
    prompt: str = Field("", max_length=10_000, description="hr_prompt: empty = the first pass's")
    negative_prompt: str = Field("", max_length=10_000)


class GenerationIn(BaseModel):
    """A generation request. Unset fields take the model's defaults."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field("", max_length=10_000)
    negative_prompt: str = Field("", max_length=10_000)
    model: str = Field("solvent-tiny", min_length=1, max_length=100)
    width: int | None = Field(None, ge=8, le=4096)
    height: int | None = Field(None, ge=8, le=4096)
    steps: int | None = Field(None, ge=1, le=150)
    cfg_scale: float | None = Field(None, ge=0, le=35)
    sampler: str | None = Field(None, max_length=64)
    seed: int | None = Field(None, ge=-1, le=MAX_SEED)
    batch_size: int = Field(1, ge=1, le=16)
    init_image: str | None = Field(None, description="base64 (or data URL) image for img2img / inpainting")
    strength: float = Field(0.75, gt=0, le=1)
    mask: str | None = Field(None, description="base64 mask, white = repaint; needs init_image")
    mask_prompt: str | None = Field(None, min_length=1, max_length=500,
                                    description="inpaint where an installed segmenter finds this in init_image "
                                                "(instead of a mask; search and replace)")
    mask_grow: int = Field(0, ge=0, le=100, description="pixels the found region grows by (with mask_prompt)")
    segmenter: str | None = Field(None, max_length=100, description="the segmenter for mask_prompt or a transparent "
                                  "background; none = the first installed")
    background: Literal["opaque", "transparent"] = Field(
        "opaque", description="transparent: each image keeps what an installed segmenter finds for "
                              "SOLVENT_SUBJECT_PROMPT, the rest transparent (PNG or WEBP)")
    loras: list[LoraIn] = Field(default_factory=list, max_length=8)
    controlnets: list[ControlIn] = Field(default_factory=list, max_length=4,
                                         description="ControlNet and T2I-Adapter units")
    ip_adapters: list[ImagePromptIn] = Field(default_factory=list, max_length=4,
                                             description="IP-Adapter image prompts (at most 4 references in all)")
    refiner: str | None = Field(None, max_length=100, description="SDXL: a refiner for the last steps")
    refiner_switch: float = Field(0.8, gt=0, lt=1, description="the fraction of steps the base model runs")
    clip_skip: int = Field(1, ge=1, le=12, description="A1111's Clip skip: 1 = the text encoder's last layer")
    shift: float | None = Field(None, gt=0, le=20, description="SD3 / Flux: the flow-matching timestep shift "
                                "(SD3's default 3; Flux shifts by image size unless this is set)")
    vae: str | None = Field(None, max_length=100, description="a VAE that fits the model; none = its default")
    hires: HiresIn | None = Field(None, description="hires fix: the image made at width×height, upscaled and "
                                  "refined by a second pass (text-to-image only)")
    output_format: Literal["png", "webp", "jpeg"] = "png"
    webhook_url: str | None = Field(None, max_length=2000, description="POSTed to, signed, when the job ends")


class UpscaleIn(BaseModel):
    """An upscale job: one image made larger by an upscaler (by `scale`, or to `width`×`height`), optionally
    refined by a low-strength image-to-image pass of `model` with a prompt (Stability's conservative upscale)."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(..., description="base64 (or data URL) image to upscale")
    upscaler: str = Field("auto", min_length=1, max_length=100,
                          description="an installed upscaler's id, `lanczos`, or `auto` (SOLVENT_UPSCALER)")
    scale: float | None = Field(None, gt=1, le=16, description="the factor; none = the upscaler's own (Lanczos: 2)")
    width: int | None = Field(None, ge=8, le=16384, description="the exact output width (instead of `scale`)")
    height: int | None = Field(None, ge=8, le=16384, description="the exact output height (instead of `scale`)")
    model: str | None = Field(None, max_length=100, description="refine with this model (with `prompt`)")
    prompt: str = Field("", max_length=10_000)
    negative_prompt: str = Field("", max_length=10_000)
    strength: float = Field(0.35, gt=0, le=1, description="the refining pass's denoising strength")
    steps: int | None = Field(None, ge=1, le=150)
    seed: int | None = Field(None, ge=-1, le=MAX_SEED)
    output_format: Literal["png", "webp", "jpeg"] = "png"
    webhook_url: str | None = Field(None, max_length=2000, description="POSTed to, signed, when the job ends")


class EditIn(BaseModel):
    """What outpainting and erasing share: the image, and the inpainting job that repaints it."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(..., description="base64 (or data URL) image")
    model: str = Field("solvent-tiny", min_length=1, max_length=100)
    prompt: str = Field("", max_length=10_000)
    negative_prompt: str = Field("", max_length=10_000)
    steps: int | None = Field(None, ge=1, le=150)
    cfg_scale: float | None = Field(None, ge=0, le=35)
    sampler: str | None = Field(None, max_length=64)
    seed: int | None = Field(None, ge=-1, le=MAX_SEED)
    output_format: Literal["png", "webp", "jpeg"] = "png"
    webhook_url: str | None = Field(None, max_length=2000, description="POSTed to, signed, when the job ends")


class OutpaintIn(EditIn):
    """Extend an image by some pixels on any side: the new part painted, the seam feathered."""

    left: int = Field(0, ge=0, le=2048)
    right: int = Field(0, ge=0, le=2048)
    up: int = Field(0, ge=0, le=2048)
    down: int = Field(0, ge=0, le=2048)
    feather: int = Field(24, ge=0, le=256, description="pixels of the image next to each new side that blend")
    strength: float = Field(1.0, gt=0, le=1)


class EraseIn(EditIn):
    """Erase a masked region: it is filled from its surroundings, then repainted towards them."""

    mask: str | None = Field(None, description="base64 mask, white = erase; none = the image's transparent part")
    grow_mask: int = Field(5, ge=0, le=100, description="pixels the mask grows by (and its edge softens over)")
    strength: float = Field(0.85, gt=0, le=1)


class SegmentIn(BaseModel):
    """Remove an image's background: what an installed segmenter finds for `prompt` is kept, the rest made
    transparent (a PNG or WEBP with alpha)."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(..., description="base64 (or data URL) image")
    prompt: str | None = Field(None, min_length=1, max_length=500,
                               description="what to keep; none = SOLVENT_SUBJECT_PROMPT (the main subject)")
    segmenter: str | None = Field(None, max_length=100, description="an installed segmenter; none = the first")
    output_format: Literal["png", "webp"] = "png"
    webhook_url: str | None = Field(None, max_length=2000, description="POSTed to, signed, when the job ends")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    """The native API's error shape (every status; 422 for fields that are not allowed)."""

    error: ErrorDetail


class ImageOut(BaseModel):
    id: str
    index: int
    seed: int
    width: int
    height: int
    url: str


class JobError(BaseModel):
    code: str | None
    message: str | None


class JobOut(BaseModel):
    id: str
    state: str
    mode: str
    model: str
    params: dict[str, Any]
    progress: float
    queue_position: int | None = None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: JobError | None = None
    images: list[ImageOut] = Field(default_factory=list)
    usage: dict[str, Any] | None = None
    commercial_use: bool | None = Field(None, description="whether the plan it was made under allows commercial use")
    license: str | None = Field(None, description="the model's licence")
    license_url: str | None = None
    price_mc: int | None = Field(None, description="credits reserved, in milli-credits (1 credit = 1000)")
    webhook: dict[str, Any] | None = Field(None, description="its webhook: state (waiting, pending, delivered, "
                                           "failed), attempts and each attempt's answer")


class JobList(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


class SizeOut(BaseModel):
    label: str
    width: int
    height: int


class ModelOut(BaseModel):
    id: str
    family: str
    native_resolution: int
    default_steps: int
    default_cfg: float
    default_sampler: str
    loras: list[str] = Field(default_factory=list, description="LoRAs installed on its workers that fit it")
    controlnets: list[str] = Field(default_factory=list,
                                   description="ControlNets and T2I-Adapters installed on its workers that fit it")
    t2i_adapters: list[str] = Field(default_factory=list, description="the T2I-Adapters among `controlnets`")
    ip_adapters: list[str] = Field(default_factory=list,
                                   description="IP-Adapters (with their image encoders) installed on its workers "
                                               "that fit it")
    refiners: list[str] = Field(default_factory=list, description="SDXL refiners its workers can hand over to")
    vaes: list[str] = Field(default_factory=list, description="VAEs installed on its workers that fit it")
    default_vae: str | None = Field(None, description="the VAE its requests get (none: its own)")
    embeddings: list[str] = Field(default_factory=list, description="embeddings a prompt may name for it")
    sizes: list[SizeOut] = Field(default_factory=list, description="size presets valid for it (aspect ratios)")
    min_side: int | None = None
    max_side: int | None = None
    max_pixels: int | None = Field(None, description="the trained range: larger sizes are generated at the closest "
                                   "size in it and upscaled")
    max_output_side: int | None = Field(None, description="the largest side it may be asked for")
    max_output_pixels: int | None = None
    license: str | None = None
    family_label: str | None = Field(None, description="the family's name (Stable Diffusion 3, Flux.1, …)")
    samplers: list[str] = Field(default_factory=list, description="the samplers that run it (flow-matching ones "
                                "for SD3 and Flux)")
    preset: str | None = Field(None, description="its few-step preset (turbo, lcm, lightning, schnell, sd3-turbo), "
                               "whose settings are its defaults")
