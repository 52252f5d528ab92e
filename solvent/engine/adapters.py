"""Recognising and loading what the store holds beside checkpoints: ControlNets, T2I-Adapters, IP-Adapters
with their CLIP image encoders, VAEs and embeddings.

A ControlNet comes as a diffusers folder (`config.json` with `_class_name: ControlNetModel`), as one
`.safetensors` file in diffusers' key layout (`controlnet_cond_embedding.*`), or as the single file
AUTOMATIC1111's extension uses (`control_model.input_hint_block.*`). Its architecture (SD or SDXL) and
cross-attention width come from the tensors, so a request that pairs it with a model it does not fit
is refused naming both.

A VAE comes as a diffusers folder (`_class_name: AutoencoderKL`) or one `.safetensors` file in
diffusers' or the original (`encoder.down.0.block…`) layout, as people download them beside their
checkpoints; its latent channels must match the model's (4 for Stable Diffusion, 8 for solvent-tiny).

A T2I-Adapter comes as a diffusers folder (`_class_name: T2IAdapter`) or one `.safetensors` file in its key
layout (`adapter.conv_in.*`); `adapter_type` says SD (`full_adapter`, `light_adapter`) or SDXL
(`full_adapter_xl`). It steers like a ControlNet and is named in the same units.

An IP-Adapter is the `.safetensors` file its authors publish (`image_proj.*` + `ip_adapter.N.to_k_ip.*`):
plain (`image_proj.proj`, reads the image encoder's projected embedding), plus and plus-face (a resampler,
`image_proj.latents`, reads its penultimate hidden states) or full-face (`image_proj.proj.0…3`). It needs a
CLIP image encoder (`CLIPVisionModelWithProjection`: a transformers folder, or its one `.safetensors` file)
of the width it was trained on, installed in the store too. FaceID variants need insightface's face
embeddings, which Solvent does not compute, and are refused.

A segmenter is a transformers CLIPSeg folder (`CLIPSegForImageSegmentation`): see `segment`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import IncompatibleAdapter, UnsupportedModel, ValidationFailed
from .checkpoint import read_shapes
from .embeddings import embedding_shapes
from .segment import segmenter_info

KINDS = ("checkpoint", "refiner", "controlnet", "t2i_adapter", "ip_adapter", "image_encoder", "vae", "embedding",
         "estimator", "upscaler", "segmenter")
STEERING = ("controlnet", "t2i_adapter")  # the kinds a control unit may name
_LDM = "control_model."


@dataclass(frozen=True)
class AdapterInfo:
    kind: str
    architecture: str  # "sd" | "sdxl"
    cross_attention_dim: int
    layout: str  # "diffusers" (folder or file) | "ldm" (A1111's single file)
    latent_channels: int | None = None  # VAEs
    details: dict | None = None  # kind-specific facts (IP-Adapter variant and encoder width, encoder sizes…)

    @property
    def family(self) -> str:
        """The family it was most likely made for (informational; fitting is checked by width)."""
        if self.kind == "vae":
            return "tiny" if self.latent_channels == 8 else "sd1"
        if self.kind == "image_encoder":  # OpenCLIP ViT-bigG is SDXL's; tiny test encoders are tiny
            hidden = (self.details or {}).get("hidden_size", 0)
            return "sdxl" if hidden == 1664 else "tiny" if hidden < 768 else "sd1"
        if self.kind == "ip_adapter" and self.cross_attention_dim == 2048:
            return "sdxl"
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
        if cfg.get("_class_name") == "T2IAdapter":
            return _t2i_info(cfg, "diffusers")
        if any(a.endswith("ForDepthEstimation") for a in cfg.get("architectures") or []):
            return AdapterInfo("estimator", "", 0, "transformers",
                               details={"task": "depth", "model_type": cfg.get("model_type", "")})
        seg = segmenter_info(cfg)
        if seg is not None:
            return AdapterInfo("segmenter", "", 0, "transformers", details=seg)
        if "CLIPVisionModelWithProjection" in (cfg.get("architectures") or []) or cfg.get("model_type") in (
                "clip_vision_model",):
            return _encoder_info(int(cfg["hidden_size"]), int(cfg.get("projection_dim") or 0), "diffusers")
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
    if "lora_controlnet" in shapes:  # Stability's control-LoRA: LoRA factors over a ControlNet made from the UNet
        width = next((v[1] for k, v in shapes.items() if k.endswith("attn2.to_k.down")), None)
        arch = "sdxl" if any(k.startswith("label_emb.") for k in shapes) else "sd"
        return AdapterInfo("controlnet", arch, int(width or 0), "control_lora", details={"layout": "control_lora"})
    if any(k.startswith("image_proj.") for k in shapes) and any(k.startswith("ip_adapter.") for k in shapes):
        return _ip_adapter_info(src, shapes)
    if "vision_model.embeddings.patch_embedding.weight" in shapes and not any(k.startswith("text_model.")
                                                                             for k in shapes):
        hidden = int(shapes["vision_model.embeddings.patch_embedding.weight"][0])
        proj = int(shapes["visual_projection.weight"][0]) if "visual_projection.weight" in shapes else 0
        return _encoder_info(hidden, proj, "transformers")
    if "adapter.conv_in.weight" in shapes:
        return _t2i_info(t2i_config(shapes), "diffusers")
    emb = embedding_shapes(shapes)
    if emb is not None:
        return AdapterInfo("embedding", emb[0], emb[1], "diffusers")
    if "encoder.conv_in.weight" in shapes and "decoder.conv_out.weight" in shapes:
        latent = int(shapes["encoder.conv_out.weight"][0]) // 2  # the encoder emits mean and log-variance
        layout = "ldm" if "encoder.down.0.block.0.norm1.weight" in shapes else "diffusers"
        return AdapterInfo("vae", "", 0, layout, latent)
    if any(k.removeprefix(_LDM).startswith("input_hint_block.") for k in shapes):  # with or without the prefix
        width = next((v[1] for k, v in shapes.items() if k.endswith("attn2.to_k.weight")), None)
        arch = "sdxl" if any(k.removeprefix(_LDM).startswith("label_emb.") for k in shapes) else "sd"
        return AdapterInfo("controlnet", arch, int(width or 0), "ldm")
    if _may_be_upscaler(shapes):
        from .upscale import upscaler_details

        details = upscaler_details(src)
        if details is not None:
            return AdapterInfo("upscaler", "", 0, "spandrel", details=details)
    return None


_NOT_UPSCALER = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "conditioner.", "text_encoders.",
                 "double_blocks.", "joint_blocks.", "lora_", "transformer.", "unet.", "text_model.", "encoder.block.")
UPSCALER_MAX_WEIGHTS = 200_000_000  # the largest super-resolution models (HAT-L, DAT) hold about 40M


def _may_be_upscaler(shapes: dict) -> bool:
    """Cheap, from the header: no key of a diffusion model or adapter, and a size an upscaler has (so spandrel,
    which reads the weights, never reads a multi-GB checkpoint)."""
    import math

    return bool(shapes) and not any(k.startswith(_NOT_UPSCALER) for k in shapes) and sum(
        math.prod(v) for v in shapes.values()) <= UPSCALER_MAX_WEIGHTS


def _encoder_info(hidden: int, projection: int, layout: str) -> AdapterInfo:
    return AdapterInfo("image_encoder", "", 0, layout, details={"hidden_size": hidden, "projection_dim": projection})


def _t2i_info(cfg: dict, layout: str) -> AdapterInfo:
    kind = cfg.get("adapter_type", "full_adapter")
    if kind not in ("full_adapter", "full_adapter_xl", "light_adapter"):
        raise UnsupportedModel(f"T2I-Adapter type {kind!r} is not one diffusers runs (full_adapter, "
                               "full_adapter_xl, light_adapter).", field="path", value=kind)
    return AdapterInfo("t2i_adapter", "sdxl" if kind == "full_adapter_xl" else "sd", 0, layout,
                       details={"adapter_type": kind, "in_channels": int(cfg.get("in_channels", 3)),
                                "channels": list(cfg.get("channels", [320, 640, 1280, 1280]))})


def t2i_config(shapes: dict[str, tuple]) -> dict:
    """A full `T2IAdapter`'s config read off a diffusers-layout file's tensor shapes: the first convolution reads
    the pixel-unshuffled control image, `in_channels × 8²` for SD (`full_adapter`), `× 16²` for SDXL."""
    if "adapter.body.0.resnets.0.block1.weight" not in shapes:
        raise UnsupportedModel("this T2I-Adapter file's layout is not one Solvent reads (a diffusers "
                               "`full_adapter` or `full_adapter_xl`); install its diffusers folder instead.",
                               field="path")
    blocks = sorted({int(k.split(".")[2]) for k in shapes if k.startswith("adapter.body.")})
    channels = [int(shapes[f"adapter.body.{b}.resnets.0.block1.weight"][0]) for b in blocks]
    res = len({k.split(".")[4] for k in shapes if k.startswith("adapter.body.0.resnets.")})
    unshuffled = int(shapes["adapter.conv_in.weight"][1])
    xl = unshuffled % 256 == 0 and unshuffled // 256 in (1, 3)
    factor = 16 if xl else 8
    return {"adapter_type": "full_adapter_xl" if xl else "full_adapter", "in_channels": unshuffled // factor ** 2,
            "channels": channels, "num_res_blocks": res, "downscale_factor": factor}


def _ip_adapter_info(src: Path, shapes: dict[str, tuple]) -> AdapterInfo:
    proj = {k[len("image_proj."):]: v for k, v in shapes.items() if k.startswith("image_proj.")}
    layers = sorted({int(k.split(".")[1]) for k in shapes if k.startswith("ip_adapter.") and "to_k_ip" in k})
    if "proj.weight" in proj:  # plain: projects the encoder's image embedding to a few tokens
        variant, reads, dim = "plain", "embeds", int(proj["proj.weight"][1])
    elif "latents" in proj:  # plus / plus-face: a perceiver resampler over the penultimate hidden states
        variant, reads, dim = "plus", "hidden", int(proj["proj_in.weight"][1])
    elif "proj.3.weight" in proj:  # full-face: an MLP over the hidden states
        variant, reads, dim = "full", "hidden", int(proj["proj.0.weight"][1])
    else:
        raise UnsupportedModel(
            f"`path` {str(src)!r} is an IP-Adapter FaceID variant: it needs insightface's face embeddings, which "
            "Solvent does not compute (their estimator weights are not shipped); use a plain, plus, plus-face or "
            "full-face IP-Adapter.", field="path", value=str(src))
    if not layers:
        raise UnsupportedModel(f"`path` {str(src)!r} has no `ip_adapter.N.to_k_ip` tensors.", field="path",
                               value=str(src))
    width = int(shapes[f"ip_adapter.{layers[0]}.to_k_ip.weight"][1])
    return AdapterInfo("ip_adapter", "sdxl" if width == 2048 else "sd", width, "ip_adapter",
                       details={"variant": variant, "reads": reads, "image_dim": dim, "layers": len(layers)})


def encoder_fits(adapter: dict, encoder: dict) -> bool:
    """Whether an image encoder (its `details`) gives what an IP-Adapter (its `details`) reads, at its width."""
    want = encoder.get("projection_dim") if adapter.get("reads") == "embeds" else encoder.get("hidden_size")
    return want == adapter.get("image_dim")


def check_fits(adapter_id: str, adapter_arch: str, adapter_width: int | None, model_id: str, model_family: str,
               model_arch: str, model_width: int | None, field: str, kind: str = "controlnet") -> None:
    """Refuse an adapter made for another architecture or text-encoder width, naming both."""
    if adapter_arch != model_arch or (adapter_width and model_width and adapter_width != model_width):
        label = {"controlnet": "ControlNet", "t2i_adapter": "T2I-Adapter"}.get(kind, kind)
        made = f" with {adapter_width}-wide text conditioning" if adapter_width else ""
        raise IncompatibleAdapter(
            f"`{field}` {adapter_id!r} is a {label} for {'SDXL' if adapter_arch == 'sdxl' else 'SD'} models{made}, "
            f"but `model` {model_id!r} is {model_family} ({model_width}-wide); pick a {label} made for it.",
            field=field, value=adapter_id)


def load_controlnet(path: Path, fmt: str, unet_config: dict, unet=None):
    """A `ControlNetModel` from a store record's files (fp32, CPU); A1111's layout converted with a config
    derived from the model's own UNet config (offline). A control-LoRA is a ControlNet made from `unet` (the
    model it steers, as ComfyUI and diffusers make it) with the file's LoRA factors fused in and its other
    tensors (control-image encoder, zero convolutions, norms) loaded over it."""
    import torch
    from diffusers import ControlNetModel

    if path.is_dir():
        return ControlNetModel.from_pretrained(str(path), local_files_only=True, torch_dtype=torch.float32)
    from safetensors.torch import load_file

    state = load_file(str(path))
    if "lora_controlnet" in state:
        if unet is None:
            raise ValidationFailed(f"`path` {str(path)!r} is a control-LoRA: it needs the UNet it steers.",
                                   field="path", value=str(path))
        import copy

        base = copy.deepcopy(unet).to("cpu", torch.float32)
        if getattr(base, "peft_config", None):  # the model's own weights, without the LoRAs a request attached
            base.unload_lora()
        net = ControlNetModel.from_unet(base)
        del base
        try:
            net.load_lora_adapter(state, prefix=None, controlnet_config=net.config)
        except (ValueError, KeyError, RuntimeError) as e:
            raise ValidationFailed(f"`path` {str(path)!r} does not fit the model's UNet as a control-LoRA: {e}",
                                   field="path", value=str(path)) from e
        net.fuse_lora()
        net.unload_lora()
        return net
    config = {k: v for k, v in unet_config.items() if not k.startswith("_") and k in _CONTROLNET_KEYS}
    if any(k.startswith(_LDM) or k.startswith("input_hint_block.") for k in state):
        from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

        raw = {k.removeprefix(_LDM): v for k, v in state.items()}
        state = convert_controlnet_checkpoint(raw, dict(config, upcast_attention=False))
        for ldm, ours in (("label_emb.0.0", "add_embedding.linear_1"), ("label_emb.0.2", "add_embedding.linear_2")):
            for part in ("weight", "bias"):  # SDXL's size/crop conditioning, which diffusers' converter leaves out
                if f"{ldm}.{part}" in raw:
                    state[f"{ours}.{part}"] = raw[f"{ldm}.{part}"]
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


def load_t2i_adapter(path: Path):
    """A `T2IAdapter` from a store record's files (fp32, CPU)."""
    import torch
    from diffusers import T2IAdapter

    if path.is_dir():
        return T2IAdapter.from_pretrained(str(path), local_files_only=True, torch_dtype=torch.float32)
    from safetensors.torch import load_file

    state = load_file(str(path))
    cfg = t2i_config({k: tuple(v.shape) for k, v in state.items()})
    net = T2IAdapter(**cfg)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValidationFailed(f"`path` {str(path)!r} does not fit the T2I-Adapter layout: {len(missing)} missing and "
                               f"{len(unexpected)} unexpected tensors.", field="path", value=str(path))
    return net


