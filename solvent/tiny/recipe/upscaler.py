"""`solvent-tiny-upscale`: a ×4 super-resolution model trained on the scene generator, shipped in the package.

    python -m solvent.tiny.recipe.upscaler train [--steps 2000]     # writes solvent/tiny/upscale/
    python -m solvent.tiny.recipe.upscaler evaluate [--n 100]       # PSNR against Lanczos; the scene checker

The architecture is Real-ESRGAN's compact network (SRVGGNetCompact, as spandrel defines it), so the file is an
ordinary upscaler any spandrel user (ComfyUI, InvokeAI, chaiNNer) can load. Training pairs are scenes drawn at
256² as true zooms of their 64² selves (one 1024² canvas, box-downsampled to each size), drawn once into a pool and
turned and flipped at random, with a little noise on the small one so it tolerates the generator's own output; the loss is L1. Held out: the evaluation's scenes use
seeds training never draws from, and the single-object captions `scenes.held_out` keeps from solvent-tiny.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .scenes import COLOURS, SIZE, _render, random_scene

SCALE = 4
HR = SIZE * SCALE  # 256
TRAIN_SEED = 77
EVAL_SEED = 2468  # scenes no training step draws (training draws from TRAIN_SEED's stream)
ARCH = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 32, "num_conv": 8, "upscale": SCALE, "act_type": "prelu"}


def upscaler_dir() -> Path:
    from .. import upscaler_dir as shipped

    return shipped()


def pair(scene) -> tuple[Image.Image, Image.Image]:
    """(the 64² image, the 256² one): one 1024² canvas box-downsampled to each."""
    bg = COLOURS[scene.background]
    big = _render(scene, SIZE, 16, SIZE * 16, "RGB", bg, lambda o: COLOURS[o.colour])
    return big.resize((SIZE, SIZE), Image.Resampling.BOX), big.resize((HR, HR), Image.Resampling.BOX)


def build():
    from ...engine.upscale import spandrel

    spandrel()
    from spandrel.architectures.Compact import Compact  # spandrel's SRVGGNetCompact

    return Compact(**ARCH)


def _tensor(images: list[Image.Image]):
    import torch

    return torch.from_numpy(np.stack([np.asarray(i, dtype=np.float32) / 255 for i in images])).permute(0, 3, 1, 2)


def train(steps: int = 2000, batch: int = 8, pool: int = 640, lr: float = 1e-3, out: Path | None = None,
          seed: int = TRAIN_SEED, log_every: int = 250) -> dict:
    """Train on `pool` scenes drawn once (whole 64² → 256² pairs), each batch flipped and turned at random (the
    scenes' shapes and captions do not depend on it, so that is 8× the pairs)."""
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    pairs = [pair(random_scene(rng)) for _ in range(pool)]
    xs_all, ys_all = _tensor([a for a, _ in pairs]), _tensor([b for _, b in pairs])
    model = build().train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    losses = []
    for step in range(1, steps + 1):
        idx = torch.tensor([rng.randrange(pool) for _ in range(batch)])
        xs, ys = xs_all[idx], ys_all[idx]
        turns, flip = rng.randrange(4), rng.random() < 0.5
        xs, ys = torch.rot90(xs, turns, (2, 3)), torch.rot90(ys, turns, (2, 3))
        if flip:
            xs, ys = xs.flip(3), ys.flip(3)
        if rng.random() < 0.25:  # the generator's images are not as clean as the drawn ones
            xs = (xs + torch.randn_like(xs) * rng.uniform(0, 2 / 255)).clamp(0, 1)
        # squared error: the edges (where Lanczos rings and blurs) weigh most, and it is what PSNR measures
        loss = torch.nn.functional.mse_loss(model(xs), ys)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % log_every == 0 or step == steps:
            print(f"step {step:>5}/{steps}  MSE {np.mean(losses[-log_every:]):.6f}  {time.perf_counter() - t0:.0f} s",
                  flush=True)
    model.eval()
    recipe = {"architecture": "SRVGGNetCompact (Real-ESRGAN compact)", "arch": ARCH, "steps": steps, "batch": batch,
              "pool": pool, "lr": lr, "seed": seed, "train_seconds": round(time.perf_counter() - t0, 1),
              "loss": "MSE", "final_mse": round(float(np.mean(losses[-log_every:])), 7)}
    if out is not None:
        save(model, out, recipe)
    return recipe


def save(model, out: Path, recipe: dict) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.safetensors"
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))
    recipe["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def evaluate(n: int = 100, path: Path | None = None, seed: int = EVAL_SEED, device: str = "cpu") -> dict:
    """Held-out scenes: PSNR of the model's ×4 and of Lanczos' against the true 256² image, and how often the scene
    checker reads the same background, colour, shape and position from the upscaled image as from the original."""
    import torch

    from ...engine.upscale import load_upscaler, upscale_image
    from .checker import agreement, inspect
    from .evaluate import eval_scenes

    model = load_upscaler(path or (upscaler_dir() / "model.safetensors"))
    rng = random.Random(seed)
    # half the single-object captions solvent-tiny is scored on, half busier scenes from an unseen seed
    scenes = eval_scenes(n // 2, seed) + [random_scene(rng) for _ in range(n - n // 2)]
    ours, lanczos, agree_orig, agree_up, t = [], [], 0, 0, 0.0
    for scene in scenes:
        small, big = pair(scene)
        t0 = time.perf_counter()
        up = upscale_image(model, small, torch.device(device), torch.float32)
        t += time.perf_counter() - t0
        base = small.resize((HR, HR), Image.Resampling.LANCZOS)
        truth = np.asarray(big)
        ours.append(_psnr(np.asarray(up), truth))
        lanczos.append(_psnr(np.asarray(base), truth))
        o = scene.main
        agree_orig += all(agreement(inspect(small), scene.background, o.colour, o.shape, o.position).values())
        agree_up += all(agreement(inspect(up), scene.background, o.colour, o.shape, o.position).values())
    return {"n": n, "psnr_db": round(float(np.median(ours)), 2), "lanczos_psnr_db": round(float(np.median(lanczos)), 2),
            "psnr_gain_db": round(float(np.median(np.array(ours) - np.array(lanczos))), 2),
            "wins": sum(a > b for a, b in zip(ours, lanczos, strict=True)),
            "checker_original": round(agree_orig / n, 3), "checker_upscaled": round(agree_up / n, 3),
            "seconds_per_image": round(t / n, 4)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train and write solvent/tiny/upscale/ (then evaluate it)")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--out", type=Path, default=None)
    e = sub.add_parser("evaluate", help="PSNR against Lanczos and the scene checker on held-out scenes")
    e.add_argument("--n", type=int, default=100)
    e.add_argument("--model", type=Path, default=None)
    args = p.parse_args(argv)
    if args.cmd == "train":
        out = args.out or upscaler_dir()
        recipe = train(args.steps, args.batch, out=out)
        recipe["evaluation"] = evaluate(100, out / "model.safetensors")
        (out / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
        print(json.dumps(recipe["evaluation"], indent=2))
    else:
        print(json.dumps(evaluate(args.n, args.model), indent=2))


if __name__ == "__main__":
    main()
