"""The architecture of `solvent-tiny`: Stable Diffusion's, scaled down.

VAE with a 4× downsampling (64×64 pixels ↔ 16×16×8 latents), a CLIP text encoder over the real
CLIP BPE vocabulary (so any English prompt tokenises; unseen words are ignored), a two-level
UNet with cross-attention, DDPM's linear noise schedule and v-prediction (as SD 2.x).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

RESOLUTION = 64

# 8 latent channels, not SD's 4: on validation scenes a 4-channel VAE's own round trip kept 63–72% of
# shapes (small stars and triangles decode as blobs), an 8-channel one 87% (same widths, 1,500 steps;
# both read by the first scene checker).
VAE = dict(
    in_channels=3, out_channels=3, latent_channels=8, block_out_channels=[16, 32, 32], layers_per_block=1,
    down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3, norm_num_groups=8,
    sample_size=RESOLUTION, scaling_factor=1.0,
)
TEXT = dict(
    vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=64, bos_token_id=49406,
    eos_token_id=49407, pad_token_id=49407,
)
UNET = dict(
    sample_size=RESOLUTION // 4, in_channels=8, out_channels=8, layers_per_block=1, block_out_channels=[32, 64, 128],
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], cross_attention_dim=64,
    attention_head_dim=8,
    norm_num_groups=32,
)
# DDPM's linear betas (terminal signal 0.6% vs 6.8% with SD's scaled-linear) and trailing timestep
# spacing (sampling starts at t = 999): on 16×16 latents the leftover signal at SD's last step
# carries the background colour, so a model trained on it ignores the prompt's background. With so
# little signal left, the UNet predicts v (as SD 2.x does), not epsilon: see train.train_unet.
SCHEDULER = dict(
    num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
    prediction_type="v_prediction", timestep_spacing="trailing", steps_offset=0, clip_sample=False,
)


def build_pipeline(seed: int = 0):
    """A freshly initialised (untrained) `solvent-tiny` pipeline on the CPU, fp32."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ...engine.checkpoint import tokenizer

    torch.manual_seed(seed)
    vae = AutoencoderKL(**VAE)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT))
    unet = UNet2DConditionModel(**UNET)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer(openclip=False), unet=unet,
        scheduler=DDPMScheduler(**SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


def save_pipeline(pipe, out: Path, extra: dict | None = None) -> dict:
    """Write the pipeline as a diffusers folder with fp16 safetensors and a sha256 manifest.

    The tokenizer is not copied: loaders fall back to the CLIP tokenizer shipped with the engine.
    """
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
    pipe.to(torch.float32)
    shutil.rmtree(tmp / "tokenizer", ignore_errors=True)
    files = []
    for p in sorted(tmp.rglob("*")):
        if p.is_file():
            files.append({"path": str(p.relative_to(tmp)), "size": p.stat().st_size,
                          "sha256": hashlib.sha256(p.read_bytes()).hexdigest()})
    digest = hashlib.sha256("".join(f"{f['path']}\0{f['sha256']}\n" for f in files).encode()).hexdigest()
    manifest = {"files": files, "sha256": digest, **(extra or {})}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return manifest
