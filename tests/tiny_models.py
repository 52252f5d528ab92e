"""Tiny SD 1.x / SD 2.x / SDXL models built in code (diffusers' test style) and written to disk
in the real single-file key layout or as diffusers folders."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from solvent.engine.checkpoint import clip_heads, tokenizer, unet_heads
from solvent.generation.families import shipped_config

from .ldm_layout import clip_to_ldm, openclip_to_ldm, unet_to_ldm, vae_to_ldm

CH = [32, 64]


def _unet(family: str, cross: int, **extra) -> UNet2DConditionModel:
    torch.manual_seed(0)
    cfg = shipped_config(family, "unet")
    down = ["DownBlock2D", "CrossAttnDownBlock2D"]
    cfg.update(block_out_channels=CH, layers_per_block=1, down_block_types=down,
               up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], cross_attention_dim=cross,
               attention_head_dim=unet_heads(family, CH), sample_size=8, **extra)
    return UNet2DConditionModel.from_config(cfg)


def _vae(family: str) -> AutoencoderKL:
    torch.manual_seed(1)
    cfg = shipped_config(family, "vae")
    cfg.update(block_out_channels=[32, 32], down_block_types=["DownEncoderBlock2D"] * 2,
               up_block_types=["UpDecoderBlock2D"] * 2, layers_per_block=1, sample_size=16)
    return AutoencoderKL.from_config(cfg)


def _clip(family: str, template: str, hidden: int, layers: int, cls=CLIPTextModel, **extra):
    torch.manual_seed(2 + layers)
    cfg = shipped_config(family, template)
    cfg.update(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
               num_attention_heads=clip_heads(hidden), **extra)
    return cls(CLIPTextConfig(**cfg))


def build(family: str) -> dict:
    """Components of a tiny pipeline of `family` (fp32, random weights, seeded)."""
    if family == "sd1":
        return {"unet": _unet("sd1", 32), "vae": _vae("sd1"), "text_encoder": _clip("sd1", "text_encoder", 32, 2),
                "tokenizer": tokenizer(False)}
    if family == "sd2":
        return {"unet": _unet("sd2", 64), "vae": _vae("sd2"), "text_encoder": _clip("sd2", "text_encoder", 64, 2),
                "tokenizer": tokenizer(True)}
    te2 = _clip("sdxl", "text_encoder_2", 64, 2, CLIPTextModelWithProjection, projection_dim=32)
    unet = _unet("sdxl", 32 + 64, transformer_layers_per_block=[1, 2], addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=32 + 6 * 8)
    return {"unet": unet, "vae": _vae("sdxl"), "text_encoder": _clip("sdxl", "text_encoder", 32, 2),
            "tokenizer": tokenizer(False), "text_encoder_2": te2, "tokenizer_2": tokenizer(True)}


def to_ldm(family: str, comps: dict) -> dict:
    """The state dict of a whole pipeline as a real single-file checkpoint would hold it."""
    sd = {}
    sd.update(unet_to_ldm(comps["unet"].state_dict(), dict(comps["unet"].config)))
    sd.update(vae_to_ldm(comps["vae"].state_dict(), dict(comps["vae"].config)))
    te = comps["text_encoder"].state_dict()
    if family == "sd1":
        sd.update(clip_to_ldm(te, "cond_stage_model.transformer."))
    elif family == "sd2":
        prefix = "cond_stage_model.model."
        sd.update(openclip_to_ldm(te, prefix))
        # Real SD 2.x files hold all 24 OpenCLIP blocks and the projection; diffusers uses 23.
        n = comps["text_encoder"].config.num_hidden_layers
        hidden = comps["text_encoder"].config.hidden_size
        g = torch.Generator().manual_seed(9)
        for k, v in list(sd.items()):
            if k.startswith(f"{prefix}transformer.resblocks.0."):
                sd[k.replace("resblocks.0.", f"resblocks.{n}.")] = torch.randn(v.shape, generator=g)
        sd[prefix + "text_projection"] = torch.randn(hidden, hidden, generator=g)
    else:
        sd.update(clip_to_ldm(te, "conditioner.embedders.0.transformer."))
        sd.update(openclip_to_ldm(comps["text_encoder_2"].state_dict(), "conditioner.embedders.1.model."))
    return {k: v.contiguous() for k, v in sd.items()}


def write_checkpoint(family: str, path: Path, comps: dict | None = None) -> dict:
    comps = comps or build(family)
    save_file(to_ldm(family, comps), str(path))
    return comps


def build_refiner() -> dict:
    """Components of a tiny SDXL refiner: the OpenCLIP encoder alone, time ids with the aesthetic score."""
    te2 = _clip("sdxl", "text_encoder_2", 64, 2, CLIPTextModelWithProjection, projection_dim=32)
    unet = _unet("sdxl", 64, transformer_layers_per_block=[1, 2], addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=32 + 5 * 8)
    return {"unet": unet, "vae": _vae("sdxl"), "text_encoder_2": te2, "tokenizer_2": tokenizer(True)}


def refiner_to_ldm(comps: dict) -> dict:
    sd = {}
    sd.update(unet_to_ldm(comps["unet"].state_dict(), dict(comps["unet"].config)))
    sd.update(vae_to_ldm(comps["vae"].state_dict(), dict(comps["vae"].config)))
    sd.update(openclip_to_ldm(comps["text_encoder_2"].state_dict(), "conditioner.embedders.0.model."))
    return {k: v.contiguous() for k, v in sd.items()}
