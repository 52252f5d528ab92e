"""`python -m solvent.tiny.train` itself, at a few steps a stage: it writes a diffusers folder with its
manifest that diffusers loads and renders, and two runs
with the same seed write byte-identical weights."""

from __future__ import annotations

import json

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from solvent.engine.checkpoint import tokenizer
from solvent.tiny.train import main

FEW = ["--vae-steps", "3", "--pool", "48", "--text-steps", "2", "--unet-steps", "3",
       "--unet-batch", "4", "--vae-batch", "4"]


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
