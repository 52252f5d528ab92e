"""Images: PNG as stored (with its metadata), or re-encoded as WEBP / JPEG with the same metadata."""

from __future__ import annotations

import io
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from PIL import Image as PILImage

from ...engine.metadata import MIME, encode_image, read_metadata
from ..deps import PrincipalDep, ServicesDep
from .jobs import image_row

router = APIRouter(prefix="/api", tags=["images"])


@router.get("/images/{image_id}", summary="Fetch an image", response_class=Response,
            responses={200: {"content": {"image/png": {}, "image/webp": {}, "image/jpeg": {}}}})
def get_image(image_id: str, services: ServicesDep, principal: PrincipalDep,
              format: Annotated[Literal["png", "webp", "jpeg"], Query()] = "png") -> Response:
    principal.require("read")
    row = image_row(services, principal.org_id, image_id)
    data = services.images.get(row.blob)
    if format != "png":
        text, solvent = read_metadata(data)
        data = encode_image(PILImage.open(io.BytesIO(data)), format, text or "", solvent)
    return Response(data, media_type=MIME[format], headers={
        "Cache-Control": "private, max-age=31536000, immutable",
        "Content-Disposition": f'inline; filename="{image_id}.{format}"',
        "X-Seed": str(row.seed),
    })
