"""ControlNet units and their preprocessors (no torch: numpy, OpenCV and Pillow).

A unit steers a generation with a control image: an edge map, a scribble, a silhouette, a depth or
pose map made elsewhere. The preprocessor turns the uploaded picture into the map the ControlNet was
trained on; the built-in ones need no downloaded weights:

- `none`: the image is already a map (depth, pose, normal, a finished scribble) and is used as it is;
- `canny`: OpenCV's Canny edges, thresholds `threshold_a`/`threshold_b` (A1111's defaults 100/200);
- `scribble`: line art or a sketch (dark strokes on light paper) to white strokes on black;
- `invert`: black ↔ white (a white-background drawing for models trained on black backgrounds);
- `threshold`: a hard mask at `threshold_a` (0–255), white above.

Preprocessors that need model weights are not built in. `depth` (A1111's `depth_midas`, `depth_anything…`,
`depth_zoe`, …) runs a depth estimator the operator installs in the model store (a transformers
depth-estimation folder: Depth Anything, DPT/MiDaS, …), on the worker; without one a unit naming it is
refused with what to install. Pose, normal, segmentation and the other estimators are refused with what to
do instead (make the map elsewhere and send it with `none`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import ValidationFailed

MAX_UNITS = 4
MAX_REFERENCES = 4  # IP-Adapter reference images per request, over all its image prompts
# control_mode as the native API names it → A1111's label (its "Control Mode" infotext and extension API).
CONTROL_MODES = {"balanced": "Balanced", "prompt": "My prompt is more important",
                 "controlnet": "ControlNet is more important"}
# A1111 module names that mean one of ours.
ALIASES = {"canny": "canny", "none": "none", "invert": "invert", "invert (from white bg & black line)": "invert",
           "scribble_xdog": "scribble", "scribble_hed": "scribble", "scribble": "scribble", "threshold": "threshold",
           "binary": "threshold", "lineart_standard (from white bg & black line)": "scribble"}
NEEDS_WEIGHTS = ("depth", "openpose", "normal", "lineart_anime", "mlsd", "hed", "pidinet", "seg", "tile", "ip-adapter")


@dataclass
class ControlUnit:
    """One ControlNet unit of a request: which ControlNet, its control image and how strongly it steers."""

    model: str
    image: Image.Image | None = None
    preprocessor: str = "none"
    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    control_mode: str = "balanced"
    threshold_a: float | None = None
    threshold_b: float | None = None

    def public(self) -> dict:
        return {"model": self.model, "preprocessor": self.preprocessor, "weight": self.weight,
                "guidance_start": self.guidance_start, "guidance_end": self.guidance_end,
                "control_mode": self.control_mode, "threshold_a": self.threshold_a, "threshold_b": self.threshold_b}


@dataclass
class ImagePrompt:
    """One IP-Adapter unit: reference images that steer the look (style, subject, face) of a generation.

    Each reference adds its own image attention to the model's, scaled by `weight × scale` (so two references
    at scale 0.5 blend evenly, and one reference alone is exactly the IP-Adapter its authors published)."""

    model: str
    images: list[Image.Image | None]
    scales: list[float]
    weight: float = 1.0

    def public(self) -> dict:
        return {"model": self.model, "weight": self.weight, "scales": list(self.scales)}


def check_image_prompt(unit: ImagePrompt, index: int) -> ImagePrompt:
    """Validate an image prompt's numbers (the model and images are checked where they are known)."""
    where = f"ip_adapters[{index}]"
    if not unit.scales or len(unit.scales) > MAX_REFERENCES:
        raise ValidationFailed(f"`{where}.images` must hold 1 to {MAX_REFERENCES} reference images but holds "
                               f"{len(unit.scales)}.", field=f"{where}.images", value=len(unit.scales))
    for name, v in [("weight", unit.weight), *((f"images[{j}].scale", s) for j, s in enumerate(unit.scales))]:
        if not isinstance(v, int | float) or isinstance(v, bool) or not 0 <= v <= 2:
            raise ValidationFailed(f"`{where}.{name}` must be a number between 0 and 2 but is {v!r}.",
                                   field=f"{where}.{name}", value=v)
    return unit


ESTIMATED = ("depth",)  # preprocessors that run an installed estimator (`estimators` names the installed ones)


