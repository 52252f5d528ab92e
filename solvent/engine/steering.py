"""What steers a denoising call besides the prompt, attached to the loaded UNet for one call and removed after:
T2I-Adapter features, A1111's "My prompt is more important" ControlNet weighting, and IP-Adapter image
attention.

- **T2I-Adapters** run once on their control maps; a pre-hook on the UNet adds their features
  (`down_intrablock_additional_residuals`) at every step inside each unit's guidance window, as diffusers'
  adapter pipelines do, so they combine with any pipeline: text-to-image, image-to-image, inpainting and
  ControlNet.
- **Control modes** follow sd-webui-controlnet: `prompt` scales a ControlNet's residuals by
  0.825^(n−1−k) (the deepest, most semantic ones keep their weight); `controlnet` is diffusers' guess mode
  for ControlNets, and for a T2I-Adapter its features reach the conditional half of the batch only.
- **IP-Adapters**: each reference image is one adapter in diffusers' terms (the same weights shared when
  several references use one file), so each adds its own image attention scaled by `weight × scale`.
  The converted processors are cached per combination; the model's own are put back after the call.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from PIL import Image

SOFT = 0.825  # sd-webui-controlnet's soft-injection base


def soft_weights(n: int) -> list[float]:
    """Per-residual weights of "My prompt is more important" for `n` residuals (SD 1.x: 13)."""
    return [SOFT ** float(n - 1 - k) for k in range(n)]


def adapter_input(control_map: Image.Image, in_channels: int, device, dtype) -> torch.Tensor:
    """A control map as a T2I-Adapter reads it: [1, C, H, W] in 0…1 (grey for one-channel adapters)."""
    img = control_map.convert("L" if in_channels == 1 else "RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr[None, ..., None] if arr.ndim == 2 else arr[None]
    return torch.from_numpy(arr.transpose(0, 3, 1, 2).copy()).to(device=device, dtype=dtype)


def _active(i: int, n: int, start: float, end: float) -> bool:
    """diffusers' ControlNet guidance window (and its adapter pipelines' conditioning factor, for start 0)."""
    return not (i / n < start or (i + 1) / n > end)


@contextmanager
def t2i_features(unet, pipe, units: list[tuple[list[torch.Tensor], Any]]):
    """Add each unit's (features, ControlUnit) to the UNet's down blocks while the pipeline runs."""
    if not units:
        yield
        return
    calls = [0]

    def pre(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        n = getattr(pipe, "_num_timesteps", None) or 1
        i = calls[0]
        calls[0] += 1
        total = None
        rows = sample.shape[0]
        for feats, unit in units:
            if not _active(i, n, unit.guidance_start, unit.guidance_end):
                continue
            weights = soft_weights(len(feats)) if unit.control_mode == "prompt" else [1.0] * len(feats)
            add = []
            for f, w in zip(feats, weights, strict=True):
                f = (f * w).repeat(rows // f.shape[0], 1, 1, 1)
                if unit.control_mode == "controlnet" and getattr(pipe, "do_classifier_free_guidance", False):
                    f[: rows // 2] = 0  # the unconditional half: [uncond, cond] in diffusers' batches
                add.append(f)
            total = add if total is None else [a + b for a, b in zip(total, add, strict=True)]
        if total is not None:
            kwargs["down_intrablock_additional_residuals"] = total
        return args, kwargs

    handle = unet.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def prompt_weighted(nets: list[tuple[torch.nn.Module, bool]]):
    """For each (ControlNet, is "prompt" mode) in call order: scale its residuals by `soft_weights`. One net
    used by several units is called once per unit per step, in order, so its hook cycles over them."""
    by_net: dict[int, tuple[torch.nn.Module, list[bool]]] = {}
    for net, soft in nets:
        by_net.setdefault(id(net), (net, []))[1].append(soft)
    handles = []
    for net, modes in by_net.values():
        if not any(modes):
            continue
        count = [0]

        def post(module, args, output, modes=modes, count=count):
            soft = modes[count[0] % len(modes)]
            count[0] += 1
            if not soft:
                return output
            down, mid = output[0], output[1]
            w = soft_weights(len(down) + 1)
            return (tuple(d * x for d, x in zip(down, w, strict=False)), mid * w[-1], *output[2:])

        handles.append(net.register_forward_hook(post))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class IPAdapters:
    """Converted IP-Adapter processors of one loaded UNet, per combination of adapter files (cached)."""

    MAX_SETS = 4

    def __init__(self, unet):
        self.unet = unet
        self.sets: dict[tuple, tuple[dict, torch.nn.Module]] = {}

    def _build(self, key: tuple, states: dict[str, dict]) -> tuple[dict, torch.nn.Module]:
        unet = self.unet
        own = dict(unet.attn_processors)
        own_proj, own_type = unet.encoder_hid_proj, unet.config.encoder_hid_dim_type
        try:
            unet._load_ip_adapter_weights([states[k] for k in key], low_cpu_mem_usage=False)
            procs, proj = dict(unet.attn_processors), unet.encoder_hid_proj  # (a resampler has processors too)
        finally:
            unet.encoder_hid_proj = own_proj
            unet.set_attn_processor(own)
            unet.config.encoder_hid_dim_type = own_type
        first: dict[str, int] = {}
        for i, name in enumerate(key):  # references of one file share its weights
            j = first.setdefault(name, i)
            if j != i:
                proj.image_projection_layers[i] = proj.image_projection_layers[j]
                for p in procs.values():
                    if hasattr(p, "to_k_ip"):
                        p.to_k_ip[i], p.to_v_ip[i] = p.to_k_ip[j], p.to_v_ip[j]
        return procs, proj

    @contextmanager
    def attached(self, key: tuple, states, scales: list[float]):
        """The UNet with the IP-Adapter set `key` (one file id per reference) at `scales`, for one call."""
        if key not in self.sets:
            if len(self.sets) >= self.MAX_SETS:
                self.sets.pop(next(iter(self.sets)))
            self.sets[key] = self._build(key, states() if callable(states) else states)
        procs, proj = self.sets[key]
        for p in procs.values():
            if hasattr(p, "to_k_ip"):
                p.scale = list(scales)
        unet = self.unet
        own = dict(unet.attn_processors)
        own_proj, own_type = unet.encoder_hid_proj, unet.config.encoder_hid_dim_type
        unet.encoder_hid_proj = proj
        unet.set_attn_processor(dict(procs))
        unet.config.encoder_hid_dim_type = "ip_image_proj"
        try:
            yield
        finally:  # exactly what was there before (the model's own, unless someone else attached theirs)
            unet.encoder_hid_proj = own_proj
            unet.set_attn_processor(own)
            unet.config.encoder_hid_dim_type = own_type
