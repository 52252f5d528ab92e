"""Images: the organisation's gallery (search, filter, page), one image's details, the PNG itself, delete."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from PIL import Image as PILImage
from sqlalchemy import String, cast, func, select

from ...errors import NotFound
from ...generation.metadata import MIME, encode_image, read_metadata
from ...generation.spec import visible
from ...jobs.results import image_of
from ...storage.db import newest_first
from ...storage.models import FINAL_STATES, CreditHold, Image, Job
from ..deps import PrincipalDep, ServicesDep

router = APIRouter(prefix="/api", tags=["images"])


def image_out(img: Image, job: Job, captured_mc: int | None) -> dict[str, Any]:
    spec = job.spec
    terms, batch = spec.terms, spec.images
    params = {k: v for k, v in visible(job.params).items() if k not in ("terms", "plan")}
    return {"id": img.id, "url": f"/api/images/{img.id}", "job_id": job.id, "index": img.index, "seed": img.seed,
            "width": img.width, "height": img.height, "created_at": img.created_at, "model": job.model,
            "mode": job.mode, "prompt": spec.prompt, "params": params,
            "price_mc": spec.price_mc, "job_cost_mc": captured_mc,
            "cost_mc": None if captured_mc is None else captured_mc // batch, "batch_size": batch,
            "commercial_use": terms.get("commercial_use"), "license": terms.get("license"),
            "license_url": terms.get("license_url")}


def _captured(s, job_ids: list[str]) -> dict[str, int]:
    if not job_ids:
        return {}
    return dict(s.execute(select(CreditHold.job_id, CreditHold.captured_mc).where(
        CreditHold.job_id.in_(job_ids), CreditHold.state == "captured")).all())


@router.get("/images", summary="The organisation's images, newest first (search the prompt, filter by model)")
def list_images(services: ServicesDep, principal: PrincipalDep,
                q: Annotated[str | None, Query(max_length=200, description="words in the prompt")] = None,
                model: Annotated[str | None, Query(max_length=100)] = None,
                limit: Annotated[int, Query(ge=1, le=100)] = 24,
                cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None) -> dict:
    principal.require("read")
    with services.db.session() as s:
        query = select(Image, Job).join(Job, Job.id == Image.job_id).where(Image.org_id == principal.org_id)
        if q:
            query = query.where(func.lower(Job.params["prompt"].as_string()).contains(q.lower(), autoescape=True))
        if model:
            query = query.where(Job.model == model)
        rows = s.execute(newest_first(s, query, Image, principal.org_id, cursor, "image").limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        captured = _captured(s, [job.id for _, job in rows])
        models = sorted(s.scalars(select(Job.model).where(Job.org_id == principal.org_id).distinct()))
        return {"images": [image_out(img, job, captured.get(job.id)) for img, job in rows],
                "next_cursor": rows[-1][0].id if more else None, "models": models}


@router.get("/images/{image_id}/info", summary="One image's parameters, seed, cost and terms")
def image_info(image_id: str, services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("read")
    img = image_of(services.db, principal.org_id, image_id)
    with services.db.session() as s:
        job = s.get(Job, img.job_id)
        return image_out(img, job, _captured(s, [job.id]).get(job.id))


@router.delete("/images/{image_id}", summary="Delete an image (its PNG goes when no other image shares it)")
def delete_image(image_id: str, services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("generate")
    with services.db.session() as s:
        img = s.scalar(select(Image).where(Image.id == image_id, Image.org_id == principal.org_id))
        if img is None:
            raise NotFound(f"`image` {image_id!r} was not found.", field="image", value=image_id)
        blob = img.blob
        s.delete(img)
        s.flush()
        shared = s.scalar(select(func.count()).select_from(Image).where(Image.blob == blob)) or s.scalar(
            select(func.count()).select_from(Job).where(Job.state.not_in(FINAL_STATES),  # an input of a queued job
                                                        cast(Job.params, String).contains(blob)))
    if not shared:
        services.images.delete(blob)
    return {"deleted": image_id}


@router.get("/images/{image_id}", summary="Fetch an image", response_class=Response,
            responses={200: {"content": {"image/png": {}, "image/webp": {}, "image/jpeg": {}}}})
def get_image(image_id: str, services: ServicesDep, principal: PrincipalDep,
              format: Annotated[Literal["png", "webp", "jpeg"], Query()] = "png",
              download: bool = False) -> Response:
    principal.require("read")
    row = image_of(services.db, principal.org_id, image_id)
    data = services.images.get(row.blob)
    if format != "png":
        text, solvent = read_metadata(data)
        data = encode_image(PILImage.open(io.BytesIO(data)), format, text or "", solvent)
    disposition = "attachment" if download else "inline"
    return Response(data, media_type=MIME[format], headers={
        "Cache-Control": "private, max-age=31536000, immutable",
        "Content-Disposition": f'{disposition}; filename="{image_id}.{format}"',
        "X-Seed": str(row.seed),
    })
