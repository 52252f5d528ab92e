"""SD3 / SD3.5 and Flux.1 files: recognise, configure, convert and load them offline.

A single file is the transformer alone (Flux as Black Forest Labs publish it, or in ComfyUI's layout with the
`model.diffusion_model.` prefix), or the transformer with its VAE and text encoders inside (SD3/3.5 as Stability
publishes them, ComfyUI's all-in-one files). What is not inside comes from component files added beside it
(`clip_l`, `clip_g`, `t5`, `vae`), as ComfyUI users keep them in `models/clip` and `models/vae`. Every config comes
from the shipped family templates with its sizes read off the tensor shapes, so a file of any width loads, and the
T5 tokenizer ships in the package: nothing is fetched.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CorruptCheckpoint, IncompatibleAdapter, UnsupportedModel
from ..generation.families import FAMILIES, T5_TOKENIZER_DIR, shipped_config
from .checkpoint import CheckpointInfo, _indices, clip_config, read_state_dict, tokenizer, vae_config

DIT = "model.diffusion_model."  # the transformer's prefix in Stability's and ComfyUI's files
INSIDE = {"clip_l": "text_encoders.clip_l.transformer.", "clip_g": "text_encoders.clip_g.transformer.",
          "t5": "text_encoders.t5xxl.transformer."}
VAE_PREFIXES = ("first_stage_model.", "vae.")
COMPONENTS = {"sd3": ("clip_l", "clip_g", "t5", "vae"), "flux": ("clip_l", "t5", "vae")}
REQUIRED = {"sd3": ("clip_l", "clip_g", "vae"), "flux": ("clip_l", "t5", "vae")}  # SD3 runs without T5
LABELS = {"clip_l": "CLIP-L text encoder", "clip_g": "CLIP-G (OpenCLIP bigG) text encoder", "t5": "T5-XXL text encoder",
          "vae": "VAE"}
_T5_PROBE = "encoder.block.0.layer.0.SelfAttention.q.weight"
_CLIP_PROBE = "text_model.embeddings.token_embedding.weight"


@dataclass
class FlowInfo:
    """What a flow model's file says about itself: family, transformer sizes and what it carries inside."""

    family: str  # "sd3" | "flux"
    shapes: dict[str, tuple[int, ...]]
    prefix: str  # the transformer keys' prefix ("" for BFL's layout)
    inside: tuple[str, ...]  # components the file carries (`clip_l`, `clip_g`, `t5`, `vae`)

    @property
    def max_side(self) -> int | None:
        """SD3: the largest side its position table covers (patches × 2 × the VAE's 8×); Flux has none."""
        pos = self.shapes.get(f"{self.prefix}pos_embed")
        if pos is None:
            return None
        patch = self.shapes[f"{self.prefix}x_embedder.proj.weight"][2]
        return math.isqrt(pos[1]) * patch * 8

    @property
    def variant(self) -> str:
        """`dev` / `schnell` for Flux (distilled guidance or not); `large` / `medium` for SD3."""
        if self.family == "flux":
            return "dev" if f"{self.prefix}guidance_in.in_layer.weight" in self.shapes else "schnell"
        return "large" if _count(self.shapes, f"{self.prefix}joint_blocks.") >= 38 else "medium"


def dit_prefix(shapes: dict) -> str:
    return DIT if any(k.startswith(DIT) for k in shapes) else ""


def detect_flow(shapes: dict) -> str | None:
    """`sd3` or `flux` when the tensors hold an SD3 MMDiT or a Flux transformer in their original layout."""
    p = dit_prefix(shapes)
    if f"{p}joint_blocks.0.x_block.attn.qkv.weight" in shapes:
        return "sd3"
    if f"{p}double_blocks.0.img_attn.qkv.weight" in shapes:
        return "flux"
    return None


def inspect_flow(shapes: dict) -> FlowInfo | None:
    family = detect_flow(shapes)
    if family is None:
        return None
    inside = [name for name, pre in INSIDE.items() if f"{pre}{_probe(name)}" in shapes]
    if any(f"{v}encoder.conv_in.weight" in shapes for v in VAE_PREFIXES):
        inside.append("vae")
    return FlowInfo(family, shapes, dit_prefix(shapes), tuple(inside))


