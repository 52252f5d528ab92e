"""Credit pricing: what a request costs, before it runs.

    credits = base(cost class) × (pixels / baseline pixels) × (steps run / baseline steps) × images

linear in megapixels and steps from a per-class baseline, as DreamStudio priced (its SDXL price
was linear per step from a 50-step baseline). Image-to-image runs only `steps × strength` steps,
so it costs that many. Prices are integer milli-credits (1 credit = 1000 mc = $0.01), rounded
up per image, never below `min_mc`. Configure with `SOLVENT_PRICING`, a JSON object such as
`{"classes": {"sd": {"base_mc": 800, "pixels": 262144, "steps": 30}}, "min_mc": 10}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..errors import ValidationFailed


@dataclass(frozen=True)
class CostClass:
    base_mc: int  # price of one image at the baseline
    pixels: int  # baseline width × height
    steps: int  # baseline steps


DEFAULT_CLASSES = {
    "tiny": CostClass(100, 64 * 64, 20),  # 0.1 credit: the embedded demo model
    "sd": CostClass(1000, 512 * 512, 30),  # 1 credit: SD 1.x/2.x at 512², 30 steps
    "sdxl": CostClass(3000, 1024 * 1024, 30),  # 3 credits: like Stable Image Core
    "sd3": CostClass(3500, 1024 * 1024, 28),  # 3.5 credits: Stability's SD3.5 Medium price
    "sd3-large": CostClass(6500, 1024 * 1024, 28),  # 6.5 credits: SD3.5 Large (Large Turbo's 4 steps: ~0.9)
    "flux": CostClass(5000, 1024 * 1024, 28),  # 5 credits: Flux.1 [dev] (schnell's 4 steps: ~0.7)
    # Upscaling, per output megapixel (one "step": a model pass, or Lanczos): 1 credit, Stability's fast upscale.
    "upscale": CostClass(1000, 1024 * 1024, 1),
    # Background removal by a segmenter, per megapixel (one model pass): priced as the fast upscale is.
    "segment": CostClass(1000, 1024 * 1024, 1),
}


@dataclass(frozen=True)
class PriceRequest:
    """What pricing needs to know of a request (computed by the API layer from the model's family)."""

    model: str
    cost_class: str
    width: int
    height: int
    steps: int
    images: int = 1
    mode: str = "txt2img"
    strength: float = 1.0
    control_units: int = 0  # ControlNet units: each runs a second network beside the UNet at every step
    t2i_units: int = 0  # T2I-Adapter units: a small network run once per image
    references: int = 0  # IP-Adapter reference images: each adds image attention to every cross-attention layer
    # The size asked for when the image is generated at `width`×`height` and upscaled to it (the size policy):
    # that upscale is priced by its output pixels on top of the generation.
    out_width: int = 0
    out_height: int = 0
    # Hires fix: the second pass (width, height it runs at, steps it runs), priced as the first pass is.
    hires: tuple[int, int, int] | None = None

    @property
    def steps_run(self) -> int:
        if self.mode == "txt2img":
            return self.steps
        return max(1, int(self.steps * min(1.0, max(0.0, self.strength))))


@dataclass(frozen=True)
class Pricing:
    """Credit prices per cost class: a base price for a reference size and step count, scaled linearly."""

    classes: dict[str, CostClass] = field(default_factory=lambda: dict(DEFAULT_CLASSES))
    min_mc: int = 10
    # Each ControlNet unit adds this percentage of the image's price (a ControlNet is about a third of a
    # UNet's work per step; the operator sets its own figure with `controlnet_pct` in SOLVENT_PRICING).
    controlnet_pct: int = 30
    # Each T2I-Adapter unit (run once, not per step) and each IP-Adapter reference image (extra keys and values
    # in every cross-attention layer at every step) add these percentages (`t2i_pct`, `ip_adapter_pct`).
    t2i_pct: int = 5
    ip_adapter_pct: int = 10

    @classmethod
    def from_json(cls, text: str | None) -> Pricing:
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            classes = dict(DEFAULT_CLASSES)
            for name, c in raw.get("classes", {}).items():
                cc = CostClass(int(c["base_mc"]), int(c["pixels"]), int(c["steps"]))
                if cc.base_mc < 0 or cc.pixels <= 0 or cc.steps <= 0:
                    raise ValueError(f"class {name!r}: base_mc ≥ 0, pixels > 0 and steps > 0")
                classes[name] = cc
            pcts = {k: int(raw.get(k, default)) for k, default in (("controlnet_pct", 30), ("t2i_pct", 5),
                                                                     ("ip_adapter_pct", 10))}
            for k, v in pcts.items():
                if v < 0:
                    raise ValueError(f"{k} ≥ 0")
            return cls(classes, int(raw.get("min_mc", 10)), **pcts)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValidationFailed(f"`SOLVENT_PRICING` is not a valid pricing object: {e}", field="pricing",
                                   value=text) from e

    def per_image_mc(self, req: PriceRequest) -> int:
        c = self.classes.get(req.cost_class)
        if c is None:
            raise ValidationFailed(f"no price for cost class {req.cost_class!r} (model {req.model!r}); known: "
                                   f"{', '.join(sorted(self.classes))}.", field="model", value=req.model)
        extra = (self.controlnet_pct * req.control_units + self.t2i_pct * req.t2i_units
                 + self.ip_adapter_pct * req.references)
        work = req.width * req.height * req.steps_run  # pixels × steps of every pass
        if req.hires is not None:
            w2, h2, s2 = req.hires
            work += w2 * h2 * s2
        num = c.base_mc * work * (100 + extra)
        den = c.pixels * c.steps * 100
        price = max(self.min_mc, -(-num // den))  # ceiling division: integers only
        out, made = req.out_width * req.out_height, req.width * req.height
        if req.hires is not None:
            made = req.hires[0] * req.hires[1]
        if out > made and (up := self.classes.get("upscale")) is not None:
            price += -(-up.base_mc * out // (up.pixels * up.steps))
        return price

    def price_mc(self, req: PriceRequest) -> int:
        return self.per_image_mc(req) * req.images

    def table(self) -> dict[str, dict[str, int]]:
        return {k: {"base_mc": c.base_mc, "pixels": c.pixels, "steps": c.steps} for k, c in self.classes.items()}


