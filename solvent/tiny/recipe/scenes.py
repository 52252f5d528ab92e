"""Procedural scenes: coloured shapes on coloured backgrounds, each with captions in several phrasings.

This is `solvent-tiny`'s whole training set, drawn on the fly from a seed, so nothing is downloaded.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 225, 30),
    "green": (30, 170, 50),
    "cyan": (40, 215, 225),
    "blue": (35, 60, 220),
    "purple": (135, 45, 190),
    "pink": (250, 130, 200),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "star", "ring")
SIZES = {"small": 20, "medium": 25, "large": 30}  # bounding-box side in pixels
POSITIONS: dict[str, tuple[float, float]] = {  # centre as a fraction of the image
    "top left": (0.25, 0.25), "top": (0.5, 0.25), "top right": (0.75, 0.25),
    "left": (0.25, 0.5), "centre": (0.5, 0.5), "right": (0.75, 0.5),
    "bottom left": (0.25, 0.75), "bottom": (0.5, 0.75), "bottom right": (0.75, 0.75),
}
POSITION_WORDS = {  # how captions say each position
    "top left": ["at the top left", "in the top left corner", "top left"],
    "top": ["at the top", "at the top centre", "top"],
    "top right": ["at the top right", "in the top right corner", "top right"],
    "left": ["on the left", "at the left", "left"],
    "centre": ["in the centre", "in the middle", "centre"],
    "right": ["on the right", "at the right", "right"],
    "bottom left": ["at the bottom left", "in the bottom left corner", "bottom left"],
    "bottom": ["at the bottom", "at the bottom centre", "bottom"],
    "bottom right": ["at the bottom right", "in the bottom right corner", "bottom right"],
}


@dataclass(frozen=True)
class Obj:
    colour: str
    shape: str
    size: str
    position: str


@dataclass
class Scene:
    background: str
    objects: list[Obj] = field(default_factory=list)

    @property
    def main(self) -> Obj:
        return self.objects[0]


def held_out(obj: Obj, background: str) -> bool:
    """About 1 in 8 single-object combinations are never shown in training (the evaluation's pool)."""
    key = f"{obj.colour}|{obj.shape}|{obj.size}|{obj.position}|{background}"
    return sum(ord(c) * (i + 1) for i, c in enumerate(key)) % 8 == 0


def random_scene(rng: random.Random, max_objects: int = 3, allow_held_out: bool = False) -> Scene:
    while True:
        background = rng.choice(list(COLOURS))
        n = rng.choices([1, 2, 3][:max_objects], weights=[6, 3, 2][:max_objects])[0]
        positions = _apart(rng, n)
        colours = rng.sample([c for c in COLOURS if c != background], n)
        objs = [Obj(c, rng.choice(SHAPES), rng.choice(list(SIZES)), p) for c, p in zip(colours, positions, strict=True)]
        if n > 1:  # keep several objects apart: no two large ones, none at the centre beside another
            objs = [Obj(o.colour, o.shape, "large" if o.size == "large" and i == 0 else rng.choice(["small", "medium"]),
                        o.position) for i, o in enumerate(objs)]
        scene = Scene(background, objs)
        if allow_held_out or not held_out(scene.main, background):
            return scene


def _grid(position: str) -> tuple[int, int]:
    fx, fy = POSITIONS[position]
    return round(fx * 4) - 1, round(fy * 4) - 1


def _apart(rng: random.Random, n: int) -> list[str]:
    """`n` positions, no two of them neighbours on the 3×3 grid (so objects never overlap)."""
    while True:
        chosen = rng.sample(list(POSITIONS), n)
        cells = [_grid(p) for p in chosen]
        if all(max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= 2 for i, a in enumerate(cells) for b in cells[i + 1:]):
            return chosen


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    pts = []
    for i in range(10):
        rad = r if i % 2 == 0 else r * 0.42
        a = -math.pi / 2 + i * math.pi / 5
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def draw(scene: Scene, size: int = SIZE, scale: int = 4) -> Image.Image:
    """Render at `scale`× and downsample (smooth edges, exact flat colours inside)."""
    bg = COLOURS[scene.background]
    return _render(scene, size, scale, size, "RGB", bg, lambda o: COLOURS[o.colour])


def object_mask(scene: Scene, size: int, scale: int = 4) -> np.ndarray:
    """How much of each cell of a `size`×`size` grid the scene's objects cover (0–1, float32)."""
    return np.asarray(_render(scene, SIZE, scale, size, "L", 0, lambda o: 255), dtype=np.float32) / 255


def _render(scene: Scene, side: int, scale: int, out: int, mode: str, background, fill) -> Image.Image:
    """Paint `scene`'s objects on a (`side`·`scale`)² canvas of `background`, then box-downsample to `out`²."""
    s = side * scale
    img = Image.new(mode, (s, s), background)
    d = ImageDraw.Draw(img)
    for obj in reversed(scene.objects):  # the main object is drawn last, on top
        fx, fy = POSITIONS[obj.position]
        paint(d, obj.shape, fx * s, fy * s, SIZES[obj.size] * scale / 2, fill(obj), background)
    return img.resize((out, out), Image.Resampling.BOX)


def paint(d: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, half: float, fill, background) -> None:
    """Draw one shape whose bounding box is `half` either side of (`cx`, `cy`) (the checker's templates too)."""
    box = (cx - half, cy - half, cx + half, cy + half)
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        inset = half * 0.12
        d.rectangle((box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset), fill=fill)
    elif shape == "triangle":
        d.polygon([(cx, cy - half), (cx + half, cy + half * 0.8), (cx - half, cy + half * 0.8)], fill=fill)
    elif shape == "star":
        d.polygon(_star(cx, cy + half * 0.08, half * 1.05), fill=fill)
    elif shape == "ring":
        d.ellipse(box, fill=fill)
        inner = half * 0.5
        d.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=background)
    else:
        raise ValueError(f"shape: unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


def _describe(o: Obj, rng: random.Random, with_size: bool, with_position: bool) -> str:
    words = [o.size] if with_size else []
    words += [o.colour, o.shape]
    text = " ".join(words)
    if with_position:
        text += " " + rng.choice(POSITION_WORDS[o.position][:2])
    return text


def _a(text: str) -> str:
    """`text` with its indefinite article: 'a red circle', 'an orange ring'."""
    return ("an " if text[0] in "aeiou" else "a ") + text


def _listed(parts: list[str]) -> str:
    return " and ".join(_a(p) for p in parts)


def caption(scene: Scene, rng: random.Random) -> str:
    """One of several phrasings; the main object is always named first."""
    return caption_and_position(scene, rng)[0]


def caption_and_position(scene: Scene, rng: random.Random, unplaced: float = 0.25) -> tuple[str, bool]:
    """A caption, and whether it says where the main object is.

    With probability `unplaced` the main object's position is left out ("a red circle on a blue
    background"), as people write it: a model that only ever saw placed objects reads such a prompt
    as out of distribution and loses its background colour.
    """
    style = rng.randrange(4)
    with_size = rng.random() < 0.7
    placed = rng.random() >= unplaced
    parts = [_describe(o, rng, with_size and i == 0, placed or i > 0) for i, o in enumerate(scene.objects)]
    bg = scene.background
    if style == 0:
        return _listed(parts) + f" on {_a(bg)} background", placed
    if style == 1:
        o = scene.main
        where = f", {POSITION_WORDS[o.position][2]}" if placed else ""
        rest = "".join(f", {o2.colour} {o2.shape} {POSITION_WORDS[o2.position][2]}" for o2 in scene.objects[1:])
        return f"{bg} background, {o.colour} {o.shape}{where}{rest}", placed
    if style == 2:
        return f"{bg} background with " + _listed(parts), placed
    return _listed(parts) + f", {bg} background", placed


def canonical_caption(scene: Scene) -> str:
    """The evaluation's phrasing: 'a small red circle at the top left on a blue background'."""
    parts = [f"{o.size} {o.colour} {o.shape} {POSITION_WORDS[o.position][0]}" for o in scene.objects]
    return _listed(parts) + f" on {_a(scene.background)} background"


def batch(rng: random.Random, n: int, drop_caption: float = 0.0) -> tuple[np.ndarray, list[str]]:
    """`n` scenes as uint8 [n, 64, 64, 3] and their captions ('' with probability `drop_caption`)."""
    images, captions = [], []
    for _ in range(n):
        scene = random_scene(rng)
        images.append(np.asarray(draw(scene)))
        captions.append("" if rng.random() < drop_caption else caption(scene, rng))
    return np.stack(images), captions