def _probe(name: str) -> str:
    return _T5_PROBE if name == "t5" else _CLIP_PROBE


def _count(shapes: dict, prefix: str) -> int:
    """How many numbered blocks under `prefix` (`joint_blocks.0.…` … `joint_blocks.23.…` → 24)."""
    found = _indices(shapes, prefix)
    return found[-1] + 1 if found else 0


def component_kind(shapes: dict) -> str | None:
    """What a separate component file holds: `t5`, `clip` (CLIP-L or CLIP-G, HF layout) or `vae`."""
    keys = {k.removeprefix("text_model.") if k.startswith("text_model.text_model.") else k for k in shapes}
    if _T5_PROBE in keys or f"encoder.{_T5_PROBE}" in keys:
        return "t5"
    if _CLIP_PROBE in keys:
        return "clip"
    if "encoder.conv_in.weight" in keys and "decoder.conv_out.weight" in keys:
        return "vae"
    return None


# ---------------------------------------------------------------------------------------------
# Configs: shipped templates + sizes read off the shapes
# ---------------------------------------------------------------------------------------------


def rope_axes(head_dim: int) -> list[int]:
    """Flux's rotary axes (time, height, width) for a head width: (16, 56, 56) for 128. Each axis must be even;
    the split does not change tensor shapes, so any width follows the same rule (tests build with it too)."""
    side = (head_dim * 7 // 16) // 2 * 2
    return [head_dim - 2 * side, side, side]


def sd3_heads(hidden: int, shapes: dict, p: str) -> tuple[int, int]:
    """(heads, head width): SD3.5's q/k norms give the width; SD3's heads are 64 wide."""
    norm = shapes.get(f"{p}joint_blocks.0.x_block.attn.ln_q.weight")
    head = int(norm[0]) if norm else min(64, hidden)
    return max(1, hidden // head), head


def sd3_transformer_config(info: FlowInfo) -> dict[str, Any]:
    s, p = info.shapes, info.prefix
    cfg = shipped_config("sd3", "transformer")
    proj = s[f"{p}x_embedder.proj.weight"]
    hidden, in_ch, patch = proj[0], proj[1], proj[2]
    heads, head = sd3_heads(hidden, s, p)
    n = _count(s, f"{p}joint_blocks.")
    cfg.update(
        in_channels=in_ch, patch_size=patch, num_layers=n, attention_head_dim=head, num_attention_heads=heads,
        joint_attention_dim=s[f"{p}context_embedder.weight"][1], caption_projection_dim=s[f"{p}context_embedder.weight"][0],
        pooled_projection_dim=s[f"{p}y_embedder.mlp.0.weight"][1],
        out_channels=s[f"{p}final_layer.linear.weight"][0] // (patch * patch),
        pos_embed_max_size=math.isqrt(s[f"{p}pos_embed"][1]),
        dual_attention_layers=[i for i in range(n) if f"{p}joint_blocks.{i}.x_block.attn2.qkv.weight" in s],
        qk_norm="rms_norm" if f"{p}joint_blocks.0.x_block.attn.ln_q.weight" in s else None,
    )
    return cfg


def flux_transformer_config(info: FlowInfo) -> dict[str, Any]:
    s, p = info.shapes, info.prefix
    cfg = shipped_config("flux", "transformer")
    hidden, in_ch = s[f"{p}img_in.weight"]
    head = s[f"{p}double_blocks.0.img_attn.norm.query_norm.scale"][0]
    cfg.update(
        in_channels=in_ch, num_layers=_count(s, f"{p}double_blocks."), num_single_layers=_count(s, f"{p}single_blocks."),
        attention_head_dim=head, num_attention_heads=hidden // head, axes_dims_rope=rope_axes(head),
        joint_attention_dim=s[f"{p}txt_in.weight"][1], pooled_projection_dim=s[f"{p}vector_in.in_layer.weight"][1],
        guidance_embeds=f"{p}guidance_in.in_layer.weight" in s,
    )
    if s[f"{p}final_layer.linear.weight"][0] != in_ch:
        cfg["out_channels"] = s[f"{p}final_layer.linear.weight"][0]
    return cfg


def t5_config(family: str, template: str, shapes: dict) -> dict[str, Any]:
    """T5 v1.1's encoder: heads from the relative-position table, the rest from the shapes."""
    cfg = shipped_config(family, template)
    vocab, d_model = shapes["shared.weight"]
    heads = shapes["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"][1]
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in shapes
    d_ff = shapes["encoder.block.0.layer.1.DenseReluDense.wi_0.weight" if gated else
                  "encoder.block.0.layer.1.DenseReluDense.wi.weight"][0]
    cfg.update(vocab_size=vocab, d_model=d_model, num_heads=heads, d_kv=shapes[_T5_PROBE][0] // heads,
               num_layers=_count(shapes, "encoder.block."), d_ff=d_ff,
               relative_attention_num_buckets=shapes["encoder.block.0.layer.0.SelfAttention.relative_attention_bias"
                                                     ".weight"][0],
               feed_forward_proj="gated-gelu" if gated else "relu", is_gated_act=gated)
    return cfg


# ---------------------------------------------------------------------------------------------
# Key layouts
# ---------------------------------------------------------------------------------------------


def _swap_halves(t):
    """The original final norms emit (shift, scale); diffusers' (scale, shift)."""
    import torch

    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def flux_to_diffusers(state: dict, hidden: int) -> dict:
    """Black Forest Labs' Flux layout → diffusers' `FluxTransformer2DModel` keys, for any width (diffusers' own
    converter assumes the full 3072-wide model). `state` has no prefix; it is consumed."""
    import torch

    out: dict = {}

    def lin(src: str, dst: str) -> None:
        for s in ("weight", "bias"):
            if f"{src}.{s}" in state:
                out[f"{dst}.{s}"] = state.pop(f"{src}.{s}")

    def norm(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = state.pop(f"{src}.scale")

    emb = "time_text_embed"
    for src, dst in (("time_in", "timestep_embedder"), ("vector_in", "text_embedder"),
                     ("guidance_in", "guidance_embedder")):
        lin(f"{src}.in_layer", f"{emb}.{dst}.linear_1")
        lin(f"{src}.out_layer", f"{emb}.{dst}.linear_2")
    lin("txt_in", "context_embedder")
    lin("img_in", "x_embedder")
    for i in range(_count(state, "double_blocks.")):
        b, d = f"double_blocks.{i}", f"transformer_blocks.{i}"
        lin(f"{b}.img_mod.lin", f"{d}.norm1.linear")
        lin(f"{b}.txt_mod.lin", f"{d}.norm1_context.linear")
        for side, names in (("img", ("to_q", "to_k", "to_v")), ("txt", ("add_q_proj", "add_k_proj", "add_v_proj"))):
            for s in ("weight", "bias"):
                for name, part in zip(names, state.pop(f"{b}.{side}_attn.qkv.{s}").chunk(3, dim=0), strict=True):
                    out[f"{d}.attn.{name}.{s}"] = part.contiguous()
        norm(f"{b}.img_attn.norm.query_norm", f"{d}.attn.norm_q")
        norm(f"{b}.img_attn.norm.key_norm", f"{d}.attn.norm_k")
        norm(f"{b}.txt_attn.norm.query_norm", f"{d}.attn.norm_added_q")
        norm(f"{b}.txt_attn.norm.key_norm", f"{d}.attn.norm_added_k")
        lin(f"{b}.img_attn.proj", f"{d}.attn.to_out.0")
        lin(f"{b}.txt_attn.proj", f"{d}.attn.to_add_out")
        lin(f"{b}.img_mlp.0", f"{d}.ff.net.0.proj")
        lin(f"{b}.img_mlp.2", f"{d}.ff.net.2")
        lin(f"{b}.txt_mlp.0", f"{d}.ff_context.net.0.proj")
        lin(f"{b}.txt_mlp.2", f"{d}.ff_context.net.2")
    for i in range(_count(state, "single_blocks.")):
        b, d = f"single_blocks.{i}", f"single_transformer_blocks.{i}"
        lin(f"{b}.modulation.lin", f"{d}.norm.linear")
        for s in ("weight", "bias"):
            fused = state.pop(f"{b}.linear1.{s}")
            parts = torch.split(fused, [hidden, hidden, hidden, fused.shape[0] - 3 * hidden], dim=0)
            for name, part in zip(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), parts, strict=True):
                out[f"{d}.{name}.{s}"] = part.contiguous()
        norm(f"{b}.norm.query_norm", f"{d}.attn.norm_q")
        norm(f"{b}.norm.key_norm", f"{d}.attn.norm_k")
        lin(f"{b}.linear2", f"{d}.proj_out")
    lin("final_layer.linear", "proj_out")
    for s in ("weight", "bias"):
        out[f"norm_out.linear.{s}"] = _swap_halves(state.pop(f"final_layer.adaLN_modulation.1.{s}"))
    if state:
        raise CorruptCheckpoint(f"the Flux transformer has {len(state)} tensors of no known layout (e.g. "
                                f"{sorted(state)[:2]}).", field="path")
    return out


_DOUBLE = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
           "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
           "img_attn.proj": ("attn.to_out.0",), "txt_attn.proj": ("attn.to_add_out",),
           "img_mlp.0": ("ff.net.0.proj",), "img_mlp.2": ("ff.net.2",), "txt_mlp.0": ("ff_context.net.0.proj",),
           "txt_mlp.2": ("ff_context.net.2",), "img_mod.lin": ("norm1.linear",), "txt_mod.lin": ("norm1_context.linear",)}
_SINGLE = {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), "linear2": ("proj_out",),
           "modulation.lin": ("norm.linear",)}
