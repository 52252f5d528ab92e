"""Models served by the running workers (with size presets and LoRAs for the studio), and the samplers."""

from __future__ import annotations

from fastapi import APIRouter

from ...generation.families import FAMILIES, OUTPUT_MAX_PIXELS, OUTPUT_MAX_SIDE, Family
from ...generation.samplers import SAMPLERS, samplers_for
from ...jobs.registry import served_models
from ..deps import PrincipalDep, ServicesDep
from ..schemas import ModelOut, SizeOut

router = APIRouter(prefix="/api", tags=["models"])
ASPECTS = (("1:1", 1, 1), ("4:3", 4, 3), ("3:4", 3, 4), ("3:2", 3, 2), ("2:3", 2, 3), ("16:9", 16, 9),
           ("9:16", 9, 16))


def size_presets(family: Family) -> list[SizeOut]:
    """Each aspect ratio at about the family's native area, in the multiples its size rules accept (8; 16 for SD3
    and Flux)."""
    out, seen = [], set()
    area = family.native * family.native
    step = family.multiple
    for label, a, b in ASPECTS:
        w = round((area * a / b) ** 0.5 / step) * step
        h = round((area * b / a) ** 0.5 / step) * step
        w, h = (min(max(v, family.min_side), family.max_side) for v in (w, h))
        if w * h <= family.max_pixels and (w, h) not in seen:
            seen.add((w, h))
            out.append(SizeOut(label=f"{label} ({w}×{h})", width=w, height=h))
    return out


def model_out(m: dict) -> ModelOut:
    fam = FAMILIES.get(m.get("family", ""))
    extra = {"sizes": size_presets(fam), "min_side": fam.min_side, "max_side": fam.max_side,
             "max_pixels": fam.max_pixels, "family_label": fam.label,
             "max_output_side": max(fam.max_side, OUTPUT_MAX_SIDE), "max_output_pixels": max(fam.max_pixels,
                                                                                           OUTPUT_MAX_PIXELS),
             "samplers": samplers_for(fam.architecture)} if fam else {}
    return ModelOut(**{k: m[k] for k in ("id", "family", "native_resolution", "default_steps", "default_cfg",
                                         "default_sampler")}, loras=m.get("loras") or [],
                    controlnets=m.get("controlnets") or [], t2i_adapters=m.get("t2i_adapters") or [],
                    ip_adapters=m.get("ip_adapters") or [], refiners=m.get("refiners") or [], vaes=m.get("vaes") or [],
                    default_vae=m.get("default_vae"), embeddings=m.get("embeddings") or [],
                    license=m.get("license_name"), preset=m.get("preset") or None, **extra)


@router.get("/models", response_model=list[ModelOut], summary="Models a running worker can serve")
def list_models(services: ServicesDep, principal: PrincipalDep) -> list[ModelOut]:
    principal.require("read")
    return [model_out(m) for m in served_models(services.db).values()]


@router.get("/upscalers", summary="Upscalers a running worker has (Lanczos, solvent-tiny-upscale, installed ones)")
def list_upscalers(services: ServicesDep, principal: PrincipalDep) -> list[dict]:
    principal.require("read")
    return [{"id": k, "scale": u.get("scale"), "architecture": u.get("architecture"), "license": u.get("license_name")}
            for k, u in sorted(served_models(services.db, "upscaler").items())]


@router.get("/segmenters", summary="Segmenters a running worker has (background removal, `mask_prompt`)")
def list_segmenters(services: ServicesDep, principal: PrincipalDep) -> list[dict]:
    principal.require("read")
    return [{"id": k, "architecture": u.get("architecture"), "license": u.get("license_name") or None}
            for k, u in sorted(served_models(services.db, "segmenter").items())]


@router.get("/samplers", summary="Samplers by Solvent name, with their A1111 names")
def list_samplers(principal: PrincipalDep) -> dict:
    principal.require("read")
    return {"samplers": [{"name": s.name, "label": s.a1111[0] if s.a1111 else s.name} for s in SAMPLERS]}
