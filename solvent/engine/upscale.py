"""Upscaler models (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, … through spandrel) and tiled upscaling.

spandrel recognises an architecture from a state dict's keys and shapes and builds it; it imports torchvision for
two architectures that are not upscalers (LaMa inpainting, RestoreFormer face restoration), and PyPI's
torchvision does not import beside torch 2.13, so when torchvision is absent a stub stands in: using either of
those two architectures raises a clear error, nothing else touches it.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import UnsupportedModel

TILE = 512  # input pixels per tile side: bounds memory on any image size
OVERLAP = 32  # input pixels two tiles share; blended with a linear ramp so no seam shows


def _torchvision_stub() -> list[str]:
    """Stand-in modules for torchvision when it does not import; returns their names (to remove again)."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - absent, or a build that does not import beside this torch
        def refuse(*_a, **_k):
            raise UnsupportedModel("this architecture needs torchvision, which this installation lacks (PyPI's "
                                   "torchvision does not import beside torch 2.13); it is not an upscaler Solvent "
                                   "serves.", field="path")

        names = ["torchvision", "torchvision.transforms", "torchvision.transforms.functional"]
        for name in names:
            sys.modules[name] = types.ModuleType(name)
        fn = sys.modules["torchvision.transforms.functional"]
        fn.InterpolationMode = type("InterpolationMode", (), {"BILINEAR": "bilinear", "NEAREST": "nearest",
                                                              "BICUBIC": "bicubic"})
        fn.rotate = fn.normalize = refuse
        sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
        sys.modules["torchvision.transforms"].functional = fn
        return names
    return []


def spandrel():
    """spandrel, imported with the stand-in while it loads its architectures (they keep the names they took);
    the stand-in leaves `sys.modules` at once, so nothing else (transformers probes for torchvision) sees it."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    added = _torchvision_stub()
    try:
        import spandrel as sp
    finally:
        for name in added:
            sys.modules.pop(name, None)
    return sp


def describe(state: dict) -> Any | None:
    """spandrel's descriptor of a super-resolution model's state dict, or None when it is no upscaler spandrel
    knows (so other kinds can be tried)."""
    sp = spandrel()
    try:
        desc = sp.ModelLoader().load_from_state_dict(state)
    except (sp.UnsupportedModelError, KeyError, ValueError, RuntimeError, IndexError):
        return None
    if not isinstance(desc, sp.ImageModelDescriptor) or desc.purpose != "SR" or desc.scale < 2:
        return None
    return desc


def upscaler_details(path: Path) -> dict | None:
    """`{"scale": 4, "architecture": "ESRGAN", "channels": 3}` for an upscaler file, else None."""
    from safetensors.torch import load_file

    desc = describe(load_file(str(path)))
    if desc is None:
        return None
    return {"scale": int(desc.scale), "architecture": desc.architecture.name, "channels": int(desc.input_channels)}


def load_upscaler(path: Path):
    from safetensors.torch import load_file

    desc = describe(load_file(str(path)))
    if desc is None:
        raise UnsupportedModel(f"`upscaler` {str(path)!r} is not an upscaler spandrel recognises.", field="upscaler",
                               value=str(path))
    return desc.eval()


def _ramp(n: int, overlap: int, first: bool, last: bool):
    """Blending weights along one side of a tile: rising over the overlap it shares with the previous tile,
    falling over the next one's, 1 between (and 1 at the image's own edges)."""
    import torch

    w = torch.ones(n)
    k = min(overlap, n // 2)
    if k:
        ramp = torch.linspace(0, 1, k + 2)[1:-1]
        if not first:
            w[:k] = ramp
        if not last:
            w[-k:] = ramp.flip(0)
    return w


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


def upscale_tensor(model, x, tile: int = TILE, overlap: int = OVERLAP):
    """Run an upscaler over `x` ([1, C, H, W] in 0..1) tile by tile; overlaps are blended with linear ramps."""
    import torch

    _, c, h, w = x.shape
    s = int(model.scale)
    if h <= tile and w <= tile:
        return model(x).clamp(0, 1)
    out = torch.zeros(1, c, h * s, w * s, dtype=x.dtype, device=x.device)
    weight = torch.zeros(1, 1, h * s, w * s, dtype=x.dtype, device=x.device)
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    for i, y in enumerate(ys):
        for j, x0 in enumerate(xs):
            th, tw = min(tile, h - y), min(tile, w - x0)
            part = model(x[:, :, y:y + th, x0:x0 + tw]).clamp(0, 1)
            wy = _ramp(th * s, overlap * s, i == 0, i == len(ys) - 1).to(x)
            wx = _ramp(tw * s, overlap * s, j == 0, j == len(xs) - 1).to(x)
            m = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, y * s:(y + th) * s, x0 * s:(x0 + tw) * s] += part * m
            weight[:, :, y * s:(y + th) * s, x0 * s:(x0 + tw) * s] += m
    return out / weight.clamp_min(1e-8)


def upscale_image(model, image: Image.Image, device=None, dtype=None, tile: int = TILE,
                  overlap: int = OVERLAP) -> Image.Image:
    """An RGB image upscaled by the model's own factor (tiled: any size fits in bounded memory)."""
    import numpy as np
    import torch

    device = device or torch.device("cpu")
    dtype = dtype or torch.float32
    model.to(device, dtype)
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].to(device, dtype)
    with torch.inference_mode():
        y = upscale_tensor(model, x, tile, overlap)
    out = (y[0].float().permute(1, 2, 0).cpu().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(out)
