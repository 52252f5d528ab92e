"""Write diffusers components in the original (CompVis / Stability) single-file key layout.

The inverse of diffusers' LDM converters, used by tests to make tiny `.safetensors` checkpoints
that look exactly like real SD 1.x / SD 2.x / SDXL files.
"""

from __future__ import annotations

import re

import torch

RES = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
       ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def _res(rest: str) -> str:
    for a, b in RES:
        if rest.startswith(a + "."):
            return b + rest[len(a):]
    raise KeyError(rest)


def unet_to_ldm(state: dict, cfg: dict) -> dict:
    lpb = cfg["layers_per_block"]
    up_types = cfg["up_block_types"]
    simple = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
              "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
              "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    out = {}
    for k, v in state.items():
        new = None
        for a, b in simple.items():
            if k.startswith(a + "."):
                new = b + k[len(a):]
        if new is None and (m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k)):
            i, j = int(m[1]), int(m[2])
            new = f"input_blocks.{1 + i * (lpb + 1) + j}.0.{_res(m[3])}"
        elif new is None and (m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", k)):
            i, j = int(m[1]), int(m[2])
            new = f"input_blocks.{1 + i * (lpb + 1) + j}.1.{m[3]}"
        elif new is None and (m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", k)):
            new = f"input_blocks.{(int(m[1]) + 1) * (lpb + 1)}.0.op.{m[2]}"
        elif new is None and (m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", k)):
            new = f"middle_block.{2 * int(m[1])}.{_res(m[2])}"
        elif new is None and (m := re.match(r"mid_block\.attentions\.0\.(.*)", k)):
            new = f"middle_block.1.{m[1]}"
        elif new is None and (m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k)):
            i, j = int(m[1]), int(m[2])
            new = f"output_blocks.{i * (lpb + 1) + j}.0.{_res(m[3])}"
        elif new is None and (m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", k)):
            i, j = int(m[1]), int(m[2])
            new = f"output_blocks.{i * (lpb + 1) + j}.1.{m[3]}"
        elif new is None and (m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", k)):
            i = int(m[1])
            pos = 2 if up_types[i].startswith("CrossAttn") else 1
            new = f"output_blocks.{i * (lpb + 1) + lpb}.{pos}.conv.{m[2]}"
        if new is None:
            raise KeyError(k)
        out["model.diffusion_model." + new] = v
    return out


def vae_to_ldm(state: dict, cfg: dict) -> dict:
    n = len(cfg["up_block_types"])
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for k, v in state.items():
        new = k.replace("conv_norm_out", "norm_out")
        if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", k):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k):
            new = f"decoder.up.{n - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", k):
            new = f"decoder.up.{n - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", k):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)", k):
            new = f"{m[1]}.mid.attn_1.{attn[m[2]]}.{m[3]}"
            if m[3] == "weight" and v.ndim == 2:
                v = v[:, :, None, None]
        out["first_stage_model." + new] = v
    return out


def _canonical(state: dict) -> dict:
    """transformers >= 5.6 flattened `CLIPTextModel` (no `text_model.` prefix); real files keep it."""
    return {
        (k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
        for k, v in state.items()
        if not k.endswith("position_ids")
    }


def clip_to_ldm(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in _canonical(state).items()}


def openclip_to_ldm(state: dict, prefix: str) -> dict:
    out = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in _canonical(state).items():
        if k == "text_model.embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = v
        elif k == "text_model.embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = v
        elif k.startswith("text_model.final_layer_norm."):
            out[prefix + "ln_final." + k.rsplit(".", 1)[1]] = v
        elif k == "text_projection.weight":
            out[prefix + "text_projection"] = v.T.contiguous()
        elif m := re.match(r"text_model\.encoder\.layers\.(\d+)\.(.*)", k):
            i, rest = m[1], m[2]
            if mm := re.match(r"self_attn\.([qkv])_proj\.(weight|bias)", rest):
                qkv.setdefault(f"{i}.{mm[2]}", {})[mm[1]] = v
                continue
            rest = (rest.replace("self_attn.out_proj", "attn.out_proj").replace("layer_norm1", "ln_1")
                    .replace("layer_norm2", "ln_2").replace("mlp.fc1", "mlp.c_fc").replace("mlp.fc2", "mlp.c_proj"))
            out[f"{prefix}transformer.resblocks.{i}.{rest}"] = v
        else:
            raise KeyError(k)
    for key, parts in qkv.items():
        i, kind = key.split(".")
        out[f"{prefix}transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def controlnet_to_ldm(state: dict, cfg: dict) -> dict:
    """A diffusers ControlNet in the single-file layout sd-webui-controlnet's downloads use (`control_model.`):
    the UNet-like encoder as `input_blocks`/`middle_block`, the control-image encoder as `input_hint_block.N`
    (convolutions at even indices, SiLU between), the zero convolutions as `zero_convs.N.0` and
    `middle_block_out.0`."""
    out, unet_part = {}, {}
    n_blocks = len({k.split(".")[2] for k in state if k.startswith("controlnet_cond_embedding.blocks.")})
    for k, v in state.items():
        if m := re.match(r"controlnet_cond_embedding\.conv_in\.(.*)", k):
            out[f"input_hint_block.0.{m[1]}"] = v
        elif m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.*)", k):
            out[f"input_hint_block.{2 * (int(m[1]) + 1)}.{m[2]}"] = v
        elif m := re.match(r"controlnet_cond_embedding\.conv_out\.(.*)", k):
            out[f"input_hint_block.{2 * (n_blocks + 1)}.{m[1]}"] = v
        elif m := re.match(r"controlnet_down_blocks\.(\d+)\.(.*)", k):
            out[f"zero_convs.{m[1]}.0.{m[2]}"] = v
        elif m := re.match(r"controlnet_mid_block\.(.*)", k):
            out[f"middle_block_out.0.{m[1]}"] = v
        else:
            unet_part[k] = v
    for k, v in unet_to_ldm(unet_part, cfg).items():
        out[k.replace("model.diffusion_model.", "", 1)] = v
    return {"control_model." + k: v.contiguous() for k, v in out.items()}
