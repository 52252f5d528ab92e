"""Tiny SD3 / SD3.5 and Flux.1 pipelines built in code (diffusers' test style: random weights, seeded), and
their files in each real layout: diffusers folders, Stability's SD3 single file (with or without T5), Black
Forest Labs' and ComfyUI's Flux transformer files, and the separate CLIP-L / CLIP-G / T5 / VAE files ComfyUI
users keep beside them.

The layouts are written here independently of Solvent's loaders (from the original repositories' key names),
so a loader that mapped a tensor to the wrong place would fail the tests' equality with bare diffusers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel, SD3Transformer2DModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

from solvent.engine.checkpoint import tokenizer
from solvent.engine.flow import rope_axes, t5_tokenizer
from solvent.generation.families import shipped_config

from .ldm_layout import _canonical, vae_to_ldm

T5_WIDTH = 64  # the tiny T5's d_model = the transformers' joint attention width


def _vae(family: str) -> AutoencoderKL:
    torch.manual_seed(11)
    cfg = shipped_config(family, "vae")
    cfg.update(block_out_channels=[32, 32, 32, 32], layers_per_block=1, sample_size=64)
    return AutoencoderKL.from_config(cfg)


def _clip(seed: int, hidden: int, projection: int | None, template: tuple[str, str] = ("flux", "text_encoder")):
    """A tiny CLIP text model of a real encoder's kind (CLIP-L: quick GELU; CLIP-G: GELU, `("sd3", "text_encoder_2")`)."""
    torch.manual_seed(seed)
    cfg = shipped_config(*template)
    cfg.update(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=2, num_attention_heads=1)
    if projection is None:
        return CLIPTextModel(CLIPTextConfig(**cfg))
    cfg["projection_dim"] = projection
    return CLIPTextModelWithProjection(CLIPTextConfig(**cfg))


def t5(width: int = T5_WIDTH, seed: int = 5) -> T5EncoderModel:
    torch.manual_seed(seed)
    cfg = shipped_config("flux", "text_encoder_2")
    cfg.update(d_model=width, d_kv=16, num_heads=4, d_ff=2 * width, num_layers=2, num_decoder_layers=2)
    return T5EncoderModel(T5Config(**cfg))


def build_sd3(v35: bool = False, with_t5: bool = True) -> dict:
    """A tiny SD3 (or, with `v35`, SD3.5-style: q/k RMS norms and dual attention in block 0) pipeline."""
    torch.manual_seed(3)
    head, heads = (32, 2) if v35 else (64, 1)
    transformer = SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=head, num_attention_heads=heads,
        joint_attention_dim=T5_WIDTH, caption_projection_dim=head * heads, pooled_projection_dim=64, out_channels=16,
        pos_embed_max_size=128, dual_attention_layers=(0,) if v35 else (), qk_norm="rms_norm" if v35 else None)
    from diffusers import FlowMatchEulerDiscreteScheduler

    return {"transformer": transformer, "vae": _vae("sd3"),
            "scheduler": FlowMatchEulerDiscreteScheduler.from_config(shipped_config("sd3", "scheduler")),
            "text_encoder": _clip(21, 32, 32), "tokenizer": tokenizer(False),
            "text_encoder_2": _clip(22, 32, 32, ("sd3", "text_encoder_2")), "tokenizer_2": tokenizer(True),
            "text_encoder_3": t5() if with_t5 else None, "tokenizer_3": t5_tokenizer() if with_t5 else None}


def build_flux(schnell: bool = False) -> dict:
    """A tiny Flux.1 pipeline (dev: with the distilled-guidance embedding; schnell: without)."""
    torch.manual_seed(4)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=T5_WIDTH, pooled_projection_dim=32, guidance_embeds=not schnell,
        axes_dims_rope=tuple(rope_axes(16)))
    from diffusers import FlowMatchEulerDiscreteScheduler

    return {"transformer": transformer, "vae": _vae("flux"),
            "scheduler": FlowMatchEulerDiscreteScheduler.from_config(shipped_config("flux", "scheduler")),
            "text_encoder": _clip(31, 32, None), "tokenizer": tokenizer(False),
            "text_encoder_2": t5(), "tokenizer_2": t5_tokenizer()}


