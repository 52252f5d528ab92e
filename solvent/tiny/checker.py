"""A programmatic scene checker: segment by colour, classify the shape, locate the centroid.

Used to score `solvent-tiny` on held-out captions; tested on generator-drawn scenes first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from .scenes import COLOURS, POSITIONS

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


def classify_shape(mask: np.ndarray) -> str:
    filled = ndimage.binary_fill_holes(mask)
    area, farea = mask.sum(), filled.sum()
    if farea == 0:
        return "none"
    if (farea - area) / farea > 0.1:
        return "ring"
    ys, xs = np.nonzero(filled)
    extent = farea / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    try:
        solidity = farea / ConvexHull(corners).volume
    except QhullError:
        solidity = 1.0
    if solidity < 0.8:
        return "star"
    if extent > 0.9:
        return "square"
    if extent > 0.66:
        return "circle"
    return "triangle"


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
