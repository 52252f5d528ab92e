"""LoRA adapters: kohya/AUTOMATIC1111 (`lora_unet_…`, `lora_te_…`) and diffusers key layouts.

Files live in `SOLVENT_HOME/loras/<name>.safetensors` and are named by that name only: a name is
never a path, so a request cannot reach a file outside the folder, and no error says where the folder
is or whether a file exists elsewhere. Before loading, the adapter's family is checked against the
model's so a wrong-family LoRA is a clear error.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import CorruptCheckpoint, IncompatibleLora, LoraNotFound, ValidationFailed
from ..generation.families import FLOW_ARCHITECTURES
from .checkpoint import read_shapes

NAME = re.compile(r"^\w[\w. -]{0,199}$")  # no separators, so no path


def resolve_lora(name: str, loras_dir: Path) -> Path:
    """The installed LoRA called `name` (the file `<name>.safetensors` directly inside `loras_dir`)."""
    if isinstance(name, str) and NAME.match(name) and not name.endswith("."):
        cand = loras_dir / f"{name}.safetensors"  # an operator's own symlink in the folder is followed
        if cand.is_file():
            return cand
    known = sorted(q.stem for q in loras_dir.glob("*.safetensors")) if loras_dir.is_dir() else []
    raise LoraNotFound(
        f"`loras` names {str(name)[:200]!r}, which is not an installed LoRA (installed: {', '.join(known) or 'none'}).",
        field="loras",
        value=str(name)[:200],
    )


def adapter_name(path: Path) -> str:
    return re.sub(r"\W", "_", path.stem)


_FLUX_KEYS = ("double_blocks", "single_blocks", "single_transformer_blocks")


def lora_family(path: Path) -> tuple[str, int | None]:
    """('sdxl' | 'sd' | 'sd3' | 'flux' | 'transformer', cross-attention width or None) from the adapter's keys and
    shapes. Flux LoRAs come as diffusers, kohya (`lora_unet_double_blocks_…`) or BFL / ComfyUI
    (`diffusion_model.double_blocks.…`) files; SD3's as diffusers or Stability (`joint_blocks`) files; a diffusers
    LoRA of the joint blocks alone could be either (`transformer`)."""
    shapes = read_shapes(path)
    if not shapes:
        raise CorruptCheckpoint(f"`loras` file {str(path)!r} holds no tensors.", field="loras")
    keys = list(shapes)
    if any(f in k for k in keys for f in _FLUX_KEYS):
        return "flux", None
    if any("joint_blocks" in k for k in keys):
        return "sd3", None
    if any(k.startswith("transformer.transformer_blocks.") for k in keys):
        return "transformer", None
    xl = any(k.startswith(("lora_te2_", "text_encoder_2.", "lora_te2.")) for k in shapes) or any(
        "add_embedding" in k for k in shapes
    )
    cross = None
    for k, shape in shapes.items():
        if "attn2" in k and ("to_k" in k) and ("lora_down" in k or "lora_A" in k or "lora.down" in k):
            cross = shape[-1]
            break
    return ("sdxl" if xl else "sd"), cross


def fits_architecture(lora_arch: str, architecture: str) -> bool:
    return lora_arch == architecture or (lora_arch == "transformer" and architecture in FLOW_ARCHITECTURES)


def check_lora(path: Path, architecture: str, cross_attention_dim: int | None) -> None:
    fam, cross = lora_family(path)
    if not fits_architecture(fam, architecture) or (None not in (cross, cross_attention_dim)
                                                    and cross != cross_attention_dim):
        got = f"{fam}, cross-attention width {cross}" if cross else fam
        raise IncompatibleLora(
            f"`loras` {path.stem!r} was trained for a different model family ({got}) than this model "
            f"({architecture}, cross-attention width {cross_attention_dim}).",
            field="loras",
            value=path.stem,
        )


def apply_loras(pipe, loaded: set[str], specs: list[tuple[Path, float]], architecture: str) -> None:
    """Load what is missing, then activate exactly `specs` with their weights (none: LoRA off)."""
    names, weights = [], []
    for path, weight in specs:
        if not -10 <= weight <= 10:
            raise ValidationFailed(
                f"`loras` weight for {path.stem!r} must be between -10 and 10 but is {weight}.",
                field="loras",
                value=weight,
            )
        name = adapter_name(path)
        if name not in loaded:
            unet = getattr(pipe, "unet", None)
            check_lora(path, architecture, unet.config.cross_attention_dim if unet is not None else None)
            source = _flux_original(path, pipe) if architecture == "flux" else None
            try:
                pipe.load_lora_weights(source if source is not None else str(path), adapter_name=name)
            except (ValueError, RuntimeError, KeyError) as e:
                raise IncompatibleLora(
                    f"`loras` {path.stem!r} does not fit this model: {str(e).splitlines()[0][:300]}",
                    field="loras",
                    value=path.stem,
                ) from e
            if not any(name in names for names in pipe.get_list_adapters().values()):
                # diffusers loads a LoRA whose keys match nothing as a silent no-op: say so instead.
                raise IncompatibleLora(f"`loras` {path.stem!r} holds no tensor this model has (a LoRA of another "
                                       "model, or of a layout Solvent does not read).", field="loras",
                                       value=path.stem)
            loaded.add(name)
        names.append(name)
        weights.append(float(weight))
    if names:
        pipe.enable_lora()
        pipe.set_adapters(names, adapter_weights=weights)
    elif loaded:
        pipe.disable_lora()


def _flux_original(path: Path, pipe) -> dict | None:
    """A Flux LoRA in Black Forest Labs' / ComfyUI's module names, converted for diffusers (None: another layout,
    which diffusers reads itself)."""
    from safetensors.torch import load_file

    from .flow import flux_lora_to_diffusers

    cfg = pipe.transformer.config
    return flux_lora_to_diffusers(load_file(str(path)), cfg.num_attention_heads * cfg.attention_head_dim)