_GLOBAL = {"img_in": "x_embedder", "txt_in": "context_embedder", "time_in.in_layer": "time_text_embed.timestep_embedder"
           ".linear_1", "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
           "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
           "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
           "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
           "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2", "final_layer.linear": "proj_out",
           "final_layer.adaLN_modulation.1": "norm_out.linear"}


def flux_lora_to_diffusers(state: dict, hidden: int) -> dict | None:
    """A Flux LoRA in Black Forest Labs' / ComfyUI's module names (`diffusion_model.double_blocks.0.img_attn.qkv
    .lora_A.weight`, or `lora_down` / `lora_up` with `alpha`) → diffusers' peft keys (`transformer.…lora_A/B`), or
    None when it is in another layout. Fused projections share their down matrix, so splitting the up matrix
    (q, k, v; and the single blocks' MLP) is exact; alpha is folded into the down matrix."""
    import torch

    pat = re.compile(r"^(?:diffusion_model\.)?(.+?)\.(lora_A|lora_B|lora_down|lora_up)\.weight$")
    modules: dict[str, dict] = {}
    for k, v in state.items():
        if (m := pat.match(k)) is None:
            if not k.endswith(".alpha"):
                return None
            continue
        modules.setdefault(m[1], {})["A" if m[2] in ("lora_A", "lora_down") else "B"] = v
    if not modules or not any(m.startswith(("double_blocks.", "single_blocks.")) for m in modules):
        return None
    out = {}
    for name, ab in modules.items():
        if set(ab) != {"A", "B"}:
            raise CorruptCheckpoint(f"the LoRA's `{name}` has no {'up' if 'A' in ab else 'down'} matrix.",
                                    field="loras")
        a, b = ab["A"], ab["B"]
        alpha = next((state[k] for k in (f"{name}.alpha", f"diffusion_model.{name}.alpha") if k in state), None)
        if alpha is not None:
            a = a * (float(alpha) / a.shape[0])
        if (m := re.match(r"(double|single)_blocks\.(\d+)\.(.+)$", name)) is not None:
            table = _DOUBLE if m[1] == "double" else _SINGLE
            if m[3] not in table:
                raise CorruptCheckpoint(f"the LoRA targets `{name}`, which Flux has not.", field="loras")
            block = f"{'transformer_blocks' if m[1] == 'double' else 'single_transformer_blocks'}.{m[2]}"
            targets = table[m[3]]
            sizes = [hidden] * 3 + [b.shape[0] - 3 * hidden] if len(targets) == 4 else [b.shape[0] // len(targets)] * len(targets)
            for target, part in zip(targets, torch.split(b, sizes, dim=0), strict=True):
                out[f"transformer.{block}.{target}.lora_A.weight"] = a.contiguous()
                out[f"transformer.{block}.{target}.lora_B.weight"] = part.contiguous()
        elif name in _GLOBAL:
            if name == "final_layer.adaLN_modulation.1":
                b = _swap_halves(b)
            out[f"transformer.{_GLOBAL[name]}.lora_A.weight"] = a.contiguous()
            out[f"transformer.{_GLOBAL[name]}.lora_B.weight"] = b.contiguous()
        else:
            raise CorruptCheckpoint(f"the LoRA targets `{name}`, which Flux has not.", field="loras")
    return out


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _sub(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _assign(module, state: dict, what: str, where: str, dtype) -> None:
    """Load `state` into a module built on the meta device (no random init of billions of weights), cast to
    `dtype` (fp8 files are upcast), refusing missing, unexpected, mis-sized or non-finite tensors."""
    import torch

    params = dict(module.named_parameters())
    state = {k: v for k, v in state.items() if not k.endswith("position_ids")}
    missing = [k for k in params if k not in state]
    buffers = dict(module.named_buffers())
    unexpected = [k for k in state if k not in params and k not in buffers]
    if missing or unexpected:
        raise CorruptCheckpoint(f"the {what} in {where} is incomplete or of another layout: {len(missing)} tensors "
                                f"missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}).",
                                field="path")
    for k, v in state.items():
        want = params[k].shape if k in params else None
        if want is not None and tuple(v.shape) != tuple(want):
            raise CorruptCheckpoint(f"the {what} in {where} does not match its own layout: `{k}` is "
                                    f"{tuple(v.shape)} where {tuple(want)} belongs.", field="path")
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    for k, v in cast.items():
        if k in params and not torch.isfinite(v).all():
            raise CorruptCheckpoint(f"the {what} in {where} holds NaN or infinite weights (`{k}`).", field="path")
    module.load_state_dict(cast, strict=False, assign=True)
    module.eval()  # built, not loaded with from_pretrained: training mode would keep T5's dropout on


def _empty(factory):
    from accelerate import init_empty_weights

    with init_empty_weights():
        return factory()


def t5_tokenizer():
    from transformers import T5TokenizerFast

    return T5TokenizerFast.from_pretrained(str(T5_TOKENIZER_DIR), local_files_only=True)


def _clip(family: str, template: str, state: dict, where: str, dtype, projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    state = {("text_model." + k if not k.startswith(("text_model.", "text_projection")) else k): v
             for k, v in state.items()}
    info = CheckpointInfo(family, {k: tuple(v.shape) for k, v in state.items()}, inpainting=False)
    cfg = CLIPTextConfig(**clip_config(info, "text_model.", template))
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    model = _empty(lambda: cls(cfg))
    if not projection:
        state.pop("text_projection.weight", None)
    if not hasattr(model, "text_model") and hasattr(model, "embeddings"):  # transformers ≥ 5.6 flattened CLIP
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    _assign(model, state, "text encoder", where, dtype)
    return model


def _t5(family: str, template: str, state: dict, where: str, dtype):
    from transformers import T5Config, T5EncoderModel

    state = {k.removeprefix("encoder.") if k.startswith("encoder.encoder.") else k: v for k, v in state.items()}
    if "shared.weight" not in state and "encoder.embed_tokens.weight" in state:
        state["shared.weight"] = state["encoder.embed_tokens.weight"]
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    cfg = T5Config(**t5_config(family, template, shapes))
    model = _empty(lambda: T5EncoderModel(cfg))
    if "encoder.embed_tokens.weight" in dict(model.named_parameters()):
        state["encoder.embed_tokens.weight"] = state["shared.weight"]  # tied: files hold it once
    else:
        state.pop("encoder.embed_tokens.weight", None)
    _assign(model, state, "T5 text encoder", where, dtype)
    model.encoder.embed_tokens = model.shared
    return model


def check_components(info: FlowInfo, parts: dict[str, dict[str, tuple]], where: dict[str, str]) -> None:
    """Refuse component files that cannot drive this transformer, naming the field: a missing one, a file of
    another kind, or a T5 / CLIP of the wrong width."""
    have = set(info.inside) | set(parts)
    missing = [c for c in REQUIRED[info.family] if c not in have]
    fam = "Flux" if info.family == "flux" else "SD3"
    if missing:
        raise UnsupportedModel(
            f"`{missing[0]}` is required: {where.get('path', 'the file')!r} is a {fam} transformer without its "
            f"{', '.join(LABELS[m] for m in missing)}; add it with the "
            f"{', '.join('--' + m.replace('_', '-') for m in missing)} option(s) (the files ComfyUI keeps in "
            "models/clip and models/vae).", field=missing[0])
    cfg = (flux_transformer_config if info.family == "flux" else sd3_transformer_config)(info)
    for name, shapes in parts.items():
        kind = component_kind(shapes)
        want = "clip" if name.startswith("clip") else name
        if kind != want:
            raise UnsupportedModel(f"`{name}` {where[name]!r} holds {('a ' + kind) if kind else 'no'} model where "
                                   f"a {LABELS[name]} belongs.", field=name, value=where[name])
    t5 = parts.get("t5")
    if t5 is not None:
        t5 = {k.removeprefix("encoder.") if k.startswith("encoder.encoder.") else k: v for k, v in t5.items()}
        width = (t5.get("shared.weight") or t5.get("encoder.embed_tokens.weight") or (0, 0))[1]
        if width != cfg["joint_attention_dim"]:
            raise IncompatibleAdapter(f"`t5` {where['t5']!r} is a T5 encoder with {width}-wide states, but the {fam} "
                                      f"transformer reads {cfg['joint_attention_dim']}-wide ones (T5-XXL's 4096 for "
                                      "the released models); add the T5 made for it (t5xxl_fp16 or t5xxl_fp8).",
                                      field="t5", value=where["t5"])
    widths = {n: _clip_width(s) for n, s in parts.items() if n.startswith("clip")}
    if info.family == "flux" and "clip_l" in widths and widths["clip_l"][0] != cfg["pooled_projection_dim"]:
        raise IncompatibleAdapter(f"`clip_l` {where['clip_l']!r} is {widths['clip_l'][0]} wide, but the Flux "
                                  f"transformer pools {cfg['pooled_projection_dim']}-wide CLIP-L states.",
                                  field="clip_l", value=where["clip_l"])
    if info.family == "sd3" and len(widths) == 2:
        pooled = widths["clip_l"][1] + widths["clip_g"][1]
        if pooled != cfg["pooled_projection_dim"]:
            raise IncompatibleAdapter(f"`clip_l` and `clip_g` pool {widths['clip_l'][1]} + {widths['clip_g'][1]} = "
                                      f"{pooled} values, but the SD3 transformer reads {cfg['pooled_projection_dim']}.",
                                      field="clip_g", value=where["clip_g"])


def _clip_width(shapes: dict) -> tuple[int, int]:
    """(hidden width, projection width) of a CLIP text model in the transformers layout."""
    hidden = shapes["text_model.embeddings.token_embedding.weight"][1]
    proj = shapes.get("text_projection.weight", (hidden,))[0]
    return hidden, proj


def load_flow_components(path: Path, family: str, components: dict[str, Path], dtype) -> dict[str, Any]:
    """Every diffusers component of an SD3 or Flux pipeline, from its single file and the component files beside
    it, built offline at `dtype` on the CPU."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel, SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_vae_checkpoint,
        convert_sd3_transformer_checkpoint_to_diffusers,
    )

    path = Path(path)
    state = read_state_dict(path)
    info = inspect_flow({k: tuple(v.shape) for k, v in state.items()})
    if info is None or info.family != family:
        raise UnsupportedModel(f"{str(path)!r} holds no {family} transformer.", field="path", value=str(path))
    parts = {name: read_state_dict(Path(p)) for name, p in components.items() if name not in info.inside}
    check_components(info, {n: {k: tuple(v.shape) for k, v in s.items()} for n, s in parts.items()},
                     {"path": str(path), **{n: str(p) for n, p in components.items()}})
    where = repr(str(path))
    p = info.prefix
    dit = _sub(state, p) if p else {k: v for k, v in state.items() if not k.startswith(("text_encoders.",
                                                                                          *VAE_PREFIXES))}
    if family == "sd3":
        cfg = sd3_transformer_config(info)
        transformer = _empty(lambda: SD3Transformer2DModel.from_config(cfg))
        converted = convert_sd3_transformer_checkpoint_to_diffusers(dict(dit))
    else:
        cfg = flux_transformer_config(info)
        transformer = _empty(lambda: FluxTransformer2DModel.from_config(cfg))
        converted = flux_to_diffusers(dict(dit), cfg["num_attention_heads"] * cfg["attention_head_dim"])
    _assign(transformer, converted, "transformer", where, dtype)

    # The VAE: inside the file (either prefix) or its own file (original or diffusers layout)
    if "vae" in info.inside:
        prefix = next(v for v in VAE_PREFIXES if f"{v}encoder.conv_in.weight" in state)
        vae_state, vae_where = {f"first_stage_model.{k}": v for k, v in _sub(state, prefix).items()}, where
    else:
        vae_state, vae_where = parts["vae"], repr(str(components["vae"]))
        if "encoder.down.0.block.0.conv1.weight" in vae_state:
            vae_state = {f"first_stage_model.{k}": v for k, v in vae_state.items()}
    if "first_stage_model.encoder.conv_in.weight" in vae_state:
        vcfg = vae_config(CheckpointInfo(family, {k: tuple(v.shape) for k, v in vae_state.items()}, False),
                          FAMILIES[family].native)
        vae_state = convert_ldm_vae_checkpoint(vae_state, vcfg)
    else:  # diffusers' layout
        shapes = {f"first_stage_model.{k}": tuple(v.shape) for k, v in vae_state.items()}
        vcfg = shipped_config(family, "vae")
        vcfg["latent_channels"] = shapes["first_stage_model.encoder.conv_out.weight"][0] // 2
        vcfg["use_quant_conv"] = "first_stage_model.quant_conv.weight" in shapes
        vcfg["use_post_quant_conv"] = "first_stage_model.post_quant_conv.weight" in shapes
    vae = _empty(lambda: AutoencoderKL.from_config(vcfg))
    _assign(vae, vae_state, "VAE", vae_where, dtype)

    def text(name: str) -> tuple[dict, str] | None:
        if name in info.inside:
            return _sub(state, INSIDE[name]), where
        if name in parts:
            return parts[name], repr(str(components[name]))
        return None

    out: dict[str, Any] = {"transformer": transformer, "vae": vae}
    from diffusers import FlowMatchEulerDiscreteScheduler

    out["scheduler"] = FlowMatchEulerDiscreteScheduler.from_config(shipped_config(family, "scheduler"))
    clip_l = text("clip_l")
    if family == "flux":
        out.update(text_encoder=_clip("flux", "text_encoder", *clip_l, dtype, projection=False),
                   tokenizer=tokenizer(False),
                   text_encoder_2=_t5("flux", "text_encoder_2", *text("t5"), dtype), tokenizer_2=t5_tokenizer())
        return out
    out.update(text_encoder=_clip("sd3", "text_encoder", *clip_l, dtype, projection=True),
               tokenizer=tokenizer(False),
               text_encoder_2=_clip("sd3", "text_encoder_2", *text("clip_g"), dtype, projection=True),
               tokenizer_2=tokenizer(True))
    t5 = text("t5")
    out.update(text_encoder_3=_t5("sd3", "text_encoder_3", *t5, dtype) if t5 else None,
               tokenizer_3=t5_tokenizer() if t5 else None)
    return out


def folder_tokenizers(folder: Path, family: str) -> dict[str, Any]:
    """The shipped tokenizers for a diffusers folder that lacks its own (T5's among them), and `text_encoder_3=None`
    for an SD3 folder without T5."""
    out: dict[str, Any] = {}
    if not (folder / "tokenizer").is_dir():
        out["tokenizer"] = tokenizer(False)
    t5_slot = "3" if family == "sd3" else "2"
    if family == "sd3" and not (folder / "tokenizer_2").is_dir():
        out["tokenizer_2"] = tokenizer(True)
    if not (folder / f"text_encoder_{t5_slot}").is_dir():
        if family == "flux":
            raise UnsupportedModel(f"`path` {str(folder)!r} is a Flux folder without text_encoder_2 (T5-XXL); Flux "
                                   "needs its T5 encoder.", field="path", value=str(folder))
        out.update(text_encoder_3=None, tokenizer_3=None)
    elif not (folder / f"tokenizer_{t5_slot}").is_dir():
        out[f"tokenizer_{t5_slot}"] = t5_tokenizer()
    return out
