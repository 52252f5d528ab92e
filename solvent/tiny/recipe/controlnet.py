"""A ControlNet for `solvent-tiny`: a silhouette decides where the object goes and what shape it has.

    python -m solvent.tiny.recipe.controlnet train [--steps 1500] [--out DIR]
    python -m solvent.tiny.recipe.controlnet evaluate [--n 100] [--model DIR]

Recipe (reproducible, seeded; CPU is enough):
1. Start from solvent-tiny's own UNet (`ControlNetModel.from_unet`: its encoder copied, the zero
   convolutions zero), with a control-image encoder one stride shorter than SD's (the tiny VAE
   downsamples 4×). The UNet, VAE and text encoder stay frozen.
2. Train on single-object scenes from the scene generator: the control image is the object's white
   silhouette on black, and the caption names colour, shape and background but never the position, so
   the silhouette is the only place to learn it from. Loss: the UNet's v-prediction with the
   ControlNet's residuals added, as in the ControlNet paper; AdamW, lr 1e-4.
3. Judge on held-out scenes (combinations training never shows): the scene checker reads the image;
   position counts as right when it is within one grid cell of the silhouette's (the issue's measure).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .. import controlnet_dir, weights_dir
from .scenes import POSITIONS, Scene, draw, object_mask, random_scene

CONDITIONING_CHANNELS = (16, 32, 64)
TRAIN_SEED, EVAL_SEED = 0, 4242


def control_image(scene: Scene) -> Image.Image:
    """The main object's silhouette, white on black, at 64²."""
    main = Scene(scene.background, [scene.main])
    mask = object_mask(main, 64)
    return Image.fromarray((mask * 255).round().astype(np.uint8)).convert("RGB")


def unplaced_caption(scene: Scene, rng: random.Random) -> str:
    o = scene.main
    size = f"{o.size} " if rng.random() < 0.5 else ""
    article = "an" if (size or o.colour)[0] in "aeiou" else "a"
    return f"{article} {size}{o.colour} {o.shape} on {'an' if scene.background[0] in 'aeiou' else 'a'} " \
           f"{scene.background} background"


def _components():
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    from ...engine.checkpoint import tokenizer

    root = weights_dir()
    unet = UNet2DConditionModel.from_pretrained(str(root / "unet"), torch_dtype=torch.float32).eval()
    vae = AutoencoderKL.from_pretrained(str(root / "vae"), torch_dtype=torch.float32).eval()
    te = CLIPTextModel.from_pretrained(str(root / "text_encoder"), torch_dtype=torch.float32).eval()
    sched = DDPMScheduler.from_pretrained(str(root / "scheduler"))
    for m in (unet, vae, te):
        m.requires_grad_(False)
    return unet, vae, te, tokenizer(openclip=False), sched


def train(steps: int, batch: int, out: Path, seed: int = TRAIN_SEED, lr: float = 1e-4) -> dict:
    import torch
    import torch.nn.functional as F
    from diffusers import ControlNetModel
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = random.Random(f"controlnet-{seed}")
    unet, vae, te, tok, sched = _components()
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS).train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-2)
    cache: dict[str, torch.Tensor] = {}

    def embed(texts: list[str]) -> torch.Tensor:
        missing = [t for t in set(texts) if t not in cache]
        if missing:
            ids = tok(missing, padding="max_length", max_length=tok.model_max_length, truncation=True,
                      return_tensors="pt").input_ids
            with torch.no_grad():
                for t, e in zip(missing, te(ids)[0], strict=True):
                    cache[t] = e
        return torch.stack([cache[t] for t in texts])

    losses, t0 = [], time.perf_counter()
    bar = tqdm(range(steps), desc="controlnet", mininterval=5)
    for _ in bar:
        scenes = [random_scene(rng, max_objects=1) for _ in range(batch)]
        x = torch.tensor(np.stack([np.asarray(draw(s)) for s in scenes]), dtype=torch.float32).permute(0, 3, 1, 2)
        x = x / 127.5 - 1
        cond = torch.tensor(np.stack([np.asarray(control_image(s)) for s in scenes]),
                            dtype=torch.float32).permute(0, 3, 1, 2) / 255
        texts = [unplaced_caption(s, rng) if rng.random() > 0.1 else "" for s in scenes]
        with torch.no_grad():
            lat = vae.encode(x).latent_dist.sample() * vae.config.scaling_factor
        noise = torch.randn_like(lat)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,))
        noisy = sched.add_noise(lat, noise, t)
        target = sched.get_velocity(lat, noise, t) if sched.config.prediction_type == "v_prediction" else noise
        ehs = embed(texts)
        down, mid = net(noisy, t, encoder_hidden_states=ehs, controlnet_cond=cond, return_dict=False)
        pred = unet(noisy, t, encoder_hidden_states=ehs, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid).sample
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    net.eval()
    out.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(out, safe_serialization=True)
    report = {"steps": steps, "batch": batch, "seed": seed, "lr": lr, "final_loss": round(float(np.mean(losses[-100:])), 5),
              "minutes": round((time.perf_counter() - t0) / 60, 1)}
    return stamp(out, report)


