"""Single-file checkpoints (`.safetensors`; pickle only when asked): recognise, configure, convert, load.

Everything is offline: the family is recognised from tensor keys, the component configs come
from the shipped family templates with their sizes read off the tensor shapes (so a checkpoint
of any width loads), and the key layout is converted with diffusers' own LDM converters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CorruptCheckpoint, UnsafeCheckpoint, UnsupportedModel
from ..generation.families import TOKENIZER_DIR, shipped_config

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

UNET = "model.diffusion_model."
VAE = "first_stage_model."
SD1_CLIP = "cond_stage_model.transformer.text_model."
SD2_OPENCLIP = "cond_stage_model.model."
XL_CLIP = "conditioner.embedders.0.transformer.text_model."
XL_OPENCLIP = "conditioner.embedders.1.model."
REFINER_OPENCLIP = "conditioner.embedders.0.model."  # SDXL's refiner has the OpenCLIP encoder only

PICKLE_REFUSAL = (
    "{path} is a pickle checkpoint. Loading a pickle runs arbitrary code hidden in the file, so Solvent "
    "refuses it by default. Convert it to .safetensors, or pass --unsafe-pickle (allow_pickle=True) if "
    "you trust where it came from."
)


@dataclass
class CheckpointInfo:
    """What the tensor keys and shapes of a checkpoint say about it."""

    family: str
    shapes: dict[str, tuple[int, ...]]
    inpainting: bool
    refiner: bool = False  # an SDXL refiner: image-to-image only, for the last steps of an SDXL generation


def is_pickle(path: Path) -> bool:
    return path.suffix.lower() in PICKLE_SUFFIXES


def read_shapes(path: Path, allow_pickle: bool = False) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape, from the safetensors header alone (no weights are read)."""
    path = Path(path)
    if is_pickle(path):
        return {k: tuple(v.shape) for k, v in read_state_dict(path, allow_pickle).items()}
    if path.suffix.lower() not in SAFE_SUFFIXES:
        raise UnsupportedModel(
            f"`path` must be a .safetensors file (or a diffusers folder) but is {str(path)!r}.",
            field="path",
            value=str(path),
        )
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CorruptCheckpoint(
            f"`path` {str(path)!r} is not a readable safetensors file: {e}", field="path", value=str(path)
        ) from e


def read_state_dict(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    """All tensors of a checkpoint, on the CPU."""
    path = Path(path)
    if is_pickle(path):
        if not allow_pickle:
            raise UnsafeCheckpoint(PICKLE_REFUSAL.format(path=path), field="path", value=str(path))
        import pickle

        import torch

        try:
            data = torch.load(str(path), map_location="cpu", weights_only=False)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
            raise CorruptCheckpoint(f"`path` {str(path)!r} could not be unpickled: {e}", field="path") from e
        if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
            data = data["state_dict"]
        if not isinstance(data, dict):
            raise CorruptCheckpoint(f"`path` {str(path)!r} holds no state dict.", field="path", value=str(path))
        return data
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    read_shapes(path)  # validates the header with a clear error first
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CorruptCheckpoint(f"`path` {str(path)!r} is truncated or corrupt: {e}", field="path") from e


def detect_family(shapes: dict[str, tuple[int, ...]], path: str = "") -> str:
    """`sd1`, `sd2` or `sdxl`, from which text encoders and UNet keys are present."""
    has_unet = f"{UNET}input_blocks.0.0.weight" in shapes
    if not has_unet:
        raise UnsupportedModel(
            f"`path` {path!r} has no Stable Diffusion UNet (no `{UNET}input_blocks.*` tensors); it may be a "
            "LoRA, a VAE or an embedding rather than a model.",
            field="path",
            value=path,
        )
    if f"{XL_OPENCLIP}token_embedding.weight" in shapes and f"{XL_CLIP}embeddings.token_embedding.weight" in shapes:
        return "sdxl"
    if f"{REFINER_OPENCLIP}token_embedding.weight" in shapes:
        return "sdxl"  # the refiner (`is_refiner`)
    if f"{SD2_OPENCLIP}token_embedding.weight" in shapes:
        return "sd2"
    if f"{SD1_CLIP}embeddings.token_embedding.weight" in shapes:
        return "sd1"
    raise UnsupportedModel(
        f"`path` {path!r} has a UNet but no text encoder Solvent recognises (SD 1.x CLIP, SD 2.x OpenCLIP, "
        "SDXL CLIP + OpenCLIP).",
        field="path",
        value=path,
    )


def is_refiner(shapes: dict[str, tuple[int, ...]]) -> bool:
    return f"{REFINER_OPENCLIP}token_embedding.weight" in shapes


def inspect_checkpoint(path: Path, allow_pickle: bool = False) -> CheckpointInfo:
    shapes = read_shapes(path, allow_pickle)
    family = detect_family(shapes, str(path))
    inpainting = shapes[f"{UNET}input_blocks.0.0.weight"][1] == 9
    return CheckpointInfo(family=family, shapes=shapes, inpainting=inpainting, refiner=is_refiner(shapes))


# ---------------------------------------------------------------------------------------------
# Configs: shipped family template + sizes read off the shapes
# ---------------------------------------------------------------------------------------------


def _indices(shapes: dict, prefix: str) -> list[int]:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in shapes if (m := pat.match(k))})


