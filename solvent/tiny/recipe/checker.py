"""A programmatic scene checker: segment by colour, classify the shape, locate the centroid.

Used to score `solvent-tiny` on held-out captions; tested on generator-drawn scenes, clean and with
ragged outlines. Shapes are read by matching the object's whole area against the generator's own
five shapes (`scenes.paint`), not by thresholds on its bounding box or convex hull: those read any
square whose outline is a pixel out in places as a circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .scenes import COLOURS, POSITIONS, SHAPES, paint

_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[c] for c in _NAMES], dtype=np.float32)


@dataclass
class Seen:
    background: str
    colour: str | None
    shape: str | None
    position: str | None


def _labels(img: np.ndarray) -> np.ndarray:
    d = ((img[:, :, None, :].astype(np.float32) - _PALETTE[None, None]) ** 2).sum(-1)
    return d.argmin(-1)


_SUPER = 4  # templates are drawn at 4× and box-downsampled, as scenes.draw draws
_SCALES = (0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2)


def _render(shape: str, cx: float, cy: float, half: float, size: int) -> np.ndarray:
    """A boolean mask of `shape` drawn by the scene generator's own geometry (pixels at least half covered)."""
    s = size * _SUPER
    img = Image.new("L", (s, s), 0)
    paint(ImageDraw.Draw(img), shape, cx * _SUPER, cy * _SUPER, half * _SUPER, 255, 0)
    return np.asarray(img.resize((size, size), Image.Resampling.BOX)) >= 128


@cache
def _unit(shape: str) -> tuple[float, float, float]:
    """Per shape: filled area / (2·half)², and the filled centroid's offset from the drawing centre / half."""
    half, c = 40.0, 128.0
    m = ndimage.binary_fill_holes(_render(shape, c, c, half, 256))
    cy, cx = ndimage.center_of_mass(m)
    return m.sum() / (2 * half) ** 2, (cx - c) / half, (cy - c) / half


def classify_shape(mask: np.ndarray) -> str:
    """Which of the generator's shapes `mask` is most like: the best intersection-over-union with each
    shape drawn at the mask's centroid, over sizes around the one its filled area implies.

    Matching whole areas, not thresholds on corners or extent, reads a shape whose outline is a
    little ragged (as a diffusion model draws it) by its body, not by its worst pixel.
    """
    filled = ndimage.binary_fill_holes(mask)
    area = filled.sum()
    if area == 0:
        return "none"
    if (area - mask.sum()) / area > 0.1:  # only a ring has a hole (a quarter of its disc when drawn)
        return "ring"
    cy, cx = ndimage.center_of_mass(filled)
    best, best_iou = "none", -1.0
    for shape in SHAPES:
        k, ox, oy = _unit(shape)
        for f in _SCALES:
            half = f * float(np.sqrt(area / k)) / 2
            t = _render(shape, cx - ox * half, cy - oy * half, half, mask.shape[0])
            union = (t | mask).sum()
            iou = (t & mask).sum() / union if union else 0.0
            if iou > best_iou:
                best, best_iou = shape, iou
    return best


def position_of(cy: float, cx: float, size: int) -> str:
    col = 0 if cx < size * 0.375 else (2 if cx >= size * 0.625 else 1)
    row = 0 if cy < size * 0.375 else (2 if cy >= size * 0.625 else 1)
    for name, (fx, fy) in POSITIONS.items():
        if round(fx * 4) - 1 == col and round(fy * 4) - 1 == row:
            return name
    raise AssertionError("unreachable")


def agreement(seen: Seen, background: str, colour: str, shape: str, position: str | None = None) -> dict[str, bool]:
    """Which of the expected attributes the checker read back (position only when one is expected)."""
    got = {"colour": seen.colour == colour, "background": seen.background == background, "shape": seen.shape == shape}
    if position is not None:
        got["position"] = seen.position == position
    return got


def inspect(image: Image.Image) -> Seen:
    """What is in `image`: background colour and the largest object's colour, shape and position."""
    img = np.asarray(image.convert("RGB"))
    size = img.shape[0]
    labels = _labels(img)
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    bg = int(np.bincount(border, minlength=len(_NAMES)).argmax())
    fg = labels != bg
    fg = ndimage.binary_opening(fg, iterations=1) if fg.sum() > 40 else fg
    comps, n = ndimage.label(fg)
    if n == 0:
        return Seen(_NAMES[bg], None, None, None)
    sizes = ndimage.sum(fg, comps, range(1, n + 1))
    main = comps == (int(np.argmax(sizes)) + 1)
    if main.sum() < 12:
        return Seen(_NAMES[bg], None, None, None)
    colour = int(np.bincount(labels[main], minlength=len(_NAMES)).argmax())
    shape_mask = labels == colour
    shape_mask = ndimage.binary_fill_holes(main) & shape_mask | main & shape_mask
    cy, cx = ndimage.center_of_mass(ndimage.binary_fill_holes(main))
    return Seen(_NAMES[bg], _NAMES[colour], classify_shape(main), position_of(cy, cx, size))
