"""Tiny IP-Adapters, CLIP image encoders and T2I-Adapters written in the key layouts people download:
IP-Adapter files as its authors publish them (`image_proj.*`, `ip_adapter.N.to_k_ip.weight` with N = 1, 3, 5…
over the UNet's attention processors), image encoders as transformers folders or single files, T2I-Adapters
as diffusers folders. Random weights, seeded; nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def write_image_encoder(path: Path, hidden: int = 32, projection: int = 16, image_size: int = 32,
                        single_file: bool = False, layers: int = 2, patch: int = 8, heads: int | None = None):
    """A `CLIPVisionModelWithProjection` (tiny by default; ViT-H is hidden 1280, projection 1024, 224 px, 32 layers,
    patch 14, 16 heads) saved as a folder (config.json + model.safetensors) or one file."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(21)
    cfg = CLIPVisionConfig(hidden_size=hidden, intermediate_size=hidden * 4 if hidden >= 768 else hidden * 2,
                           num_hidden_layers=layers, num_attention_heads=heads or (max(1, hidden // 64) if hidden >= 64
                                                                                   else 2),
                           image_size=image_size, patch_size=patch, projection_dim=projection, hidden_act="gelu")
    model = CLIPVisionModelWithProjection(cfg).eval()
    if single_file:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        model.save_pretrained(str(path), safe_serialization=True)
    return model


def _cross_layers(unet) -> list[int]:
    """The inner width of each cross-attention layer, in the order of `unet.attn_processors`."""
    out = []
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            out.append(unet.get_submodule(name[: -len(".processor")]).to_k.out_features)
    return out


def ip_adapter_state(unet, variant: str = "plain", image_dim: int = 16, seed: int = 0, scale: float = 0.3) -> dict:
    """An IP-Adapter state dict in its authors' layout, for `unet`: `plain` reads a `image_dim`-wide projected
    embedding, `plus` (a 4-layer resampler) and `full` read `image_dim`-wide hidden states."""
    g = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim

    def r(*shape):
        return torch.randn(*shape, generator=g) * scale

    sd: dict[str, torch.Tensor] = {}
    if variant == "plain":
        sd.update({"image_proj.proj.weight": r(4 * cross, image_dim), "image_proj.proj.bias": r(4 * cross),
                   "image_proj.norm.weight": 1 + r(cross), "image_proj.norm.bias": r(cross)})
    elif variant == "full":
        sd.update({"image_proj.proj.0.weight": r(image_dim, image_dim), "image_proj.proj.0.bias": r(image_dim),
                   "image_proj.proj.2.weight": r(cross, image_dim), "image_proj.proj.2.bias": r(cross),
                   "image_proj.proj.3.weight": 1 + r(cross), "image_proj.proj.3.bias": r(cross)})
    elif variant == "plus":
        dim, queries = 64, 4
        sd.update({"image_proj.latents": r(1, queries, dim), "image_proj.proj_in.weight": r(dim, image_dim),
                   "image_proj.proj_in.bias": r(dim), "image_proj.proj_out.weight": r(cross, dim),
                   "image_proj.proj_out.bias": r(cross), "image_proj.norm_out.weight": 1 + r(cross),
                   "image_proj.norm_out.bias": r(cross)})
        for i in range(4):
            p = f"image_proj.layers.{i}."
            sd.update({p + "0.norm1.weight": 1 + r(dim), p + "0.norm1.bias": r(dim), p + "0.norm2.weight": 1 + r(dim),
                       p + "0.norm2.bias": r(dim), p + "0.to_q.weight": r(dim, dim), p + "0.to_kv.weight": r(2 * dim, dim),
                       p + "0.to_out.weight": r(dim, dim), p + "1.0.weight": 1 + r(dim), p + "1.0.bias": r(dim),
                       p + "1.1.weight": r(4 * dim, dim), p + "1.3.weight": r(dim, 4 * dim)})
    elif variant == "faceid":
        sd.update({"image_proj.proj.0.weight": r(1024, 512), "image_proj.proj.0.bias": r(1024),
                   "image_proj.proj.2.weight": r(4 * cross, 1024), "image_proj.norm.weight": 1 + r(cross)})
    for n, width in enumerate(_cross_layers(unet)):
        sd[f"ip_adapter.{2 * n + 1}.to_k_ip.weight"] = r(width, cross)
        sd[f"ip_adapter.{2 * n + 1}.to_v_ip.weight"] = r(width, cross)
    return {k: v.contiguous() for k, v in sd.items()}


def write_ip_adapter(path: Path, unet, variant: str = "plain", image_dim: int = 16, seed: int = 0) -> dict:
    sd = ip_adapter_state(unet, variant, image_dim, seed)
    if path.suffix == ".bin":  # the pickled layout: {"image_proj": {...}, "ip_adapter": {...}}
        nested: dict[str, dict] = {"image_proj": {}, "ip_adapter": {}}
        for k, v in sd.items():
            head, _, rest = k.partition(".")
            nested[head][rest] = v
        torch.save(nested, str(path))
    else:
        save_file(sd, str(path))
    return sd


def tiny_t2i_adapter(channels: list[int], factor: int, xl: bool, in_channels: int = 3, seed: int = 4):
    """A T2I-Adapter with features of `channels`, the control image unshuffled by `factor` (random weights,
    scaled up so that they speak)."""
    from diffusers import T2IAdapter

    torch.manual_seed(seed)
    net = T2IAdapter(in_channels=in_channels, channels=channels, num_res_blocks=1, downscale_factor=factor,
                     adapter_type="full_adapter_xl" if xl else "full_adapter")
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    return net


def control_lora_state(unet, rank: int = 4, seed: int = 1) -> dict:
    """A control-LoRA in Stability's layout (`stabilityai/control-lora`, ComfyUI's `control_lora_rank128…`): the
    ControlNet's UNet-shaped encoder as LoRA factors `<ldm name>.down`/`.up` over the steered UNet's own weights,
    everything else (norms, biases, time and label embeddings, `input_hint_block`, `zero_convs`,
    `middle_block_out`) in full, and the `lora_controlnet` marker. Needs SD's shapes: 2 layers per block and the
    8× control-image encoder (diffusers' converter assumes them)."""
    import re

    from diffusers import ControlNetModel

    from .ldm_layout import controlnet_to_ldm

    g = torch.Generator().manual_seed(seed)
    net = ControlNetModel.from_unet(unet)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    ldm = {k.removeprefix("control_model."): v for k, v in controlnet_to_ldm(net.state_dict(),
                                                                           dict(unet.config)).items()}
    lora = re.compile(r".*\.(to_q|to_k|to_v|to_out\.0|ff\.net\.0\.proj|ff\.net\.2|proj_in|proj_out|in_layers\.2|"
                      r"out_layers\.3|op)\.weight$")
    out: dict[str, torch.Tensor] = {}
    for k, v in ldm.items():
        if lora.match(k) and not k.startswith(("input_hint_block", "zero_convs", "middle_block_out")):
            base = k[: -len(".weight")]
            tail = tuple(v.shape[2:])
            out[base + ".down"] = torch.randn(rank, v.shape[1], *tail, generator=g) * 0.05
            out[base + ".up"] = torch.randn(v.shape[0], rank, *((1, 1) if tail else ()), generator=g) * 0.05
        else:
            out[k] = v
    out["lora_controlnet"] = torch.tensor([])
    return {k: v.contiguous() for k, v in out.items()}


def sd_shaped_pipeline():
    """A tiny SD 1.x pipeline with SD's own block layout (4 levels, 2 layers per block, an 8× VAE), for adapters
    whose converters assume it."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from solvent.engine.checkpoint import tokenizer
    from solvent.generation.families import shipped_config

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(32, 32, 64, 64), layers_per_block=2, cross_attention_dim=32,
                                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, attention_head_dim=8,
                                sample_size=8, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=8,
                        sample_size=64)
    cfg = shipped_config("sd1", "text_encoder")
    cfg.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    te = CLIPTextModel(CLIPTextConfig(**cfg))
    sched = EulerDiscreteScheduler.from_config(shipped_config("sd1", "scheduler"))
    return StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tokenizer(False), unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
