"""The sd-webui-controlnet extension's API, as A1111 clients call it: its units in `alwayson_scripts`, and
`GET /controlnet/model_list`, `GET /controlnet/module_list`, `POST /controlnet/detect`.

A unit's fields map onto Solvent's ControlNet units: `image` (or the older `input_image`, or
`{"image": …}`), `module` (the preprocessor), `model` (`name [hash]`: the hash is ignored), `weight`,
`guidance_start`, `guidance_end`, `control_mode` (0/1/2 or its label), `threshold_a/b` (-1 = the module's
default). The control map is always made at the output size, so `resize_mode`, `processor_res` and
`pixel_perfect` change nothing here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from ...errors import ValidationFailed
from ...generation.control import CONTROL_MODES, PREPROCESSORS
from ..bodies import read_json_object
from ..deps import PrincipalDep, ServicesDep
from ..routes.control import run_preprocessor
from . import a1111
from .common import served

router = APIRouter(prefix="/controlnet", tags=["automatic1111"])
SURFACES = [("/controlnet/", a1111.render)]  # A1111's error shape; installed by `create_app`
_MODES = {0: "balanced", 1: "prompt", 2: "controlnet", **{label.lower(): key for key, label in CONTROL_MODES.items()},
          **{key: key for key in CONTROL_MODES}}


def _number(unit: dict, key: str, default: float | None) -> float | None:
    v = unit.get(key, default)
    if v is None or (isinstance(v, int | float) and v < 0 and key.startswith("threshold")):
        return None  # the extension sends -1 for "the module's default"
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise ValidationFailed(f"`alwayson_scripts.controlnet.args.{key}` must be a number but is {v!r}.",
                               field=f"controlnet.{key}", value=v)
    return float(v)


def _image(unit: dict, i: int) -> str:
    img = unit.get("image", unit.get("input_image"))
    if isinstance(img, dict):
        img = img.get("image")
    if not isinstance(img, str) or not img:
        raise ValidationFailed(f"`alwayson_scripts.controlnet.args[{i}].image` is required: the control image as "
                               "base64.", field=f"controlnet.args[{i}].image")
    return img


def _match(name: str, fits: list[str]) -> str | None:
    return next((m for m in fits if m == name or m == name.lower() or m == name.lower().replace("_", "-")), None)


def units(alwayson: dict[str, Any] | None, fits: list[str], ip_fits: list[str] = ()) -> tuple[list[dict], list[dict]]:
    """The enabled units of a txt2img/img2img request's `alwayson_scripts.controlnet.args`, as native control
    units and image prompts (a unit whose module is `ip-adapter…` or whose model is an IP-Adapter: its image is
    the reference, its weight the adapter's)."""
    script = (alwayson or {}).get("controlnet") or (alwayson or {}).get("ControlNet")
    if not script:
        return [], []
    args = script.get("args") if isinstance(script, dict) else None
    if not isinstance(args, list):
        raise ValidationFailed("`alwayson_scripts.controlnet.args` must be a list of units.",
                               field="controlnet.args")
    out, prompts = [], []
    for i, unit in enumerate(args):
        if not isinstance(unit, dict):
            raise ValidationFailed(f"`alwayson_scripts.controlnet.args[{i}]` must be an object.",
                                   field=f"controlnet.args[{i}]")
        if unit.get("enabled", True) is False:
            continue
        name = str(unit.get("model") or "").split(" [", 1)[0].strip()
        module = str(unit.get("module") or "")
        ip = _match(name, list(ip_fits))
        if ip is not None or module.lower().startswith("ip-adapter"):
            prompts.append({"model": ip or name, "images": [_image(unit, i)],
                            "weight": _number(unit, "weight", 1.0)})
            continue
        model = _match(name, fits) or name
        mode = unit.get("control_mode", 0)
        mode = _MODES.get(mode.lower() if isinstance(mode, str) else mode)
        if mode is None:
            raise ValidationFailed(f"`alwayson_scripts.controlnet.args[{i}].control_mode` must be 0, 1, 2 or one of "
                                   f"{', '.join(CONTROL_MODES.values())} but is {unit.get('control_mode')!r}.",
                                   field=f"controlnet.args[{i}].control_mode")
        out.append({"model": model, "image": _image(unit, i), "preprocessor": unit.get("module") or "none",
                    "weight": _number(unit, "weight", 1.0), "guidance_start": _number(unit, "guidance_start", 0.0),
                    "guidance_end": _number(unit, "guidance_end", 1.0), "control_mode": mode,
                    "threshold_a": _number(unit, "threshold_a", None),
                    "threshold_b": _number(unit, "threshold_b", None)})
    return out, prompts


def served_controlnets(services) -> list[str]:
    """ControlNets, T2I-Adapters and IP-Adapters (the extension lists all three as its models)."""
    return sorted({c for m in served(services).values() for c in [*(m.get("controlnets") or []),
                                                                  *(m.get("ip_adapters") or [])]})


@router.get("/model_list", summary="sd-webui-controlnet: the ControlNets the workers serve")
def model_list(services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("read")
    return {"model_list": served_controlnets(services)}


@router.get("/module_list", summary="sd-webui-controlnet: the preprocessors (built in, and estimators installed)")
def module_list(services: ServicesDep, principal: PrincipalDep, alias_names: bool = False) -> dict:
    detail = {name: {"model_free": name == "none", "sliders": []} for name in PREPROCESSORS}
    for task in sorted({t for m in served(services).values() for t in m.get("estimators") or []}):
        detail[task] = {"model_free": False, "sliders": []}  # runs the installed estimator, on the workers
    detail["ip-adapter_clip"] = {"model_free": False, "sliders": []}  # the reference goes to the IP-Adapter's encoder
    detail["canny"]["sliders"] = [{"name": "Low Threshold", "value": 100, "min": 1, "max": 255},
                                  {"name": "High Threshold", "value": 200, "min": 1, "max": 255}]
    return {"module_list": list(detail), "module_detail": detail}


@router.post("/detect", summary="sd-webui-controlnet: run a preprocessor on images")
async def detect(request: Request, services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("generate")
    body = await read_json_object(request)
    images = body.get("controlnet_input_images", body.get("controlnet_images"))  # the extension's name, webuiapi's
    if not isinstance(images, list) or not images or len(images) > 8:
        raise ValidationFailed("`controlnet_input_images` must be a list of 1 to 8 base64 images.",
                               field="controlnet_input_images")
    name = body.get("controlnet_module") or "none"
    a = body.get("controlnet_threshold_a")
    b = body.get("controlnet_threshold_b")
    a = None if not isinstance(a, int | float) or a < 0 else float(a)
    b = None if not isinstance(b, int | float) or b < 0 else float(b)
    out = [await asyncio.to_thread(run_preprocessor, services, img, name, a, b, None, None,
                                   f"controlnet_input_images[{i}]") for i, img in enumerate(images)]
    return {"images": out, "info": "Success"}