def read_ip_adapter(path: Path) -> dict:
    """An IP-Adapter file as diffusers' loader takes it: {"image_proj": {…}, "ip_adapter": {…}}."""
    from safetensors.torch import load_file

    out: dict[str, dict] = {"image_proj": {}, "ip_adapter": {}}
    for key, value in load_file(str(path)).items():
        head, _, rest = key.partition(".")
        if head in out:
            out[head][rest] = value
    return out


def encoder_config(shapes: dict[str, tuple]) -> dict:
    """A `CLIPVisionConfig` read off a single-file image encoder's tensor shapes (transformers' key layout).
    OpenCLIP's ViT-H and ViT-bigG (1280 and 1664 wide, the IP-Adapter encoders) use GELU and 16 heads."""
    hidden = int(shapes["vision_model.embeddings.patch_embedding.weight"][0])
    patch = int(shapes["vision_model.embeddings.patch_embedding.weight"][-1])
    positions = int(shapes["vision_model.embeddings.position_embedding.weight"][0])
    layers = 1 + max(int(k.split(".")[3]) for k in shapes if k.startswith("vision_model.encoder.layers."))
    return {"hidden_size": hidden, "patch_size": patch, "image_size": int(round((positions - 1) ** 0.5)) * patch,
            "intermediate_size": int(shapes["vision_model.encoder.layers.0.mlp.fc1.weight"][0]),
            "num_hidden_layers": layers, "num_attention_heads": 16 if hidden >= 1024 else max(1, hidden // 64),
            "projection_dim": int(shapes["visual_projection.weight"][0]) if "visual_projection.weight" in shapes
            else hidden, "hidden_act": "gelu" if hidden >= 1280 or hidden < 768 else "quick_gelu"}


def load_image_encoder(path: Path):
    """(`CLIPVisionModelWithProjection`, `CLIPImageProcessor`) from a store record's files (fp32, CPU); the
    processor as diffusers makes it for IP-Adapters: the encoder's own image size, CLIP's normalisation."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    if path.is_dir():
        model = CLIPVisionModelWithProjection.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    else:
        from safetensors.torch import load_file

        state = load_file(str(path))
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**encoder_config(
            {k: tuple(v.shape) for k, v in state.items()})))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise ValidationFailed(f"`path` {str(path)!r} does not fit the CLIP image encoder layout: "
                                   f"{len(missing)} missing and {len(unexpected)} unexpected tensors.", field="path",
                                   value=str(path))
    size = model.config.image_size
    return model.eval(), CLIPImageProcessor(size=size, crop_size=size)


def pickled_adapter(path: Path) -> dict | None:
    """The tensors of a pickled IP-Adapter (`.bin`: {"image_proj": …, "ip_adapter": …}) or embedding (A1111's
    `.pt`: `string_to_param`; diffusers' `.bin`: {token: tensor}), flattened to safetensors keys; None when the
    file is something else (a checkpoint). Read with torch's `weights_only` loader, which builds no objects but
    tensors and plain containers, and only after the caller allowed pickles."""
    import torch

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means: not a file this loader can read safely
        raise UnsupportedModel(f"`path` {str(path)!r} is a pickle that torch's safe loader refuses ({e}); convert it "
                               "to .safetensors where you trust it.", field="path", value=str(path)) from e
    if not isinstance(data, dict):
        return None
    for key in ("params_ema", "params"):  # Real-ESRGAN / BasicSR checkpoints wrap the weights
        if isinstance(data.get(key), dict):
            data = data[key]
            break
    if data and all(isinstance(v, torch.Tensor) for v in data.values()) and _may_be_upscaler(
            {k: tuple(v.shape) for k, v in data.items()}):
        from .upscale import describe

        if describe(dict(data)) is not None:
            return {k: v.contiguous() for k, v in data.items()}
    if isinstance(data.get("image_proj"), dict) and isinstance(data.get("ip_adapter"), dict):
        return {f"{head}.{k}": v for head in ("image_proj", "ip_adapter") for k, v in data[head].items()}
    params = data.get("string_to_param")
    if isinstance(params, dict) and params:
        return {"emb_params": next(iter(params.values())).detach()}
    if isinstance(data.get("clip_l"), torch.Tensor) and isinstance(data.get("clip_g"), torch.Tensor):
        return {"clip_l": data["clip_l"], "clip_g": data["clip_g"]}
    if len(data) == 1 and isinstance(next(iter(data.values())), torch.Tensor):
        (key, tensor), = data.items()
        if embedding_shapes({key.strip("<>"): tuple(tensor.shape)}) is not None:
            return {key.strip("<>") or "emb_params": tensor}
    return None


def load_estimator(path: Path):
    """(model, image processor) of a transformers depth-estimation folder (fp32, CPU)."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    model = AutoModelForDepthEstimation.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    return model.eval(), AutoImageProcessor.from_pretrained(str(path), local_files_only=True)


METRIC_DEPTH = ("zoedepth", "glpn")  # estimators whose output grows with distance (the others: with nearness)


def depth_map(model, processor, img, device):
    """A depth map as depth ControlNets read it: near bright, far dark, 0…255 grey, at the image's size."""
    import numpy as np
    import torch
    from PIL import Image

    inputs = processor(images=img.convert("RGB"), return_tensors="pt")
    with torch.inference_mode():
        pred = model(pixel_values=inputs["pixel_values"].to(device, next(model.parameters()).dtype)).predicted_depth
        pred = torch.nn.functional.interpolate(pred[:, None].float(), size=(img.size[1], img.size[0]),
                                               mode="bicubic", align_corners=False)[0, 0]
    lo, hi = pred.min(), pred.max()
    grey = ((pred - lo) / (hi - lo) * 255.0 if hi > lo else torch.zeros_like(pred)).clamp(0, 255)
    if model.config.model_type in METRIC_DEPTH:
        grey = 255.0 - grey
    return Image.fromarray(grey.round().byte().cpu().numpy().astype(np.uint8)).convert("RGB")
