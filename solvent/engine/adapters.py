"""Recognising and loading what the store holds beside checkpoints: ControlNets and VAEs.

A ControlNet comes as a diffusers folder (`config.json` with `_class_name: ControlNetModel`), as one
`.safetensors` file in diffusers' key layout (`controlnet_cond_embedding.*`), or as the single file
AUTOMATIC1111's extension uses (`control_model.input_hint_block.*`). Its architecture (SD or SDXL) and
cross-attention width come from the tensors, so a request that pairs it with a model it does not fit
is refused naming both.

A VAE comes as a diffusers folder (`_class_name: AutoencoderKL`) or one `.safetensors` file in
diffusers' or the original (`encoder.down.0.block…`) layout, as people download them beside their
checkpoints; its latent channels must match the model's (4 for Stable Diffusion, 8 for solvent-tiny).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import IncompatibleAdapter, UnsupportedModel, ValidationFailed
from .checkpoint import read_shapes
from .embeddings import embedding_shapes

KINDS = ("checkpoint", "controlnet", "vae", "embedding")
_LDM = "control_model."


@dataclass(frozen=True)
class AdapterInfo:
    kind: str
    architecture: str  # "sd" | "sdxl"
    cross_attention_dim: int
    layout: str  # "diffusers" (folder or file) | "ldm" (A1111's single file)
    latent_channels: int | None = None  # VAEs

    @property
    def family(self) -> str:
        """The family it was most likely made for (informational; fitting is checked by width)."""
        if self.kind == "vae":
            return "tiny" if self.latent_channels == 8 else "sd1"
        if self.architecture == "sdxl":
            return "sdxl"
        return {768: "sd1", 1024: "sd2", 64: "tiny"}.get(self.cross_attention_dim, "sd1")


def inspect_adapter(src: Path) -> AdapterInfo | None:
    """What adapter `src` is, or None when it is not one (a checkpoint, or something else)."""
    if src.is_dir():
        cfg_path = src / "config.json"
        if not cfg_path.is_file():
            return None
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if cfg.get("_class_name") == "AutoencoderKL" and not (src / "model_index.json").is_file():
            return AdapterInfo("vae", "", 0, "diffusers", int(cfg.get("latent_channels", 4)))
        if cfg.get("_class_name") != "ControlNetModel":
            return None
        if not any(p.suffix == ".safetensors" for p in src.iterdir()):
            raise UnsupportedModel(f"`path` {str(src)!r} is a ControlNet folder without .safetensors weights.",
                                   field="path", value=str(src))
        arch = "sdxl" if cfg.get("addition_embed_type") == "text_time" else "sd"
        return AdapterInfo("controlnet", arch, int(cfg["cross_attention_dim"]), "diffusers")
    if src.suffix.lower() != ".safetensors":
        return None
    shapes = read_shapes(src)
    if any(k.startswith("controlnet_cond_embedding.") for k in shapes):
        width = next((v[1] for k, v in shapes.items() if k.endswith("attn2.to_k.weight")), None)
        arch = "sdxl" if "add_embedding.linear_1.weight" in shapes else "sd"
        return AdapterInfo("controlnet", arch, int(width or 0), "diffusers")
    emb = embedding_shapes(shapes)
    if emb is not None:
        return AdapterInfo("embedding", emb[0], emb[1], "diffusers")
    if "encoder.conv_in.weight" in shapes and "decoder.conv_out.weight" in shapes:
        latent = int(shapes["encoder.conv_out.weight"][0]) // 2  # the encoder emits mean and log-variance
        layout = "ldm" if "encoder.down.0.block.0.norm1.weight" in shapes else "diffusers"
        return AdapterInfo("vae", "", 0, layout, latent)
    if any(k.startswith(_LDM + "input_hint_block.") for k in shapes):
        width = next((v[1] for k, v in shapes.items() if k.startswith(_LDM) and k.endswith("attn2.to_k.weight")), None)
        arch = "sdxl" if any(k.startswith(_LDM + "label_emb.") for k in shapes) else "sd"
        return AdapterInfo("controlnet", arch, int(width or 0), "ldm")
    return None


def check_fits(adapter_id: str, adapter_arch: str, adapter_width: int | None, model_id: str, model_family: str,
               model_arch: str, model_width: int | None, field: str) -> None:
    """Refuse an adapter made for another architecture or text-encoder width, naming both."""
    if adapter_arch != model_arch or (adapter_width and model_width and adapter_width != model_width):
        raise IncompatibleAdapter(
            f"`{field}` {adapter_id!r} is a ControlNet for {'SDXL' if adapter_arch == 'sdxl' else 'SD'} models with "
            f"{adapter_width}-wide text conditioning, but `model` {model_id!r} is {model_family} "
            f"({model_width}-wide); pick a ControlNet made for it.", field=field, value=adapter_id)


def load_controlnet(path: Path, fmt: str, unet_config: dict):
    """A `ControlNetModel` from a store record's files (fp32, CPU); A1111's layout converted with a config
    derived from the model's own UNet config (offline)."""
    import torch
    from diffusers import ControlNetModel

    if path.is_dir():
        return ControlNetModel.from_pretrained(str(path), local_files_only=True, torch_dtype=torch.float32)
    from safetensors.torch import load_file

    state = load_file(str(path))
    config = {k: v for k, v in unet_config.items() if not k.startswith("_") and k in _CONTROLNET_KEYS}
    if any(k.startswith(_LDM) for k in state):
        from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

        state = convert_controlnet_checkpoint(state, dict(config, upcast_attention=False))
    config["conditioning_embedding_out_channels"] = _conditioning_channels(state)
    net = ControlNetModel(**config)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValidationFailed(f"`path` {str(path)!r} does not fit the ControlNet layout of its model: "
                               f"{len(missing)} missing and {len(unexpected)} unexpected tensors (e.g. "
                               f"{(missing or unexpected)[0]!r}).", field="path", value=str(path))
    return net


