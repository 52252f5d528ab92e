"""Image edits that become ordinary inpainting jobs, prepared with PIL and numpy (no torch, so the API process
builds them): outpainting (the canvas extended on any side, its new part filled from the edges, a mask with a
feathered seam) and erasing (the masked part filled from its surroundings before it is repainted).

The engine's inpainting pastes the input back through the mask, so a feathered mask blends the repainted part into
the kept one over `feather` pixels instead of a hard edge.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from ..errors import ValidationFailed

MAX_EXTEND = 2048  # pixels one side may grow by


def outpaint_canvas(image: Image.Image, left: int = 0, right: int = 0, up: int = 0, down: int = 0,
                    feather: int = 24, multiple: int = 8) -> tuple[Image.Image, Image.Image]:
    """(the extended canvas, its mask: white = paint, black = keep). The sides grow by the amounts asked, rounded
    up so the canvas is a multiple of `multiple`; the new part starts as the image's edges stretched outwards and
    blurred (something of the right colours to paint over), and the mask fades from black to white over the
    `feather` pixels of the image next to each extended side."""
    for name, v in (("left", left), ("right", right), ("up", up), ("down", down), ("feather", feather)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_EXTEND:
            raise ValidationFailed(f"`{name}` must be an integer from 0 to {MAX_EXTEND} but is {v!r}.", field=name,
                                   value=v)
    if not (left or right or up or down):
        raise ValidationFailed("extend at least one side: `left`, `right`, `up` or `down` must be above 0.",
                               field="left", value=0)
    w, h = image.size
    right += -(w + left + right) % multiple  # to the family's multiple, on the sides that grow (else right/down)
    down += -(h + up + down) % multiple
    rgb = np.asarray(image.convert("RGB"))
    canvas = np.pad(rgb, ((up, down), (left, right), (0, 0)), mode="edge")
    blurred = Image.fromarray(canvas).filter(ImageFilter.GaussianBlur(radius=max(4, max(left, right, up, down) / 8)))
    out = np.asarray(blurred).copy()
    out[up:up + h, left:left + w] = rgb  # the image itself untouched
    mask = np.full((h + up + down, w + left + right), 255.0)
    inner = np.zeros((h, w))
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    f = max(1, feather)
    for grown, dist in ((left, xs), (right, w - 1 - xs), (up, ys), (down, h - 1 - ys)):
        if grown and feather:  # a ramp from white at the edge to black `feather` px inside
            inner = np.maximum(inner, np.clip(1 - dist / f, 0, 1) * 255)
    mask[up:up + h, left:left + w] = inner
    return Image.fromarray(out), Image.fromarray(mask.round().astype(np.uint8), "L")


def grow_mask(mask: Image.Image, pixels: int) -> Image.Image:
    """The mask's white part grown by `pixels` and its edge softened by as much (Stability's `grow_mask`)."""
    mask = mask.convert("L")
    if pixels <= 0:
        return mask
    grown = mask.filter(ImageFilter.MaxFilter(2 * (pixels // 2) + 1))
    return grown.filter(ImageFilter.GaussianBlur(radius=pixels / 2))


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The masked part (white) replaced by the colours around it, pulled in from coarser scales ("push-pull"):
    what an eraser's repaint should start from, so the region it paints over no longer holds the object."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255
    known = (np.asarray(mask.convert("L")) < 128).astype(np.float64)
    if known.all():
        return image.convert("RGB")
    if not known.any():
        raise ValidationFailed("the mask covers the whole image: nothing is left to fill it from.", field="mask")
    filled = _push_pull(rgb * known[..., None], known)
    out = rgb * known[..., None] + filled * (1 - known[..., None])
    return Image.fromarray((out * 255).round().clip(0, 255).astype(np.uint8))


def _push_pull(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted colours at every pixel: known pixels as they are, unknown ones from the nearest scale that has
    any known pixel around them (each level halves the image; the coarse answer is upsampled back)."""
    h, w = weights.shape
    if h <= 1 or w <= 1 or weights.min() > 0:
        return values / np.maximum(weights, 1e-8)[..., None]
    ph, pw = h + h % 2, w + w % 2
    v = np.pad(values, ((0, ph - h), (0, pw - w), (0, 0)))
    wt = np.pad(weights, ((0, ph - h), (0, pw - w)))
    v2 = v.reshape(ph // 2, 2, pw // 2, 2, 3).sum(axis=(1, 3))
    w2 = wt.reshape(ph // 2, 2, pw // 2, 2).sum(axis=(1, 3))
    coarse = _push_pull(v2, w2)  # colours of the coarser level
    up = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[:h, :w]
    here = values / np.maximum(weights, 1e-8)[..., None]
    known = weights[..., None] > 0
    return np.where(known, here, up)
