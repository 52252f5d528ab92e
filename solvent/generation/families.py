"""Model families: what Solvent knows about SD 1.x, SD 2.x, SDXL and its own `solvent-tiny`.

A family fixes the architecture (which diffusers pipeline runs it), the shipped component
configs (under `assets/configs/<family>`), the native resolution, defaults and size rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ValidationFailed

ASSETS = Path(str(resources.files("solvent.generation") / "assets"))
TOKENIZER_DIR = ASSETS / "clip_tokenizer"


@dataclass(frozen=True)
class Family:
    """One model family: its architecture, native size, defaults, size rules and credit price class."""

    name: str
    label: str
    architecture: str  # "sd" (StableDiffusion*Pipeline) or "sdxl" (StableDiffusionXL*Pipeline)
    native: int  # native resolution in pixels (square)
    default_steps: int
    default_cfg: float
    default_sampler: str
    min_side: int
    max_side: int
    max_pixels: int
    cost_class: str  # the credit price class: "tiny" | "sd" | "sdxl"

    def validate_size(self, width: int, height: int) -> None:
        """Raise `ValidationFailed` naming the field unless `width`×`height` suits this family."""
        for field, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValidationFailed(f"`{field}` must be an integer but is {value!r}.", field=field, value=value)
            if value % 8:
                raise ValidationFailed(
                    f"`{field}` has to be divisible by 8 but is {value}.", field=field, value=value
                )
            if not self.min_side <= value <= self.max_side:
                raise ValidationFailed(
                    f"`{field}` must be between {self.min_side} and {self.max_side} for {self.label} models "
                    f"but is {value}.",
                    field=field,
                    value=value,
                )
        if width * height > self.max_pixels:
            raise ValidationFailed(
                f"`width`×`height` must be at most {self.max_pixels} pixels for {self.label} models but is "
                f"{width}×{height} = {width * height}.",
                field="width",
                value=width,
            )


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sd1", "Stable Diffusion 1.x", "sd", 512, 25, 7.0, "dpmpp_2m_karras", 64, 2048, 1536 * 1536, "sd"),
        Family("sd2", "Stable Diffusion 2.x", "sd", 768, 25, 7.0, "dpmpp_2m_karras", 64, 2048, 1536 * 1536, "sd"),
        Family("sdxl", "Stable Diffusion XL", "sdxl", 1024, 30, 6.0, "dpmpp_2m_karras", 256, 2048, 2048 * 2048, "sdxl"),
        Family("tiny", "solvent-tiny", "sd", 64, 20, 2.0, "dpmpp_2m", 32, 256, 256 * 256, "tiny"),
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