def pipeline(family: str, comps: dict):
    """The bare diffusers pipeline of these components, in eval mode (as from_pretrained leaves a model)."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    for m in comps.values():
        if isinstance(m, torch.nn.Module):
            m.eval()
    pipe = (StableDiffusion3Pipeline if family == "sd3" else FluxPipeline)(**comps)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_folder(family: str, comps: dict, folder: Path) -> Path:
    pipeline(family, comps).save_pretrained(str(folder), safe_serialization=True)
    return folder


# ---------------------------------------------------------------------------------------------
# The original layouts (inverse of what a loader must do)
# ---------------------------------------------------------------------------------------------


def _lin(out: dict, sd: dict, src: str, dst: str) -> None:
    for s in ("weight", "bias"):
        if f"{src}.{s}" in sd:
            out[f"{dst}.{s}"] = sd[f"{src}.{s}"]


def _swap(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def _qkv(out: dict, sd: dict, names: tuple[str, ...], dst: str) -> None:
    for s in ("weight", "bias"):
        out[f"{dst}.{s}"] = torch.cat([sd[f"{n}.{s}"] for n in names], dim=0)


def sd3_to_original(sd: dict, n_layers: int) -> dict:
    """diffusers' `SD3Transformer2DModel` state → Stability's MMDiT keys (without the prefix)."""
    out = {"pos_embed": sd["pos_embed.pos_embed"]}
    _lin(out, sd, "pos_embed.proj", "x_embedder.proj")
    _lin(out, sd, "time_text_embed.timestep_embedder.linear_1", "t_embedder.mlp.0")
    _lin(out, sd, "time_text_embed.timestep_embedder.linear_2", "t_embedder.mlp.2")
    _lin(out, sd, "time_text_embed.text_embedder.linear_1", "y_embedder.mlp.0")
    _lin(out, sd, "time_text_embed.text_embedder.linear_2", "y_embedder.mlp.2")
    _lin(out, sd, "context_embedder", "context_embedder")
    for i in range(n_layers):
        d, x, c = f"transformer_blocks.{i}", f"joint_blocks.{i}.x_block", f"joint_blocks.{i}.context_block"
        last = i == n_layers - 1
        _qkv(out, sd, (f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v"), f"{x}.attn.qkv")
        _qkv(out, sd, (f"{d}.attn.add_q_proj", f"{d}.attn.add_k_proj", f"{d}.attn.add_v_proj"), f"{c}.attn.qkv")
        for src, dst in (("norm_q", f"{x}.attn.ln_q"), ("norm_k", f"{x}.attn.ln_k"),
                         ("norm_added_q", f"{c}.attn.ln_q"), ("norm_added_k", f"{c}.attn.ln_k")):
            if f"{d}.attn.{src}.weight" in sd:
                out[f"{dst}.weight"] = sd[f"{d}.attn.{src}.weight"]
        _lin(out, sd, f"{d}.attn.to_out.0", f"{x}.attn.proj")
        if f"{d}.attn2.to_q.weight" in sd:
            _qkv(out, sd, (f"{d}.attn2.to_q", f"{d}.attn2.to_k", f"{d}.attn2.to_v"), f"{x}.attn2.qkv")
            _lin(out, sd, f"{d}.attn2.to_out.0", f"{x}.attn2.proj")
            for src, dst in (("norm_q", "ln_q"), ("norm_k", "ln_k")):
                if f"{d}.attn2.{src}.weight" in sd:
                    out[f"{x}.attn2.{dst}.weight"] = sd[f"{d}.attn2.{src}.weight"]
        _lin(out, sd, f"{d}.norm1.linear", f"{x}.adaLN_modulation.1")
        _lin(out, sd, f"{d}.ff.net.0.proj", f"{x}.mlp.fc1")
        _lin(out, sd, f"{d}.ff.net.2", f"{x}.mlp.fc2")
        if last:  # the context stream ends in a plain (shift, scale) norm
            for s in ("weight", "bias"):
                out[f"{c}.adaLN_modulation.1.{s}"] = _swap(sd[f"{d}.norm1_context.linear.{s}"])
        else:
            _lin(out, sd, f"{d}.attn.to_add_out", f"{c}.attn.proj")
            _lin(out, sd, f"{d}.norm1_context.linear", f"{c}.adaLN_modulation.1")
            _lin(out, sd, f"{d}.ff_context.net.0.proj", f"{c}.mlp.fc1")
            _lin(out, sd, f"{d}.ff_context.net.2", f"{c}.mlp.fc2")
    _lin(out, sd, "proj_out", "final_layer.linear")
    for s in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{s}"] = _swap(sd[f"norm_out.linear.{s}"])
    return out


def flux_to_bfl(sd: dict, n_double: int, n_single: int) -> dict:
    """diffusers' `FluxTransformer2DModel` state → Black Forest Labs' keys (without a prefix)."""
    out: dict = {}
    e = "time_text_embed"
    for dst, src in (("time_in", "timestep_embedder"), ("vector_in", "text_embedder"), ("guidance_in", "guidance_embedder")):
        _lin(out, sd, f"{e}.{src}.linear_1", f"{dst}.in_layer")
        _lin(out, sd, f"{e}.{src}.linear_2", f"{dst}.out_layer")
    _lin(out, sd, "context_embedder", "txt_in")
    _lin(out, sd, "x_embedder", "img_in")
    for i in range(n_double):
        d, b = f"transformer_blocks.{i}", f"double_blocks.{i}"
        _lin(out, sd, f"{d}.norm1.linear", f"{b}.img_mod.lin")
        _lin(out, sd, f"{d}.norm1_context.linear", f"{b}.txt_mod.lin")
        _qkv(out, sd, (f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v"), f"{b}.img_attn.qkv")
        _qkv(out, sd, (f"{d}.attn.add_q_proj", f"{d}.attn.add_k_proj", f"{d}.attn.add_v_proj"), f"{b}.txt_attn.qkv")
        out[f"{b}.img_attn.norm.query_norm.scale"] = sd[f"{d}.attn.norm_q.weight"]
        out[f"{b}.img_attn.norm.key_norm.scale"] = sd[f"{d}.attn.norm_k.weight"]
        out[f"{b}.txt_attn.norm.query_norm.scale"] = sd[f"{d}.attn.norm_added_q.weight"]
        out[f"{b}.txt_attn.norm.key_norm.scale"] = sd[f"{d}.attn.norm_added_k.weight"]
        _lin(out, sd, f"{d}.attn.to_out.0", f"{b}.img_attn.proj")
        _lin(out, sd, f"{d}.attn.to_add_out", f"{b}.txt_attn.proj")
        _lin(out, sd, f"{d}.ff.net.0.proj", f"{b}.img_mlp.0")
        _lin(out, sd, f"{d}.ff.net.2", f"{b}.img_mlp.2")
        _lin(out, sd, f"{d}.ff_context.net.0.proj", f"{b}.txt_mlp.0")
        _lin(out, sd, f"{d}.ff_context.net.2", f"{b}.txt_mlp.2")
    for i in range(n_single):
        d, b = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        _lin(out, sd, f"{d}.norm.linear", f"{b}.modulation.lin")
        _qkv(out, sd, (f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v", f"{d}.proj_mlp"), f"{b}.linear1")
        out[f"{b}.norm.query_norm.scale"] = sd[f"{d}.attn.norm_q.weight"]
        out[f"{b}.norm.key_norm.scale"] = sd[f"{d}.attn.norm_k.weight"]
        _lin(out, sd, f"{d}.proj_out", f"{b}.linear2")
    _lin(out, sd, "proj_out", "final_layer.linear")
    for s in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{s}"] = _swap(sd[f"norm_out.linear.{s}"])
    return out


def clip_file(model) -> dict:
    """A CLIP text model as ComfyUI's clip_l / clip_g files hold it (transformers keys, `text_model.` kept)."""
    return {k: v.contiguous() for k, v in _canonical(model.state_dict()).items()}