def stamp(out: Path, report: dict) -> dict:
    """Write the recipe and the weights' sha256 beside them (the store's record reads both)."""
    import hashlib

    digest = hashlib.sha256((out / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    report = {**report, "sha256": digest}
    (out / "recipe.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    return report


def _cell(position: str) -> tuple[int, int]:
    fx, fy = POSITIONS[position]
    return round(fx * 4) - 1, round(fy * 4) - 1


def evaluate(engine, model_id: str | None, n: int = 100, seed: int = EVAL_SEED, steps: int | None = None) -> dict:
    """Held-out scenes drawn by the silhouette: how often the checker reads the object within one grid cell
    of it (`position`; exactly in it: `position_exact`), with the right shape and colour (and background).
    `model_id` None runs the same prompts without the ControlNet: the baseline chance gives."""
    from ...generation import GenerationRequest
    from ...generation.control import ControlUnit
    from .checker import inspect
    from .scenes import held_out

    rng = random.Random(f"controlnet-eval-{seed}")
    scenes = []
    while len(scenes) < n:
        s = random_scene(rng, max_objects=1, allow_held_out=True)
        if held_out(s.main, s.background):
            scenes.append(s)
    hits = {"position": 0, "position_exact": 0, "shape": 0, "colour": 0, "background": 0}
    for i, s in enumerate(scenes):
        units = [ControlUnit(model_id, control_image(s))] if model_id else []
        req = GenerationRequest(prompt=unplaced_caption(s, random.Random(i)), seed=i, steps=steps, controls=units)
        seen = inspect(engine.generate(req).images[0])
        o = s.main
        hits["colour"] += seen.colour == o.colour
        hits["shape"] += seen.shape == o.shape
        hits["background"] += seen.background == s.background
        if seen.position is not None:
            a, b = _cell(seen.position), _cell(o.position)
            hits["position"] += max(abs(a[0] - b[0]), abs(a[1] - b[1])) <= 1
            hits["position_exact"] += a == b
    return {k: v / n for k, v in hits.items()} | {"n": n}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the tiny ControlNet")
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--out", type=Path, default=controlnet_dir())
    e = sub.add_parser("evaluate", help="score it on held-out scenes")
    e.add_argument("--n", type=int, default=100)
    e.add_argument("--model", type=Path, default=controlnet_dir())
    e.add_argument("--baseline", action="store_true", help="the same prompts without the ControlNet")
    args = p.parse_args(argv)
    if args.command == "train":
        print(json.dumps(train(args.steps, args.batch, args.out), indent=2))
        return
    import tempfile

    from ...config import Settings
    from ...root import build_engine

    engine = build_engine(Settings(home=Path(tempfile.mkdtemp(prefix="solvent-cn-eval-"))))
    engine.store.add(args.model, model_id="tiny-silhouette", link=True)
    print(json.dumps(evaluate(engine, None if args.baseline else "tiny-silhouette", args.n), indent=2))


if __name__ == "__main__":
    main()
