"""`python -m solvent.tiny.recipe.train` itself, at a few steps a stage: it writes a diffusers folder with its
manifest that diffusers loads and renders, and two runs
with the same seed write byte-identical weights."""

from __future__ import annotations

import json

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from solvent.engine.checkpoint import tokenizer
from solvent.tiny.recipe.scenes import Obj, Scene
from solvent.tiny.recipe.train import main, object_weights

FEW = ["--vae-steps", "3", "--pool", "48", "--text-steps", "2", "--unet-steps", "3",
       "--unet-batch", "4", "--vae-batch", "4", "--object-weight", "2"]


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def test_training_is_deterministic_and_writes_a_model_the_engine_loads(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    main([*FEW, "--out", str(a)])
    main([*FEW, "--out", str(b)])

    man = _manifest(a)
    assert man["trained"] is True and man["recipe"]["unet_steps"] == 3 and man["recipe"]["vae_steps"] == 3
    assert man["vae_final_mse"] > 0 and man["unet_final_loss"] > 0
    assert man["files"] == _manifest(b)["files"] and man["sha256"] == _manifest(b)["sha256"]

    pipe = StableDiffusionPipeline.from_pretrained(str(a), tokenizer=tokenizer(openclip=False), torch_dtype=torch.float32,
                                                   safety_checker=None,
                                                   feature_extractor=None, requires_safety_checker=False)
    img = pipe("a red circle", num_inference_steps=2, height=64, width=64,
               generator=torch.Generator().manual_seed(1)).images[0]
    assert img.size == (64, 64) and np.asarray(img).std() > 0


def test_object_weights_stress_the_cells_on_and_around_objects():
    scenes = [Scene("blue", [Obj("red", "square", "large", "top left")]), Scene("red", [Obj("blue", "star", "small", "centre")])]
    w = object_weights(scenes, 16, 3.0)
    assert w.shape == (2, 1, 16, 16)
    assert w[0, 0, 4, 4] == 4.0 and w[0, 0, 15, 15] == 1.0  # inside the square; the far corner
    # The square ends at pixel 29.2, a third into cell 7: cell 8, beside it, gets a third of the extra
    # weight; cell 9 none.
    assert 1.5 < w[0, 0, 8, 4] < 2.5 and w[0, 0, 9, 4] == 1.0
    assert 1.0 < w[1].mean() < w[0].mean()  # a small star stresses fewer cells than a large square