def t5_file(model) -> dict:
    """T5's encoder as ComfyUI's t5xxl files hold it (`shared.weight` and `encoder.*`)."""
    return {k: v.contiguous() for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}


def vae_file(vae) -> dict:
    """The VAE as BFL's ae.safetensors holds it: the original layout without a prefix."""
    return {k.removeprefix("first_stage_model."): v.contiguous()
            for k, v in vae_to_ldm(vae.state_dict(), dict(vae.config)).items()}


def write_sd3_single(comps: dict, path: Path, with_t5: bool = True) -> Path:
    """Stability's SD3 / SD3.5 single file: MMDiT, VAE and the text encoders inside (T5 optional)."""
    tr = comps["transformer"]
    sd = {"model.diffusion_model." + k: v for k, v in sd3_to_original(tr.state_dict(), tr.config.num_layers).items()}
    sd.update({"first_stage_model." + k: v for k, v in vae_file(comps["vae"]).items()})
    sd.update({"text_encoders.clip_l.transformer." + k: v for k, v in clip_file(comps["text_encoder"]).items()})
    sd.update({"text_encoders.clip_g.transformer." + k: v for k, v in clip_file(comps["text_encoder_2"]).items()})
    if with_t5:
        sd.update({"text_encoders.t5xxl.transformer." + k: v for k, v in t5_file(comps["text_encoder_3"]).items()})
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def write_flux_files(comps: dict, folder: Path, comfy: bool = False, dtype=None) -> dict[str, Path]:
    """A Flux transformer file (BFL's layout, or ComfyUI's with the `model.diffusion_model.` prefix) and the
    clip_l, t5xxl and ae files beside it; `dtype` stores the transformer so (fp8 as people download it)."""
    folder.mkdir(parents=True, exist_ok=True)
    tr = comps["transformer"]
    sd = flux_to_bfl(tr.state_dict(), tr.config.num_layers, tr.config.num_single_layers)
    prefix = "model.diffusion_model." if comfy else ""
    sd = {prefix + k: (v.to(dtype) if dtype is not None else v).contiguous() for k, v in sd.items()}
    paths = {"path": folder / ("flux1-comfy.safetensors" if comfy else "flux1.safetensors"),
             "clip_l": folder / "clip_l.safetensors", "t5": folder / "t5xxl.safetensors", "vae": folder / "ae.safetensors"}
    save_file(sd, str(paths["path"]))
    save_file(clip_file(comps["text_encoder"]), str(paths["clip_l"]))
    save_file(t5_file(comps["text_encoder_2"]), str(paths["t5"]))
    save_file(vae_file(comps["vae"]), str(paths["vae"]))
    return paths