def preprocessor_name(name: str | None, field: str = "preprocessor", estimators=()) -> str:
    """Ours for any accepted spelling, or a `ValidationFailed` that says what is built in and what to do."""
    key = (name or "none").strip().lower()
    if key in ALIASES:
        return ALIASES[key]
    for task in ESTIMATED:
        if key.startswith(task):
            if task in estimators:
                return task
            raise ValidationFailed(
                f"`{field}` {name!r} needs a {task} estimator, and none is installed where this runs: add a "
                f"transformers {task}-estimation folder (e.g. Depth Anything V2 Small, DPT-Hybrid MiDaS) with "
                f"`solvent models add FOLDER`, or make the map elsewhere and send it with preprocessor `none`.",
                field=field, value=name)
    if any(key.startswith(p) for p in NEEDS_WEIGHTS):
        raise ValidationFailed(
            f"`{field}` {name!r} needs estimator weights that Solvent does not ship and cannot load yet (of the "
            f"estimators, only depth ones install through the model store); make the map elsewhere and send it with "
            f"preprocessor `none`, or use one of {', '.join(PREPROCESSORS)}.", field=field, value=name)
    raise ValidationFailed(f"`{field}` must be one of {', '.join(PREPROCESSORS)} but is {name!r}.", field=field,
                           value=name)


def check_unit(unit: ControlUnit, index: int, estimators=()) -> ControlUnit:
    """Validate the numbers of a unit (the model and image are checked where they are known); `estimators`: the
    estimated preprocessors that can run (an installed estimator each)."""
    where = f"controlnets[{index}]"
    unit.preprocessor = preprocessor_name(unit.preprocessor, f"{where}.preprocessor", estimators)
    for name, lo, hi in (("weight", 0.0, 2.0), ("guidance_start", 0.0, 1.0), ("guidance_end", 0.0, 1.0)):
        v = getattr(unit, name)
        if not isinstance(v, int | float) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValidationFailed(f"`{where}.{name}` must be a number between {lo:g} and {hi:g} but is {v!r}.",
                                   field=f"{where}.{name}", value=v)
    if unit.guidance_start >= unit.guidance_end:
        raise ValidationFailed(f"`{where}.guidance_start` must be less than `guidance_end` but is "
                               f"{unit.guidance_start:g} ≥ {unit.guidance_end:g}.", field=f"{where}.guidance_start",
                               value=unit.guidance_start)
    if unit.control_mode not in CONTROL_MODES:
        raise ValidationFailed(f"`{where}.control_mode` must be one of {', '.join(CONTROL_MODES)} but is "
                               f"{unit.control_mode!r}.", field=f"{where}.control_mode", value=unit.control_mode)
    return unit


def _canny(img: Image.Image, low: float | None, high: float | None) -> Image.Image:
    import cv2

    lo, hi = int(100 if low is None else low), int(200 if high is None else high)
    if not 0 <= lo <= hi <= 1000:
        raise ValidationFailed(f"canny thresholds must satisfy 0 ≤ low ≤ high ≤ 1000 but are {lo} and {hi}.",
                               field="threshold_a", value=lo)
    edges = cv2.Canny(np.asarray(img.convert("L")), lo, hi)
    return Image.fromarray(edges).convert("RGB")


def _scribble(img: Image.Image, low: float | None, high: float | None) -> Image.Image:
    gray = np.asarray(img.convert("L"), dtype=np.float32)
    cut = 127 if low is None else float(low)
    return Image.fromarray(np.where(gray < cut, 255, 0).astype(np.uint8)).convert("RGB")


def _invert(img: Image.Image, low: float | None, high: float | None) -> Image.Image:
    return Image.fromarray(255 - np.asarray(img.convert("RGB")))


def _threshold(img: Image.Image, low: float | None, high: float | None) -> Image.Image:
    cut = 127 if low is None else float(low)
    if not 0 <= cut <= 255:
        raise ValidationFailed(f"`threshold_a` must be between 0 and 255 but is {cut:g}.", field="threshold_a",
                               value=cut)
    gray = np.asarray(img.convert("L"), dtype=np.float32)
    return Image.fromarray(np.where(gray > cut, 255, 0).astype(np.uint8)).convert("RGB")


PREPROCESSORS = {"none": lambda img, a, b: img.convert("RGB"), "canny": _canny, "scribble": _scribble,
                 "invert": _invert, "threshold": _threshold}


def preprocess(img: Image.Image, name: str, width: int | None = None, height: int | None = None,
               threshold_a: float | None = None, threshold_b: float | None = None,
               estimators: dict | None = None) -> Image.Image:
    """The control map of `img` by preprocessor `name`, resized (Lanczos) to width × height when given;
    `estimators` maps an estimated preprocessor (`depth`) to the function that runs its installed estimator."""
    if width and height and img.size != (width, height):
        img = img.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    key = preprocessor_name(name, estimators=tuple(estimators or ()))
    if key in ESTIMATED:
        return estimators[key](img)
    return PREPROCESSORS[key](img, threshold_a, threshold_b)
