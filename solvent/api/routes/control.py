"""ControlNet helpers: what a preprocessor makes of an image, before a job uses it (the studio's preview)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ...errors import ValidationFailed
from ...generation.control import ESTIMATED, PREPROCESSORS, preprocess
from ...generation.images import load_image, png_b64
from ..deps import PrincipalDep, ServicesDep

router = APIRouter(prefix="/api", tags=["control"])


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(description="the picture to preprocess: base64 or a data URL")
    preprocessor: str = Field("none", max_length=64)
    threshold_a: float | None = Field(None, ge=0, le=1000)
    threshold_b: float | None = Field(None, ge=0, le=1000)
    width: int | None = Field(None, ge=8, le=4096, description="resize the map to this size (both or neither)")
    height: int | None = Field(None, ge=8, le=4096)


def run_preprocessor(services, image: str, name: str, a: float | None, b: float | None, width: int | None = None,
                     height: int | None = None, field: str = "image") -> str:
    """Decode under the server's limits, preprocess, and answer base64 PNG (off the event loop)."""
    s = services.settings
    key = (name or "none").strip().lower()
    if any(key.startswith(task) for task in ESTIMATED):
        from ...jobs.registry import served_models

        if any(task in (m.get("estimators") or []) for m in served_models(services.db).values()
               for task in ESTIMATED):
            raise ValidationFailed(f"`preprocessor` {name!r} runs its estimator on the workers, not in the API "
                                   "process: send the unit with a job and the map is made there (previews show the "
                                   f"built-in preprocessors: {', '.join(PREPROCESSORS)}).", field="preprocessor",
                                   value=name)
    img = load_image(image, field, max_bytes=s.max_input_bytes, max_pixels=s.max_input_pixels, mode="RGB")
    return png_b64(preprocess(img, name, width, height, a, b))


@router.post("/control/preview", summary="A ControlNet preprocessor's output for an image (no job, no charge)")
async def control_preview(body: PreviewIn, services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("generate")
    image = await asyncio.to_thread(run_preprocessor, services, body.image, body.preprocessor, body.threshold_a,
                                    body.threshold_b, body.width, body.height)
    return {"image": image, "preprocessor": body.preprocessor, "preprocessors": list(PREPROCESSORS)}
