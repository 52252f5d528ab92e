"""Model families: what Solvent knows about SD 1.x, SD 2.x, SDXL, SD3/3.5, Flux.1 and its own `solvent-tiny`.

A family fixes the architecture (which diffusers pipeline runs it), the shipped component
configs (under `assets/configs/<family>`), the native resolution, defaults and size rules.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ValidationFailed

ASSETS = Path(str(resources.files("solvent.generation") / "assets"))
TOKENIZER_DIR = ASSETS / "clip_tokenizer"
T5_TOKENIZER_DIR = ASSETS / "t5_tokenizer"  # T5 v1.1's SentencePiece vocabulary (Apache-2.0), as tokenizer.json
FLOW_ARCHITECTURES = ("sd3", "flux")  # rectified-flow transformers (diffusers' SD3 and Flux pipelines)
# What any model may be asked for. Beyond a family's trained range (`Family.max_side`, `max_pixels`) the image is
# generated at the closest size the model supports with the same aspect ratio (`Family.base_size`) and upscaled.
OUTPUT_MAX_SIDE = 2048
OUTPUT_MAX_PIXELS = 2048 * 2048


@dataclass(frozen=True)
class Family:
    """One model family: its architecture, native size, defaults, size rules and credit price class."""

    name: str
    label: str
    # "sd" (StableDiffusion*Pipeline), "sdxl" (StableDiffusionXL*Pipeline), "sd3" (StableDiffusion3*Pipeline) or
    # "flux" (Flux*Pipeline)
    architecture: str
    native: int  # native resolution in pixels (square)
    default_steps: int
    default_cfg: float
    default_sampler: str
    min_side: int
    max_side: int
    max_pixels: int
    cost_class: str  # the credit price class: "tiny" | "sd" | "sdxl" | "sd3" | "flux"
    multiple: int = 8  # sides must be multiples of this (the VAE's 8×, and SD3's / Flux's 2×2 patches: 16)
    # The side the compatibility APIs give a request that names no size, as the real services do (512² for an
    # SD 1.x engine on Stability's v1); 0 = `native`. solvent-tiny answers 512² like SD 1.x (upscaled from 256²).
    client: int = 0

    @property
    def client_side(self) -> int:
        return self.client or self.native

    @property
    def flow(self) -> bool:
        """A rectified-flow transformer (SD3, Flux): flow-matching samplers, no UNet adapters."""
        return self.architecture in FLOW_ARCHITECTURES

    def validate_size(self, width: int, height: int) -> None:
        """Raise `ValidationFailed` naming the field unless `width`×`height` may be asked of this family: sides
        from `min_side` to `OUTPUT_MAX_SIDE` in multiples of `multiple`, at most `OUTPUT_MAX_PIXELS` in all
        (sizes beyond the trained range are generated smaller and upscaled: `base_size`)."""
        largest = max(self.max_side, OUTPUT_MAX_SIDE)
        for field, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValidationFailed(f"`{field}` must be an integer but is {value!r}.", field=field, value=value)
            if value % self.multiple:
                raise ValidationFailed(
                    f"`{field}` has to be divisible by {self.multiple} for {self.label} models but is {value}.",
                    field=field, value=value)
            if not self.min_side <= value <= largest:
                raise ValidationFailed(
                    f"`{field}` must be between {self.min_side} and {largest} for {self.label} models "
                    f"but is {value}.",
                    field=field,
                    value=value,
                )
        if width * height > max(self.max_pixels, OUTPUT_MAX_PIXELS):
            raise ValidationFailed(
                f"`width`×`height` must be at most {max(self.max_pixels, OUTPUT_MAX_PIXELS)} pixels for "
                f"{self.label} models but is {width}×{height} = {width * height}.",
                field="width",
                value=width,
            )

    def base_size(self, width: int, height: int, max_side: int | None = None) -> tuple[int, int]:
        """The size a `width`×`height` image is generated at: itself when it lies in the trained range (sides up
        to `max_side` — a model's own position-table limit when it has one — and `max_pixels` in all), else the
        largest size in that range with the same aspect ratio, in multiples of `multiple`; the image is then
        upscaled to `width`×`height`."""
        side = min(self.max_side, max_side or self.max_side)
        scale = min(1.0, side / width, side / height, (self.max_pixels / (width * height)) ** 0.5)
        if scale >= 1.0:
            return width, height
        step = self.multiple
        least = -(-self.min_side // step) * step
        return tuple(max(least, int(v * scale) // step * step) for v in (width, height))  # type: ignore[return-value]


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sd1", "Stable Diffusion 1.x", "sd", 512, 25, 7.0, "dpmpp_2m_karras", 64, 2048, 1536 * 1536, "sd"),
        Family("sd2", "Stable Diffusion 2.x", "sd", 768, 25, 7.0, "dpmpp_2m_karras", 64, 2048, 1536 * 1536, "sd"),
        Family("sdxl", "Stable Diffusion XL", "sdxl", 1024, 30, 6.0, "dpmpp_2m_karras", 256, 2048, 2048 * 2048, "sdxl"),
        Family("sd3", "Stable Diffusion 3", "sd3", 1024, 28, 4.5, "flow_euler", 256, 2048, 2048 * 2048, "sd3", 16),
        Family("flux", "Flux.1", "flux", 1024, 28, 3.5, "flow_euler", 256, 2048, 2048 * 2048, "flux", 16),
        Family("tiny", "solvent-tiny", "sd", 64, 20, 2.0, "dpmpp_2m", 32, 256, 256 * 256, "tiny", client=512),
    )
}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValidationFailed(
            f"`family` must be one of {', '.join(FAMILIES)} but is {name!r}.", field="family", value=name
        ) from None


@cache
def _config(family: str, component: str) -> str:
    return (ASSETS / "configs" / family / f"{component}.json").read_text()


def shipped_config(family: str, component: str) -> dict[str, Any]:
    """A fresh copy of the shipped diffusers/transformers config of one component."""
    return json.loads(_config(family, component))


@dataclass(frozen=True)
class Preset:
    """Per-model defaults for a kind of model: what a request that sends nothing gets."""

    name: str
    steps: int
    cfg: float
    sampler: str
    note: str


# Few-step (distilled) models and LoRAs: their makers' recommended settings. A model's record takes a preset's
# defaults when it is added (recognised by name, or `--preset`); a request with a few-step LoRA and no steps of
# its own gets the LoRA's.
PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("standard", 0, 0.0, "", "the family's defaults"),
    Preset("turbo", 1, 0.0, "euler_a_trailing", "SDXL-Turbo / SD-Turbo: 1–4 steps, no CFG, trailing timesteps"),
    Preset("lcm", 4, 1.5, "lcm", "LCM models and LCM-LoRA: 4–8 steps, CFG 1–2, the LCM sampler"),
    Preset("lightning", 4, 0.0, "euler_trailing", "SDXL-Lightning / Hyper-SD: 4–8 steps, no CFG, trailing Euler"),
    Preset("schnell", 4, 0.0, "flow_euler", "Flux.1 [schnell]: 1–4 steps, no guidance"),
    Preset("sd3-turbo", 4, 0.0, "flow_euler", "SD3.5 Large Turbo: 4 steps, no CFG"),
    Preset("flux-dev", 28, 3.5, "flow_euler", "Flux.1 [dev]: distilled guidance 3.5, 28 steps"),
)}
# Names as their makers publish them; `hyper` alone would catch "HyperRealism" checkpoints, `lcm` inside a word others.
_PRESET_NAMES = ((re.compile(r"lightning"), "lightning"), (re.compile(r"hyper[-_ ]?sd"), "lightning"),
                 (re.compile(r"(?<![a-z])lcm(?![a-z])"), "lcm"), (re.compile(r"schnell"), "schnell"),
                 (re.compile(r"turbo"), "turbo"))


def preset_for(name: str, family: str) -> Preset | None:
    """The few-step preset a model or LoRA name announces (`sdxl-turbo`, `lcm-lora-sdv1-5`, `…lightning_4step…`,
    `flux1-schnell`, `sd3.5_large_turbo`), or None."""
    low = name.lower()
    for pattern, preset in _PRESET_NAMES:
        if pattern.search(low):
            if preset == "turbo" and family == "sd3":
                return PRESETS["sd3-turbo"]
            if preset in ("turbo", "lightning", "lcm") and family in FLOW_ARCHITECTURES:
                continue  # UNet-model settings; a flow model's few-step variant is its own preset
            return PRESETS[preset]
    return None


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValidationFailed(f"`preset` must be one of {', '.join(PRESETS)} but is {name!r}.", field="preset",
                               value=name) from None


def lora_preset(names: list[str], family: str) -> Preset | None:
    """The few-step preset of the first LoRA that announces one (`lcm-lora-sdxl`, `sdxl_lightning_4step_lora`,
    `Hyper-SD15-8steps-lora`): a request with such a LoRA and no settings of its own gets its defaults."""
    for name in names:
        found = preset_for(name, family)
        if found is not None and found.name in ("lcm", "lightning", "turbo"):
            return found
    return None
