"""The model store under `SOLVENT_HOME/models`: one folder per model with a `model.json` record.

Adding copies the files into a temporary folder, hashes them, writes the record and renames the
folder into place, so a crash never leaves a half-added model. Built-in models (Solvent's own
`solvent-tiny`, which ships inside the package) are handed to the store by the composition root as
record factories, so the store knows no model package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import (
    Conflict,
    ModelNotFound,
    Offline,
    SolventError,
    UnsafeCheckpoint,
    UnsupportedModel,
    ValidationFailed,
)
from ..generation.families import FLOW_ARCHITECTURES, Preset, get_family, get_preset, preset_for
from .adapters import encoder_fits, inspect_adapter, pickled_adapter
from .checkpoint import PICKLE_REFUSAL, SAFE_SUFFIXES, UNET, inspect_checkpoint, is_pickle, read_shapes
from .flow import COMPONENTS, FlowInfo, check_components, inspect_flow

_NOT_DENOISER = ("first_stage_model.", "vae.", "cond_stage_model.", "conditioner.", "text_encoders.")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass
class ModelRecord:
    """Everything Solvent knows about one installed model."""

    id: str
    family: str
    format: str  # "diffusers" (a folder) | "single_file"
    source: str  # "builtin" | "folder" | "checkpoint" | "hub"
    path: str  # folder or file, relative to the model's own folder unless absolute
    native_resolution: int
    default_steps: int
    default_cfg: float
    default_sampler: str
    prediction_type: str = "epsilon"
    inpainting: bool = False
    files: list[dict[str, Any]] = field(default_factory=list)
    size_bytes: int = 0
    sha256: str = ""
    short_hash: str = ""  # AUTOMATIC1111's "Model hash": the first 10 hex digits of the sha256
    added_at: str = ""
    origin: str = ""  # where it was added from (path or repo id)
    license_name: str = ""
    license_url: str = ""
    allow_pickle: bool = False
    # "checkpoint" (generates) | "controlnet" | "t2i_adapter" | "ip_adapter" | "image_encoder" | "vae" |
    # "embedding" (each steers or changes a checkpoint of its family)
    kind: str = "checkpoint"
    architecture: str = ""  # adapters: "sd" | "sdxl"
    cross_attention_dim: int | None = None  # adapters: the text-conditioning width it was trained with
    latent_channels: int | None = None  # VAEs: must equal the model's
    default_vae: str | None = None  # checkpoints: the VAE its requests get unless they name one
    details: dict[str, Any] = field(default_factory=dict)  # kind-specific facts (`adapters.AdapterInfo.details`)
    image_encoder: str | None = None  # IP-Adapters: the image encoder in the store it reads
    preset: str = ""  # checkpoints: the few-step preset its defaults came from (`turbo`, `lcm`, `schnell`, …)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def sha256_file(path: Path, progress: Progress | None = None, done: int = 0, total: int = 0) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return h.hexdigest()


def hash_files(root: Path, files: list[Path], progress: Progress | None = None) -> tuple[list[dict], str, int]:
    """Per-file sha256 and one digest over them (for a single file: that file's own sha256)."""
    total = sum(f.stat().st_size for f in files)
    out, done = [], 0
    for f in files:
        digest = sha256_file(f, progress, done, total)
        size = f.stat().st_size
        done += size
        out.append({"path": str(f.relative_to(root)) if f.is_relative_to(root) else str(f), "size": size,
                    "sha256": digest})
    if len(out) == 1:
        overall = out[0]["sha256"]
    else:
        overall = hashlib.sha256("".join(f"{o['path']}\0{o['sha256']}\n" for o in out).encode()).hexdigest()
    return out, overall, total


def _slug(name: str) -> str:
    s = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
    return s[:64] or "model"


def is_refiner_folder(folder: Path) -> bool:
    """An SDXL refiner folder: an image-to-image pipeline with the second text encoder only."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return "XL" in index.get("_class_name", "") and (index.get("text_encoder") or [None])[0] is None and bool(
        (index.get("text_encoder_2") or [None])[0])


def folder_family(folder: Path) -> tuple[str, bool]:
    """Recognise a diffusers folder's family from its configs."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise UnsupportedModel(
            f"`path` {str(folder)!r} is a folder without model_index.json, so it is not a diffusers model.",
            field="path",
            value=str(folder),
        )
    try:
        cls = json.loads(index.read_text()).get("_class_name", "")
        if cls.startswith(("StableDiffusion3", "Flux")) and (folder / "transformer" / "config.json").is_file():
            return ("sd3" if cls.startswith("StableDiffusion3") else "flux"), "Inpaint" in cls
        unet = json.loads((folder / "unet" / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UnsupportedModel(f"`path` {str(folder)!r} has unreadable configs: {e}", field="path") from e
    if "XL" in cls or unet.get("addition_embed_type") == "text_time":
        family = "sdxl"
    elif cls.startswith("StableDiffusion"):
        family = "sd2" if unet.get("cross_attention_dim") == 1024 else "sd1"
    else:
        raise UnsupportedModel(
            f"`path` {str(folder)!r} holds a {cls or 'unknown'} pipeline; Solvent serves Stable Diffusion 1.x, "
            "2.x, XL, 3/3.5 and Flux.1 pipelines.",
            field="path",
            value=cls,
        )
    return family, unet.get("in_channels") == 9


def _pickle_only_components(folder: Path) -> list[Path]:
    """Component folders whose weights exist only as pickles (`.bin`, `.ckpt`, `.pt`)."""
    out = []
    for comp in sorted(p for p in folder.iterdir() if p.is_dir()):
        weights = [p for p in comp.iterdir() if p.suffix in (*SAFE_SUFFIXES, ".bin", ".ckpt", ".pt", ".pth")]
        if weights and not any(p.suffix in SAFE_SUFFIXES for p in weights):
            out.append(weights[0])
    return out


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


class ModelStore:
    """Installed models: list, add (folder, checkpoint, hub), show, remove."""

    def __init__(self, settings: Settings, builtins: Sequence[Callable[[], ModelRecord]] = ()):
        self.settings = settings
        self.root = settings.models_dir
        self._builtins = tuple(builtins)  # record factories of models that ship in a package (always listed)
        self._configs: dict[tuple, int | None] = {}
        self._parsed: dict[Path, tuple[int, ModelRecord]] = {}  # model.json → (mtime_ns, record)

    # -- reading ---------------------------------------------------------------------------

    def builtins(self) -> list[ModelRecord]:
        """The shipped records (a factory may answer None: its files are not in this install)."""
        return [r for make in self._builtins if (r := make()) is not None]

    def _builtin(self, model_id: str) -> ModelRecord | None:
        return next((r for r in self.builtins() if r.id == model_id), None)

    def default_id(self) -> str:
        """The model a request that names none gets: the first built-in, else the first installed."""
        records = self.list()
        if not records:
            raise ModelNotFound("no model is installed; add one with `solvent models add`.", field="model")
        return records[0].id

    def list(self, kind: str | None = "checkpoint") -> list[ModelRecord]:
        """Installed records of `kind` (checkpoints by default; None for every kind)."""
        return [r for r in self._all() if kind is None or r.kind == kind]

    def _all(self) -> list[ModelRecord]:
        out = self.builtins()
        if self.root.is_dir():
            for meta in sorted(self.root.glob("*/model.json")):
                try:  # parsed again only when the file changed (every request lists embeddings)
                    mtime = meta.stat().st_mtime_ns
                    cached = self._parsed.get(meta)
                    if cached is None or cached[0] != mtime:
                        cached = (mtime, ModelRecord.from_dict(json.loads(meta.read_text())))
                        self._parsed[meta] = cached
                    out.append(dataclasses.replace(cached[1]))
                except (OSError, json.JSONDecodeError, TypeError):
                    continue  # a damaged record is skipped, never fatal for the others
        return out

    def get(self, model_id: str) -> ModelRecord:
        builtin = self._builtin(model_id)
        if builtin is not None:
            return builtin
        meta = self.root / str(model_id) / "model.json"
        if _ID.match(str(model_id)) and meta.is_file():
            return ModelRecord.from_dict(json.loads(meta.read_text()))
        known = ", ".join(r.id for r in self.list(None))
        raise ModelNotFound(
            f"`model` {model_id!r} is not installed; installed models: {known}.", field="model", value=model_id
        )

    def path_of(self, record: ModelRecord) -> Path:
        p = Path(record.path)
        return p if p.is_absolute() else self.root / record.id / p

    def _config_value(self, record: ModelRecord, component: str, key: str, default: int) -> int:
        """One number from a diffusers folder's component config (cached per model version: requests ask for it
        at every resolve); `default` for single files and unreadable configs."""
        cache_key = (record.id, record.sha256, component, key)
        if cache_key not in self._configs:
            path = self.path_of(record) / component / "config.json"
            try:
                value = int(json.loads(path.read_text())[key]) if path.is_file() else default
            except (OSError, ValueError, KeyError, TypeError):
                value = default
            self._configs[cache_key] = value
        return self._configs[cache_key]

    def component_path(self, record: ModelRecord, name: str) -> Path:
        """Where an SD3 / Flux single file's component (`clip_l`, `clip_g`, `t5`, `vae`) lies."""
        p = Path(record.details["components"][name])
        return p if p.is_absolute() else self.root / record.id / p

    def parameter_count(self, record: ModelRecord) -> int:
        """How many weights a model's safetensors files hold (from their headers; pickles count 0). Cached."""
        return sum(self.parameter_counts(record))

    def parameter_counts(self, record: ModelRecord) -> tuple[int, int]:
        """(the UNet's / transformer's weights, every other weight), from the safetensors headers. Cached."""
        key = (record.id, record.sha256, "parameters")
        if key not in self._configs:
            denoiser = rest = 0
            base = self.path_of(record) if record.format == "diffusers" else self.path_of(record).parent
            main = self.path_of(record)
            for f in record.files:
                p = Path(f["path"])
                if p.suffix.lower() not in SAFE_SUFFIXES:
                    continue
                p = p if p.is_absolute() else base / p
                try:
                    shapes = read_shapes(p)
                except (OSError, SolventError):
                    continue
                for k, shape in shapes.items():
                    n = math.prod(shape)
                    if record.format == "diffusers":
                        inside = p.parent.name in ("unet", "transformer")
                    else:
                        inside = p == main and not k.startswith(_NOT_DENOISER)
                    if inside:
                        denoiser += n
                    else:
                        rest += n
            self._configs[key] = (denoiser, rest)
        return self._configs[key]

    def latent_channels(self, record: ModelRecord) -> int:
        """The model's VAE latent channels (which VAEs fit it); Stable Diffusion's 4 when not in a config (SD3 and
        Flux single files record their 16)."""
        return self._config_value(record, "vae", "latent_channels", int(record.details.get("latent_channels", 4)))

    def text_layers(self, record: ModelRecord) -> int:
        """How many layers the model's (first) text encoder has (the largest CLIP skip); 12 when unknown."""
        return self._config_value(record, "text_encoder", "num_hidden_layers", 12)

    def cross_attention_width(self, record: ModelRecord) -> int | None:
        """The UNet's cross-attention width (which LoRAs, ControlNets and embeddings fit), from its config or
        tensor header; None if unknown. Cached per model version (resolve asks for it on every request)."""
        key = (record.id, record.sha256, "unet", "cross_attention_dim")
        if key not in self._configs:
            self._configs[key] = self._read_width(record)
        return self._configs[key]

    def cross_attention_layers(self, record: ModelRecord) -> int | None:
        """How many cross-attention layers the UNet has (an IP-Adapter must have one pair of projections per
        layer), counted in its tensor header; None if unknown. Cached per model version."""
        key = (record.id, record.sha256, "unet", "cross_attention_layers")
        if key not in self._configs:
            path = self.path_of(record)
            try:
                if record.format == "diffusers":
                    files = sorted((path / "unet").glob("*.safetensors"))
                    shapes = {k: v for f in files for k, v in read_shapes(f).items()}
                elif is_pickle(path):
                    shapes = {}
                else:
                    shapes = {k: v for k, v in read_shapes(path).items() if k.startswith(UNET)}
                self._configs[key] = sum(1 for k in shapes if k.endswith("attn2.to_k.weight")) or None
            except (OSError, SolventError):
                self._configs[key] = None
        return self._configs[key]

    def image_encoder_for(self, adapter: ModelRecord) -> ModelRecord:
        """The image encoder an IP-Adapter reads: the one it was added with, else the first that fits."""
        if adapter.image_encoder:
            try:
                return self.get(adapter.image_encoder)
            except ModelNotFound:
                pass
        fits = self._encoders_for(adapter.details)
        if not fits:
            raise ModelNotFound(_missing_encoder(adapter.id, adapter.details), field="image_encoder",
                                value=adapter.image_encoder)
        return fits[0]

    def _encoders_for(self, details: dict) -> list[ModelRecord]:
        """Installed image encoders that give what an IP-Adapter (its `details`) reads."""
        return [e for e in self.list("image_encoder") if encoder_fits(details, e.details)]

    def _read_width(self, record: ModelRecord) -> int | None:
        if record.family in FLOW_ARCHITECTURES:
            return None  # no UNet cross-attention: UNet adapters never fit
        path = self.path_of(record)
        try:
            if record.format == "diffusers":
                return int(json.loads((path / "unet" / "config.json").read_text())["cross_attention_dim"])
            if is_pickle(path):
                return None  # reading a pickle's shapes means loading it; the engine checks at run time
            shapes = read_shapes(path)
            return next(v[1] for k, v in shapes.items() if k.startswith(UNET) and k.endswith("attn2.to_k.weight"))
        except (OSError, ValueError, KeyError, TypeError, StopIteration, SolventError):
            return None

    # -- writing ---------------------------------------------------------------------------

    def _check_new_id(self, model_id: str) -> None:
        if not _ID.match(model_id):
            raise ValidationFailed(
                f"`id` must be lower-case letters, digits, '.', '_' or '-' (at most 64) but is {model_id!r}.",
                field="id",
                value=model_id,
            )
        if self._builtin(model_id) is not None or (self.root / model_id).exists():
            raise Conflict(f"`id` {model_id!r} is already installed; remove it first.", field="id", value=model_id)

    def add(
        self,
        source: str | Path,
        *,
        model_id: str | None = None,
        family: str | None = None,
        allow_pickle: bool = False,
        link: bool = False,
        prediction_type: str | None = None,
        license_name: str = "",
        license_url: str = "",
        image_encoder: str | None = None,
        components: dict[str, str | Path] | None = None,
        preset: str | None = None,
        progress: Progress | None = None,
    ) -> ModelRecord:
        """Install a diffusers folder, a single-file checkpoint or an adapter (copied, or referenced with `link`).

        An SD3 or Flux single file takes the `components` it does not carry inside (`clip_l`, `clip_g`, `t5`,
        `vae` → a file each), copied (or linked) beside it. `preset` (`turbo`, `lcm`, `lightning`, `schnell`,
        `sd3-turbo`, `standard`, …) sets the defaults a request that sends none gets; without it, a few-step model
        is recognised by its name (`sdxl-turbo`, `…lightning…`) or, for Flux, by its weights (schnell has no
        guidance embedding).

        A pickled adapter or embedding (`.bin`, `.pt`) is refused unless `allow_pickle`; with it, its tensors
        are read once (torch's `weights_only` loader, which runs no code objects) and stored as `.safetensors`,
        so serving never unpickles anything.
        """
        src = Path(source).expanduser().resolve()
        if not src.exists():
            raise ValidationFailed(f"`path` {str(source)!r} does not exist.", field="path", value=str(source))
        if src.is_file() and is_pickle(src):
            if not allow_pickle:
                raise UnsafeCheckpoint(PICKLE_REFUSAL.format(path=src), field="path", value=str(src))
            tensors = pickled_adapter(src)
            if tensors is not None:
                return self._add_converted(src, tensors, model_id, license_name, license_url, image_encoder,
                                           progress)
        chosen = get_preset(preset) if preset else None
        flow = inspect_flow(read_shapes(src)) if src.is_file() and src.suffix.lower() in SAFE_SUFFIXES else None
        if flow is not None:
            return self._add_flow(src, flow, model_id, family, dict(components or {}), chosen, link=link,
                                  progress=progress, license_name=license_name, license_url=license_url)
        if components:
            raise ValidationFailed(f"`components` ({', '.join(components)}) are for SD3 and Flux single files, and "
                                   f"{str(src)!r} is not one.", field=next(iter(components)))
        adapter = inspect_adapter(src) if not is_pickle(src) else None
        if adapter is not None:
            encoder = self._pair_encoder(src, adapter, image_encoder) if adapter.kind == "ip_adapter" else None
            return self._install(src, model_id, adapter.family, "diffusers" if src.is_dir() else "single_file",
                                 adapter.kind, link=link,
                                 progress=progress, license_name=license_name,
                                 license_url=license_url, kind=adapter.kind, architecture=adapter.architecture,
                                 cross_attention_dim=adapter.cross_attention_dim,
                                 latent_channels=adapter.latent_channels, details=dict(adapter.details or {}),
                                 image_encoder=encoder)
        if image_encoder is not None:
            raise ValidationFailed(f"`image_encoder` is only for IP-Adapters, and {str(src)!r} is not one.",
                                   field="image_encoder", value=image_encoder)
        if src.is_file():
            if is_pickle(src) and not allow_pickle:
                raise UnsafeCheckpoint(PICKLE_REFUSAL.format(path=src), field="path", value=str(src))
            if not is_pickle(src) and src.suffix.lower() not in SAFE_SUFFIXES:
                raise UnsupportedModel(
                    f"`path` must be a .safetensors checkpoint or a diffusers folder but is {str(src)!r}.",
                    field="path",
                    value=str(src),
                )
            info = inspect_checkpoint(src, allow_pickle)
            detected, inpainting, fmt, kind = info.family, info.inpainting, "single_file", "checkpoint"
            refiner = info.refiner
        else:
            detected, inpainting = folder_family(src)
            fmt, kind, refiner = "diffusers", "folder", is_refiner_folder(src)
            pickled = _pickle_only_components(src)
            if pickled and not allow_pickle:
                raise UnsafeCheckpoint(PICKLE_REFUSAL.format(path=pickled[0]), field="path", value=str(pickled[0]))
        if family and family != detected:
            raise ValidationFailed(
                f"`family` is {family!r} but {str(src)!r} is recognised as {detected}.", field="family", value=family
            )
        pred = prediction_type or ("v_prediction" if detected == "sd2" and fmt == "single_file" else "epsilon")
        if pred not in ("epsilon", "v_prediction"):
            raise ValidationFailed(
                f"`prediction_type` must be epsilon or v_prediction but is {pred!r}.", field="prediction_type"
            )
        details = _folder_details(src, detected) if fmt == "diffusers" else {}
        chosen = chosen or _recognised_preset(model_id or src.name, detected, details)
        return self._install(src, model_id, detected, fmt, kind, link=link, progress=progress,
                             license_name=license_name, license_url=license_url, prediction_type=pred,
                             inpainting=inpainting, allow_pickle=allow_pickle and is_pickle(src),
                             preset=chosen, details=details,
                             **({"kind": "refiner", "architecture": "sdxl"} if refiner else {}))

    def _add_flow(self, src: Path, info: FlowInfo, model_id: str | None, family: str | None,
                  components: dict[str, str | Path], preset: Preset | None, **kw: Any) -> ModelRecord:
        """Install an SD3 / Flux single file with the component files it does not carry (checked first)."""
        if family and family != info.family:
            raise ValidationFailed(f"`family` is {family!r} but {str(src)!r} is recognised as {info.family}.",
                                   field="family", value=family)
        paths: dict[str, Path] = {}
        for name, value in components.items():
            if name not in COMPONENTS[info.family]:
                raise ValidationFailed(f"`{name}` is not a component of {info.family} models; they take "
                                       f"{', '.join(COMPONENTS[info.family])}.", field=name, value=str(value))
            p = Path(value).expanduser().resolve()
            if not p.is_file() or p.suffix.lower() not in SAFE_SUFFIXES:
                raise ValidationFailed(f"`{name}` must be a .safetensors file but is {str(value)!r}.", field=name,
                                       value=str(value))
            if name in info.inside:
                raise ValidationFailed(f"`{name}` is already inside {str(src)!r}; leave it out.", field=name,
                                       value=str(value))
            paths[name] = p
        check_components(info, {n: read_shapes(p) for n, p in paths.items()},
                         {"path": str(src), **{n: str(p) for n, p in paths.items()}})
        details = {"variant": info.variant, "latent_channels": 16, "t5": "t5" in (*info.inside, *paths),
                   "max_side": info.max_side,
                   "cost_class": "sd3-large" if info.family == "sd3" and info.variant == "large" else info.family}
        chosen = preset or _recognised_preset(model_id or src.stem, info.family, details)
        return self._install(src, model_id, info.family, "single_file", "checkpoint", extra_files=paths,
                             preset=chosen, details=details, **kw)

    def _add_converted(self, src: Path, tensors: dict, model_id: str | None, license_name: str, license_url: str,
                       image_encoder: str | None, progress: Progress | None) -> ModelRecord:
        """Install a pickled adapter's tensors as one `.safetensors` file, recognised like any other."""
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        work = self.root / f".tmp-{uuid.uuid4().hex}"
        work.mkdir()
        try:
            out = work / f"{src.stem}.safetensors"
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(out))
            if inspect_adapter(out) is None:
                raise UnsupportedModel(f"`path` {str(src)!r} holds tensors of no kind Solvent knows (not a "
                                       "checkpoint, adapter or embedding).", field="path", value=str(src))
            record = self.add(out, model_id=model_id or _slug(src.stem), license_name=license_name,
                              license_url=license_url, image_encoder=image_encoder, progress=progress)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        record.origin = str(src)
        _write_json(self.root / record.id / "model.json", record.to_dict())
        return record

    def _pair_encoder(self, src: Path, adapter, name: str | None) -> str:
        """The image encoder an IP-Adapter will read: `name`, or the first installed one of its width."""
        if name is not None:
            enc = self.get(name)
            if enc.kind != "image_encoder":
                raise ValidationFailed(f"`image_encoder` {name!r} is a {enc.kind}, not a CLIP image encoder.",
                                       field="image_encoder", value=name)
            if not encoder_fits(adapter.details, enc.details):
                raise ValidationFailed(
                    f"`image_encoder` {name!r} gives {_gives(enc.details, adapter.details)} but the IP-Adapter "
                    f"{str(src)!r} reads {_reads(adapter.details)}.", field="image_encoder", value=name)
            return enc.id
        fits = self._encoders_for(adapter.details)
        if not fits:
            raise ModelNotFound(_missing_encoder(str(src), adapter.details), field="image_encoder")
        return fits[0].id

    def _install(self, src: Path, model_id: str | None, family: str, fmt: str, source: str, *, link: bool,
                 progress: Progress | None, extra_files: dict[str, Path] | None = None,
                 preset: Preset | None = None, **fields: Any) -> ModelRecord:
        """Copy (or reference) `src` into a fresh folder, hash it, write its record, rename it into place.

        `extra_files` (component name → file) are copied into `components/` beside it (or referenced with
        `link`), hashed with it, and listed in `details["components"]`."""
        model_id = model_id or _slug(src.stem if src.is_file() else src.name)
        self._check_new_id(model_id)
        fam = get_family(family)
        extra_files = extra_files or {}
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            if link:
                target, rel = src, str(src)
                files = [src] if src.is_file() else _weight_files(src)
                hash_root = src.parent if src.is_file() else src
            elif src.is_file():
                rel = src.name
                shutil.copy2(src, tmp / rel)
                files, hash_root = [tmp / rel], tmp
            else:
                rel = "diffusers"
                shutil.copytree(src, tmp / rel, ignore=shutil.ignore_patterns(".*"))
                files, hash_root = _weight_files(tmp / rel), tmp / rel
            placed = {}
            for name, f in extra_files.items():
                if link:
                    placed[name] = str(f)
                else:
                    (tmp / "components").mkdir(exist_ok=True)
                    placed[name] = f"components/{name}{f.suffix.lower()}"
                    shutil.copy2(f, tmp / placed[name])
                files.append(Path(placed[name]) if link else tmp / placed[name])
            if placed:
                fields["details"] = {**fields.get("details", {}), "components": placed}
            listing, digest, size = hash_files(hash_root, files, progress)
            use = preset if preset is not None and preset.steps else None
            record = ModelRecord(
                id=model_id,
                family=family,
                format=fmt,
                source=source,
                path=rel if not link else str(target),
                native_resolution=fam.native,
                default_steps=use.steps if use else fam.default_steps,
                default_cfg=use.cfg if use else fam.default_cfg,
                default_sampler=use.sampler if use else fam.default_sampler,
                preset=use.name if use else "",
                files=listing,
                size_bytes=size,
                sha256=digest,
                short_hash=digest[:10],
                added_at=datetime.now(UTC).isoformat(),
                origin=str(src),
                **fields,
            )
            _write_json(tmp / "model.json", record.to_dict())
            os.replace(tmp, self.root / model_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return record

    def set_default_vae(self, model_id: str, vae_id: str | None) -> ModelRecord:
        """Make `vae_id` (a VAE in the store, or None for the model's own) the VAE a model's requests get."""
        record = self.get(model_id)
        if self._builtin(model_id) is not None:
            raise ValidationFailed(f"`model` {model_id!r} is built in; name a VAE per request instead.",
                                   field="model", value=model_id)
        if record.kind != "checkpoint":
            raise ValidationFailed(f"`model` {model_id!r} is a {record.kind}, not a checkpoint.", field="model",
                                   value=model_id)
        if vae_id is not None and self.get(vae_id).kind != "vae":
            raise ValidationFailed(f"`vae` {vae_id!r} is not a VAE.", field="vae", value=vae_id)
        record.default_vae = vae_id
        meta = self.root / model_id / "model.json"
        tmp = meta.with_suffix(".json.tmp")
        _write_json(tmp, record.to_dict())
        os.replace(tmp, meta)
        return record

    def remove(self, model_id: str) -> ModelRecord:
        if self._builtin(model_id) is not None:
            raise ValidationFailed(
                f"`model` {model_id!r} is built in and cannot be removed.", field="model", value=model_id
            )
        record = self.get(model_id)
        trash = self.root / f".tmp-{uuid.uuid4().hex}"
        os.replace(self.root / model_id, trash)  # atomic: gone from the listing at once
        shutil.rmtree(trash, ignore_errors=True)
        return record

    def pull(self, repo_id: str, *, model_id: str | None = None, revision: str | None = None) -> ModelRecord:
        """Download a diffusers repo from the Hugging Face hub (safetensors only), then add it."""
        if not re.match(r"^[\w.-]+/[\w.-]+$", repo_id):
            raise ValidationFailed(f"`repo_id` must look like ORG/NAME but is {repo_id!r}.", field="repo_id")
        if self.settings.offline or os.environ.get("HF_HUB_OFFLINE") == "1" or not _online():
            raise Offline(
                f"cannot pull {repo_id!r}: this machine is offline (the Hugging Face hub is unreachable). Download "
                "the model elsewhere and use `solvent models add PATH`.",
                field="repo_id",
                value=repo_id,
            )
        from huggingface_hub import snapshot_download

        self.root.mkdir(parents=True, exist_ok=True)
        dl = self.root / f".tmp-{uuid.uuid4().hex}"
        try:
            snapshot_download(
                repo_id,
                revision=revision,
                local_dir=dl,
                allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model"],
                ignore_patterns=["*.fp16.safetensors", "*ema*", "safety_checker/*"],
            )  # shows a tqdm progress bar per file
            record = self.add(dl, model_id=model_id or _slug(repo_id.split("/")[1]))
            record.source, record.origin = "hub", repo_id
            _write_json(self.root / record.id / "model.json", record.to_dict())
            return record
        finally:
            shutil.rmtree(dl, ignore_errors=True)


def _reads(d: dict) -> str:
    what = "a projected image embedding" if d.get("reads") == "embeds" else "penultimate hidden states"
    return f"{what} {d.get('image_dim')} wide"


def _gives(enc: dict, adapter: dict) -> str:
    if adapter.get("reads") == "embeds":
        return f"a projected image embedding {enc.get('projection_dim')} wide"
    return f"hidden states {enc.get('hidden_size')} wide"


def _missing_encoder(what: str, d: dict) -> str:
    return (f"IP-Adapter {what!r} ({d.get('variant')}) needs a CLIP image encoder giving {_reads(d)}, and none is "
            "installed: add its encoder first (`solvent models add FOLDER`, e.g. the `image_encoder` folder published "
            "beside the adapter), then the adapter, or name one with --image-encoder.")


def _online(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _folder_details(folder: Path, family: str) -> dict[str, Any]:
    """SD3 / Flux folders: the variant (Flux schnell has no guidance embedding; SD3.5 Large has 38 blocks)."""
    if family not in FLOW_ARCHITECTURES:
        return {}
    try:
        cfg = json.loads((folder / "transformer" / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        cfg = {}
    if family == "flux":
        variant = "dev" if cfg.get("guidance_embeds", True) else "schnell"
    else:
        variant = "large" if int(cfg.get("num_layers", 24)) >= 38 else "medium"
    t5 = (folder / ("text_encoder_3" if family == "sd3" else "text_encoder_2")).is_dir()
    side = None
    if cfg.get("pos_embed_max_size"):
        side = int(cfg["pos_embed_max_size"]) * int(cfg.get("patch_size", 2)) * 8
    return {"variant": variant, "t5": t5, "max_side": side,
            "cost_class": "sd3-large" if family == "sd3" and variant == "large" else family}


def _recognised_preset(name: str, family: str, details: dict) -> Preset | None:
    """The few-step preset a model announces: by name, else Flux's schnell / dev by its weights."""
    found = preset_for(name, family)
    if found is None and family == "flux":
        found = get_preset("schnell" if details.get("variant") == "schnell" else "flux-dev")
    return found
