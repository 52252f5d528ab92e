"""`solvent-tiny`: the embedded model that ships inside the package (diffusers format, < 25 MB).

`record()` describes it to the model store (the composition root hands it over), and `controlnet_record()`
its ControlNet (`solvent-tiny-silhouette`: a drawn silhouette or scribble places the object); `recipe/`
holds how both are built, trained and evaluated (`python -m solvent.tiny.recipe.train`,
`python -m solvent.tiny.recipe.controlnet`), which nothing at run time imports.
Its model card is `solvent/tiny/README.md`.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

MODEL_ID = "solvent-tiny"
CONTROLNET_ID = "solvent-tiny-silhouette"
UPSCALER_ID = "solvent-tiny-upscale"


def weights_dir() -> Path:
    return Path(str(resources.files("solvent.tiny") / "weights"))


@cache
def manifest() -> dict:
    path = weights_dir() / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def record():
    """The store's record of the built-in model (a fresh `ModelRecord` each call)."""
    from ..engine.store import ModelRecord
    from ..generation.families import FAMILIES

    fam, man, folder = FAMILIES["tiny"], manifest(), weights_dir()
    sched = folder / "scheduler" / "scheduler_config.json"
    pred = json.loads(sched.read_text()).get("prediction_type", "epsilon") if sched.is_file() else "epsilon"
    return ModelRecord(
        id=MODEL_ID, family="tiny", format="diffusers", source="builtin", path=str(folder),
        native_resolution=fam.native, default_steps=fam.default_steps, default_cfg=fam.default_cfg,
        default_sampler=fam.default_sampler, prediction_type=pred, files=man.get("files", []),
        size_bytes=sum(f["size"] for f in man.get("files", [])), sha256=man.get("sha256", ""),
        short_hash=man.get("sha256", "")[:10], origin="solvent package", license_name="Apache-2.0",
        license_url="https://www.apache.org/licenses/LICENSE-2.0",
    )


def controlnet_dir() -> Path:
    return Path(str(resources.files("solvent.tiny") / "controlnet"))


def _shipped(model_id: str, folder: Path, weights: Path, **kind):
    """The record of a model shipped beside solvent-tiny (its sha256 from its `recipe.json`), or None when its
    weights are not in this install."""
    from ..engine.store import ModelRecord
    from ..generation.families import FAMILIES

    if not weights.is_file():
        return None
    recipe = json.loads((folder / "recipe.json").read_text()) if (folder / "recipe.json").is_file() else {}
    fam = FAMILIES["tiny"]
    return ModelRecord(
        id=model_id, family="tiny", source="builtin", native_resolution=fam.native, default_steps=fam.default_steps,
        default_cfg=fam.default_cfg, default_sampler=fam.default_sampler, size_bytes=weights.stat().st_size,
        sha256=recipe.get("sha256", ""), short_hash=recipe.get("sha256", "")[:10], origin="solvent package",
        license_name="Apache-2.0", license_url="https://www.apache.org/licenses/LICENSE-2.0", **kind)


def controlnet_record():
    """The store's record of the built-in ControlNet (a silhouette or scribble places the object), or None
    when its weights are not in this install."""
    folder = controlnet_dir()
    return _shipped(CONTROLNET_ID, folder, folder / "diffusion_pytorch_model.safetensors", format="diffusers",
                    path=str(folder), kind="controlnet", architecture="sd", cross_attention_dim=64)


def upscaler_dir() -> Path:
    return Path(str(resources.files("solvent.tiny") / "upscale"))


def upscaler_record():
    """The store's record of the built-in ×4 upscaler (`solvent-tiny-upscale`, trained on the scene generator), or
    None when its weights are not in this install."""
    folder = upscaler_dir()
    weights = folder / "model.safetensors"
    return _shipped(UPSCALER_ID, folder, weights, format="single_file", path=str(weights), kind="upscaler",
                    details={"scale": 4, "architecture": "RealESRGAN Compact", "channels": 3})
