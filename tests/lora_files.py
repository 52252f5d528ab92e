"""LoRA files written in the kohya/AUTOMATIC1111 and diffusers (peft) key layouts."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

RANK = 4


def _pair(g: torch.Generator, out_f: int, in_f: int) -> tuple[torch.Tensor, torch.Tensor]:
    down = torch.randn(RANK, in_f, generator=g) * 0.5
    up = torch.randn(out_f, RANK, generator=g) * 0.5
    return down, up


def _targets(unet) -> list[tuple[str, torch.nn.Linear]]:
    """What kohya's trainer targets in the UNet: every attention projection."""
    return [(n, m) for n, m in unet.named_modules() if isinstance(m, torch.nn.Linear)
            and n.endswith(("to_q", "to_k", "to_v", "to_out.0"))]


def write_kohya(unet, text_encoder, path: Path, seed: int = 0, sdxl: bool = False) -> None:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, mod in _targets(unet):
        key = "lora_unet_" + name.replace(".", "_")
        down, up = _pair(g, mod.out_features, mod.in_features)
        sd[f"{key}.lora_down.weight"], sd[f"{key}.lora_up.weight"] = down, up
        sd[f"{key}.alpha"] = torch.tensor(float(RANK))
    for name, mod in text_encoder.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.endswith(("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")):
            name = name if name.startswith("text_model.") else "text_model." + name
            key = ("lora_te2_" if sdxl else "lora_te_") + name.replace(".", "_")
            down, up = _pair(g, mod.out_features, mod.in_features)
            sd[f"{key}.lora_down.weight"], sd[f"{key}.lora_up.weight"] = down, up
            sd[f"{key}.alpha"] = torch.tensor(float(RANK))
    save_file(sd, str(path))


def write_diffusers(unet, path: Path, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, mod in _targets(unet):
        down, up = _pair(g, mod.out_features, mod.in_features)
        sd[f"unet.{name}.lora_A.weight"], sd[f"unet.{name}.lora_B.weight"] = down, up
    save_file(sd, str(path))
