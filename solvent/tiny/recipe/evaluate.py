"""Score `solvent-tiny` on held-out captions: `python -m solvent.tiny.recipe.evaluate [--n 100]`.

The captions describe one object in combinations never shown in training (see
`scenes.held_out`). Each image is made at the model's default sampler, steps and CFG with seed =
its index, then the scene checker reads back the background colour and the object's colour, shape
and position.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass

from PIL import Image

from .checker import agreement, inspect
from .scenes import Scene, canonical_caption, held_out, random_scene

TARGETS = {"colour": 0.90, "background": 0.90, "shape": 0.75, "position": 0.75}
EVAL_SEED = 1234  # the held-out captions that are scored
VALIDATION_SEED = 4321  # other held-out captions, on which settings (CFG, steps) are chosen


def eval_scenes(n: int, seed: int = EVAL_SEED) -> list[Scene]:
    """A fixed list of held-out single-object scenes (no two with the same caption)."""
    rng = random.Random(seed)
    out, captions = [], set()
    while len(out) < n:
        s = random_scene(rng, max_objects=1, allow_held_out=True)
        cap = canonical_caption(s)
        if held_out(s.main, s.background) and cap not in captions:
            captions.add(cap)
            out.append(s)
    return out


@dataclass
class Report:
    n: int
    scores: dict[str, float]
    seconds_per_image: float
    failures: list[dict]

    def table(self) -> str:
        lines = [f"{'metric':<12} {'score':>7} {'target':>7}  ok", "-" * 33]
        for k, target in TARGETS.items():
            ok = "yes" if self.scores[k] >= target else "NO"
            lines.append(f"{k:<12} {self.scores[k]:>7.1%} {target:>7.0%}  {ok}")
        lines.append(f"({self.n} held-out captions, {self.seconds_per_image:.2f} s/image)")
        return "\n".join(lines)


def evaluate(engine, n: int = 100, model: str = "solvent-tiny", grid: str | None = None,
             scenes_seed: int = EVAL_SEED, **overrides) -> Report:
    from ...generation import GenerationRequest

    scenes = eval_scenes(n, scenes_seed)
    hits = dict.fromkeys(TARGETS, 0)
    failures, images = [], []
    t0 = time.perf_counter()
    for i, scene in enumerate(scenes):
        cap = canonical_caption(scene)
        img = engine.generate(GenerationRequest(prompt=cap, model=model, seed=i, **overrides)).images[0]
        images.append(img)
        seen = inspect(img)
        o = scene.main
        got = agreement(seen, scene.background, o.colour, o.shape, o.position)
        for k, ok in got.items():
            hits[k] += ok
        if not all(got.values()):
            failures.append({"caption": cap, "seen": vars(seen)})
    seconds = (time.perf_counter() - t0) / n
    if grid:
        cols = 10
        sheet = Image.new("RGB", (64 * cols, 64 * ((n + cols - 1) // cols)))
        for i, img in enumerate(images):
            sheet.paste(img, ((i % cols) * 64, (i // cols) * 64))
        sheet.save(grid)
    return Report(n, {k: v / n for k, v in hits.items()}, seconds, failures)


# Prompts as people write them: no position, no size (the acceptance prompt first).
PLAIN_PROMPTS = [("a red circle on a blue background", "red", "circle", "blue"),
                 ("a yellow triangle on a green background", "yellow", "triangle", "green"),
                 ("a white star on a black background", "white", "star", "black"),
                 ("a pink square on a cyan background", "pink", "square", "cyan"),
                 ("an orange ring on a purple background", "orange", "ring", "purple"),
                 ("a orange ring on a purple background", "orange", "ring", "purple")]


def plain(engine, seeds: int = 10, model: str = "solvent-tiny", **overrides) -> list[dict]:
    """Each of `PLAIN_PROMPTS` at seeds 0..`seeds`-1: how many images have the right background, colour, shape."""
    from ...generation import GenerationRequest

    rows = []
    for prompt, colour, shape, background in PLAIN_PROMPTS:
        row = {"prompt": prompt, "background": 0, "colour": 0, "shape": 0, "seeds": seeds}
        for seed in range(seeds):
            seen = inspect(engine.generate(GenerationRequest(prompt=prompt, model=model, seed=seed, **overrides)).images[0])
            for k, ok in agreement(seen, background, colour, shape).items():
                row[k] += ok
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    from ...config import Settings
    from ...engine.device import quiet_libraries
    from ...root import build_engine

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100, help="number of held-out captions (default 100)")
    p.add_argument("--model", default="solvent-tiny")
    p.add_argument("--steps", type=int)
    p.add_argument("--sampler")
    p.add_argument("--cfg", type=float)
    p.add_argument("--grid", help="save a contact sheet of the images to this PNG")
    p.add_argument("--validation", action="store_true",
                   help=f"score the validation captions (seed {VALIDATION_SEED}) used to choose settings, not the evaluation's")
    p.add_argument("--plain", action="store_true",
                   help="instead, count right background/colour/shape over 10 seeds of a few prompts that name no position")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    quiet_libraries()
    overrides = {k: v for k, v in (("steps", args.steps), ("sampler", args.sampler), ("cfg_scale", args.cfg)) if v}
    if args.plain:
        rows = plain(build_engine(Settings()), model=args.model, **overrides)
        if args.json:
            print(json.dumps(rows, indent=2))
            return
        for r in rows:
            print(f"{r['prompt']:<42} background {r['background']:>2}/{r['seeds']}  colour {r['colour']:>2}/{r['seeds']}"
                  f"  shape {r['shape']:>2}/{r['seeds']}")
        return
    report = evaluate(build_engine(Settings()), args.n, args.model, args.grid,
                      VALIDATION_SEED if args.validation else EVAL_SEED, **overrides)
    if args.json:
        print(json.dumps({"n": report.n, "scores": report.scores, "seconds_per_image": report.seconds_per_image,
                          "failures": report.failures[:20]}, indent=2))
    else:
        print(report.table())


if __name__ == "__main__":
    main()