def load_vae(path: Path, vae_config: dict):
    """An `AutoencoderKL` from a store record's files (fp32, CPU); a single file takes the model's VAE config."""
    import torch
    from diffusers import AutoencoderKL

    if path.is_dir():
        return AutoencoderKL.from_pretrained(str(path), local_files_only=True, torch_dtype=torch.float32)
    from safetensors.torch import load_file

    state = load_file(str(path))
    config = {k: v for k, v in vae_config.items() if not k.startswith("_")}
    if "encoder.down.0.block.0.norm1.weight" in state:  # the original layout: convert as inside a checkpoint
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        state = convert_ldm_vae_checkpoint({f"first_stage_model.{k}": v for k, v in state.items()}, config)
    vae = AutoencoderKL(**config)
    missing, unexpected = vae.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValidationFailed(f"`vae` {str(path)!r} does not fit the model's VAE layout: {len(missing)} missing and "
                               f"{len(unexpected)} unexpected tensors (e.g. {(missing or unexpected)[0]!r}).",
                               field="vae", value=str(path))
    return vae


def _conditioning_channels(state: dict) -> tuple[int, ...]:
    """The control-image encoder's widths, from its tensors (its depth sets the downsampling, which must match
    the model's VAE: 8× for Stable Diffusion, 4× for solvent-tiny)."""
    out = [int(state["controlnet_cond_embedding.conv_in.weight"].shape[0])]
    k = 1
    while f"controlnet_cond_embedding.blocks.{k}.weight" in state:
        out.append(int(state[f"controlnet_cond_embedding.blocks.{k}.weight"].shape[0]))
        k += 2
    return tuple(out)


# UNet config fields a ControlNet shares (diffusers' `ControlNetModel.from_unet` copies the same ones).
_CONTROLNET_KEYS = ("in_channels", "flip_sin_to_cos", "freq_shift", "down_block_types", "only_cross_attention",
                    "block_out_channels", "layers_per_block", "downsample_padding", "mid_block_scale_factor",
                    "act_fn", "norm_num_groups", "norm_eps", "cross_attention_dim", "transformer_layers_per_block",
                    "encoder_hid_dim", "encoder_hid_dim_type", "attention_head_dim", "num_attention_heads",
                    "use_linear_projection", "class_embed_type", "addition_embed_type", "addition_time_embed_dim",
                    "num_class_embeds", "upcast_attention", "resnet_time_scale_shift",
                    "projection_class_embeddings_input_dim")
