"""Tiny upscalers in the real key layouts of their original repositories, written by the tests: ESRGAN's
(`model.0…`, `model.1.sub.N.RDB1.conv1.0…`, as 4x-UltraSharp and the A1111-era files hold it), SwinIR's, and
Real-ESRGAN's BasicSR checkpoint (`{"params_ema": …}` in a `.pth`). The modules are spandrel's own copies of the
original architectures, so their state dicts are those layouts."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from solvent.engine.upscale import spandrel


def esrgan(scale: int = 4, seed: int = 0):
    spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    return ESRGAN(num_filters=8, num_blocks=1, scale=scale).eval()


def swinir(seed: int = 1):
    spandrel()
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(seed)
    return SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2, mlp_ratio=2.0,
                  upsampler="pixelshuffledirect").eval()


def write(model, path: Path) -> Path:
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".pth":
        torch.save({"params_ema": sd}, str(path))
    else:
        save_file(sd, str(path))
    return path