def unet_heads(family: str, channels: list[int]) -> int | list[int]:
    """Attention heads per level: SD 1.x uses 8 everywhere, SD 2.x and SDXL use 64-wide heads.

    Head count does not change tensor shapes, so it follows the family's convention (tests that
    build tiny checkpoints follow the same rule).
    """
    if family == "sd1":
        return 8
    return [max(1, c // 64) for c in channels]


def clip_heads(hidden: int) -> int:
    """CLIP and OpenCLIP text transformers use 64-wide heads (CLIP-L: 768 → 12)."""
    return max(1, hidden // 64)


def unet_config(info: CheckpointInfo, native: int) -> dict[str, Any]:
    s, fam = info.shapes, info.family
    cfg = shipped_config(fam, "unet")
    conv_in = s[f"{UNET}input_blocks.0.0.weight"]
    n_input = max(_indices(s, f"{UNET}input_blocks.")) + 1
    levels = 1 + sum(1 for i in range(n_input) if f"{UNET}input_blocks.{i}.0.op.weight" in s)
    lpb = n_input // levels - 1
    if lpb < 1 or levels * (lpb + 1) != n_input:
        raise CorruptCheckpoint(f"UNet has {n_input} input blocks, which fit no SD layout.", field="path")
    channels, down, tlayers = [], [], []
    for lvl in range(levels):
        first = 1 + lvl * (lpb + 1)
        channels.append(s[f"{UNET}input_blocks.{first}.0.out_layers.3.weight"][0])
        attn = f"{UNET}input_blocks.{first}.1.proj_in.weight" in s
        down.append("CrossAttnDownBlock2D" if attn else "DownBlock2D")
        tlayers.append(len(_indices(s, f"{UNET}input_blocks.{first}.1.transformer_blocks.")) if attn else 1)
    to_k = next(v for k, v in s.items() if k.startswith(UNET) and k.endswith("attn2.to_k.weight"))
    proj_in = next(v for k, v in s.items() if k.startswith(UNET) and k.endswith(".proj_in.weight"))
    cfg.update(
        in_channels=conv_in[1],
        out_channels=s[f"{UNET}out.2.weight"][0],
        block_out_channels=channels,
        layers_per_block=lpb,
        down_block_types=down,
        up_block_types=[t.replace("Down", "Up") for t in reversed(down)],
        cross_attention_dim=to_k[1],
        use_linear_projection=len(proj_in) == 2,
        attention_head_dim=unet_heads(fam, channels),
        sample_size=native // 8,
    )
    if fam == "sdxl":
        cfg["transformer_layers_per_block"] = tlayers
        proj_dim = s[f"{UNET}label_emb.0.0.weight"][1]
        refiner = is_refiner(s)  # its time ids: sizes and crop (4) and the aesthetic score (1); the base's: 6
        pooled = s[f"{REFINER_OPENCLIP if refiner else XL_OPENCLIP}text_projection"][1]
        cfg["projection_class_embeddings_input_dim"] = proj_dim
        cfg["addition_time_embed_dim"] = (proj_dim - pooled) // (5 if refiner else 6)
    return cfg


def vae_config(info: CheckpointInfo, native: int) -> dict[str, Any]:
    """The VAE's config, its sizes read off the original layout (`first_stage_model.encoder.down.*`). SD3's and
    Flux's 16-channel VAEs have no quant convolutions: the config says whether the file has them."""
    s = info.shapes
    cfg = shipped_config(info.family, "vae")
    levels = _indices(s, f"{VAE}encoder.down.")
    if not levels:
        raise CorruptCheckpoint("checkpoint has no VAE (`first_stage_model.*` tensors).", field="path")
    cfg.update(
        block_out_channels=[s[f"{VAE}encoder.down.{i}.block.0.conv1.weight"][0] for i in levels],
        down_block_types=["DownEncoderBlock2D"] * len(levels),
        up_block_types=["UpDecoderBlock2D"] * len(levels),
        layers_per_block=len(_indices(s, f"{VAE}encoder.down.0.block.")),
        latent_channels=s[f"{VAE}encoder.conv_out.weight"][0] // 2,  # the encoder emits mean and log-variance
        in_channels=s[f"{VAE}encoder.conv_in.weight"][1],
        out_channels=s[f"{VAE}decoder.conv_out.weight"][0],
        sample_size=native,
    )
    for key, conv in (("use_quant_conv", "quant_conv"), ("use_post_quant_conv", "post_quant_conv")):
        cfg[key] = f"{VAE}{conv}.weight" in s
    return cfg


def clip_config(info: CheckpointInfo, prefix: str, template: str) -> dict[str, Any]:
    """CLIP text model in the transformers key layout (SD 1.x, SDXL's first encoder)."""
    s = info.shapes
    cfg = shipped_config(info.family, template)
    vocab, hidden = s[f"{prefix}embeddings.token_embedding.weight"]
    cfg.update(
        vocab_size=vocab,
        hidden_size=hidden,
        max_position_embeddings=s[f"{prefix}embeddings.position_embedding.weight"][0],
        num_hidden_layers=len(_indices(s, f"{prefix}encoder.layers.")),
        intermediate_size=s[f"{prefix}encoder.layers.0.mlp.fc1.weight"][0],
        num_attention_heads=clip_heads(hidden),
    )
    if "text_projection.weight" in s:
        cfg["projection_dim"] = s["text_projection.weight"][0]
    return cfg


def openclip_config(info: CheckpointInfo, prefix: str, template: str, drop_last: bool) -> dict[str, Any]:
    """OpenCLIP text tower (SD 2.x: penultimate layer, so the last block is dropped; SDXL: all)."""
    s = info.shapes
    cfg = shipped_config(info.family, template)
    vocab, hidden = s[f"{prefix}token_embedding.weight"]
    layers = len(_indices(s, f"{prefix}transformer.resblocks."))
    cfg.update(
        vocab_size=vocab,
        hidden_size=hidden,
        max_position_embeddings=s[f"{prefix}positional_embedding"][0],
        num_hidden_layers=layers - 1 if drop_last else layers,
        intermediate_size=s[f"{prefix}transformer.resblocks.0.mlp.c_fc.weight"][0],
        num_attention_heads=clip_heads(hidden),
    )
    if f"{prefix}text_projection" in s:
        cfg["projection_dim"] = s[f"{prefix}text_projection"][1]
    return cfg


# ---------------------------------------------------------------------------------------------
# Building components
# ---------------------------------------------------------------------------------------------


def _load_strict(module, state: dict, what: str, path: Path) -> None:
    import torch

    state = {k: v for k, v in state.items() if not k.endswith("position_ids")}
    if not hasattr(module, "text_model") and hasattr(module, "embeddings"):
        # transformers >= 5.6 flattened `CLIPTextModel`: its keys have no `text_model.` prefix.
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as e:  # size mismatches
        raise CorruptCheckpoint(
            f"the {what} of {str(path)!r} does not match its own layout: {str(e).splitlines()[-1]}", field="path"
        ) from e
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise CorruptCheckpoint(
            f"the {what} of {str(path)!r} is incomplete: {len(missing)} tensors missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}).",
            field="path",
        )
    with torch.no_grad():
        for p in module.parameters():
            if not torch.isfinite(p).all():
                raise CorruptCheckpoint(f"the {what} of {str(path)!r} holds NaN or infinite weights.", field="path")


def tokenizer(openclip: bool):
    """The CLIP BPE tokenizer shipped in the package (OpenCLIP pads with `!`)."""
    from transformers import CLIPTokenizer

    kwargs = {"pad_token": "!"} if openclip else {}
    return CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True, **kwargs)


def load_components(path: Path, family: str, native: int, allow_pickle: bool = False) -> dict[str, Any]:
    """Build diffusers components from one single-file checkpoint, fully offline (fp32, CPU)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    path = Path(path)
    state = read_state_dict(path, allow_pickle)
    info = CheckpointInfo(family=family, shapes={k: tuple(v.shape) for k, v in state.items()}, inpainting=False)
    detected = detect_family(info.shapes, str(path))
    if detected != family:
        raise UnsupportedModel(
            f"`family` is {family!r} but {str(path)!r} is a {detected} checkpoint.", field="family", value=family
        )

    # 1. UNet
    ucfg = unet_config(info, native)
    unet = UNet2DConditionModel.from_config(ucfg)
    _load_strict(unet, convert_ldm_unet_checkpoint(state, ucfg), "UNet", path)

    # 2. VAE
    vcfg = vae_config(info, native)
    vae = AutoencoderKL.from_config(vcfg)
    _load_strict(vae, convert_ldm_vae_checkpoint(state, vcfg), "VAE", path)

    # 3. Text encoder(s) and tokenizers
    components: dict[str, Any] = {"unet": unet, "vae": vae}
    if family == "sd1":
        te = CLIPTextModel(CLIPTextConfig(**clip_config(info, SD1_CLIP, "text_encoder")))
        _load_strict(te, convert_ldm_clip_checkpoint(state), "text encoder", path)
        components.update(text_encoder=te, tokenizer=tokenizer(openclip=False))
    elif family == "sd2":
        cfg = openclip_config(info, SD2_OPENCLIP, "text_encoder", drop_last=True)
        last = cfg["num_hidden_layers"]
        trimmed = {
            k: v
            for k, v in state.items()
            if not k.startswith(f"{SD2_OPENCLIP}transformer.resblocks.{last}.") and k != f"{SD2_OPENCLIP}text_projection"
        }
        te = CLIPTextModel(CLIPTextConfig(**cfg))
        _load_strict(te, convert_open_clip_checkpoint(te, trimmed, prefix=SD2_OPENCLIP), "text encoder", path)
        components.update(text_encoder=te, tokenizer=tokenizer(openclip=True))
    elif is_refiner(info.shapes):
        cfg2 = openclip_config(info, REFINER_OPENCLIP, "text_encoder_2", drop_last=False)
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**cfg2))
        _load_strict(te2, convert_open_clip_checkpoint(te2, state, prefix=REFINER_OPENCLIP), "text encoder", path)
        components.update(text_encoder=None, tokenizer=None, text_encoder_2=te2, tokenizer_2=tokenizer(True))
    else:
        te = CLIPTextModel(CLIPTextConfig(**clip_config(info, XL_CLIP, "text_encoder")))
        _load_strict(te, convert_ldm_clip_checkpoint(state), "text encoder", path)
        cfg2 = openclip_config(info, XL_OPENCLIP, "text_encoder_2", drop_last=False)
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**cfg2))
        _load_strict(te2, convert_open_clip_checkpoint(te2, state, prefix=XL_OPENCLIP), "second text encoder", path)
        components.update(
            text_encoder=te, tokenizer=tokenizer(openclip=False), text_encoder_2=te2, tokenizer_2=tokenizer(True)
        )
    return components