def _lora_pair(g: torch.Generator, out_f: int, in_f: int, rank: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(rank, in_f, generator=g) * 0.3, torch.randn(out_f, rank, generator=g) * 0.3


def write_transformer_lora(transformer, path: Path, seed: int = 3) -> Path:
    """A LoRA of the attention projections in diffusers' (peft) layout: `transformer.<module>.lora_A/B`."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, mod in transformer.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.endswith((".to_q", ".to_k", ".to_v", ".to_out.0")):
            a, b = _lora_pair(g, mod.out_features, mod.in_features)
            sd[f"transformer.{name}.lora_A.weight"], sd[f"transformer.{name}.lora_B.weight"] = a, b
    save_file(sd, str(path))
    return path


def write_flux_kohya_lora(transformer, path: Path, seed: int = 4) -> Path:
    """A Flux LoRA as kohya's sd-scripts writes it (`lora_unet_double_blocks_N_img_attn_qkv`, alpha beside)."""
    g = torch.Generator().manual_seed(seed)
    hidden = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    sd = {}
    for i in range(transformer.config.num_layers):
        for part, out_f in (("img_attn_qkv", 3 * hidden), ("img_attn_proj", hidden), ("txt_attn_qkv", 3 * hidden)):
            key = f"lora_unet_double_blocks_{i}_{part}"
            sd[f"{key}.lora_down.weight"], sd[f"{key}.lora_up.weight"] = _lora_pair(g, out_f, hidden)
            sd[f"{key}.alpha"] = torch.tensor(2.0)
    save_file(sd, str(path))
    return path


def write_flux_bfl_lora(transformer, path: Path, seed: int = 5, comfy: bool = True) -> dict:
    """A Flux LoRA in Black Forest Labs' module names (ComfyUI saves them under `diffusion_model.`): fused qkv and
    single-block linear1 projections, lora_down / lora_up with alpha. Returns {BFL module: ΔW} (alpha applied)."""
    g = torch.Generator().manual_seed(seed)
    cfg = transformer.config
    hidden = cfg.num_attention_heads * cfg.attention_head_dim
    mlp = transformer.single_transformer_blocks[0].proj_mlp.out_features
    prefix = "diffusion_model." if comfy else ""
    sd, deltas = {}, {}
    targets = [(f"double_blocks.{i}.img_attn.qkv", 3 * hidden, hidden) for i in range(cfg.num_layers)]
    targets += [(f"double_blocks.{i}.txt_mlp.0", 4 * hidden, hidden) for i in range(cfg.num_layers)]
    targets += [(f"single_blocks.{i}.linear1", 3 * hidden + mlp, hidden) for i in range(cfg.num_single_layers)]
    for name, out_f, in_f in targets:
        down, up = _lora_pair(g, out_f, in_f)
        sd[f"{prefix}{name}.lora_down.weight"], sd[f"{prefix}{name}.lora_up.weight"] = down, up
        sd[f"{prefix}{name}.alpha"] = torch.tensor(2.0)
        deltas[name] = up @ down * (2.0 / down.shape[0])
    save_file(sd, str(path))
    return deltas


def fuse_flux_deltas(transformer, deltas: dict, weight: float) -> None:
    """Add `weight` × each ΔW of a BFL-named LoRA to the diffusers transformer's weights (the fused rows split
    in the original order: q, k, v, then the single blocks' MLP)."""
    hidden = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    with torch.no_grad():
        for name, delta in deltas.items():
            kind, i, rest = name.split(".", 2)
            i = int(i)
            if kind == "double_blocks" and rest == "img_attn.qkv":
                attn = transformer.transformer_blocks[i].attn
                parts = [attn.to_q, attn.to_k, attn.to_v]
            elif kind == "double_blocks":
                parts = [transformer.transformer_blocks[i].ff_context.net[0].proj]
            else:
                blk = transformer.single_transformer_blocks[i]
                parts = [blk.attn.to_q, blk.attn.to_k, blk.attn.to_v, blk.proj_mlp]
            row = 0
            for lin in parts:
                n = lin.weight.shape[0]
                lin.weight += weight * delta[row:row + n]
                row += n
            assert row == delta.shape[0] and (len(parts) == 1 or parts[0].weight.shape[0] == hidden)
