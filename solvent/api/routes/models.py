"""Models served by the running workers."""

from __future__ import annotations

from fastapi import APIRouter

from ...jobs.workers import served_models
from ..deps import PrincipalDep, ServicesDep
from ..schemas import ModelOut

router = APIRouter(prefix="/api", tags=["models"])


@router.get("/models", response_model=list[ModelOut], summary="Models a running worker can serve")
def list_models(services: ServicesDep, principal: PrincipalDep) -> list[ModelOut]:
    principal.require("read")
    return [ModelOut(**{k: m[k] for k in ModelOut.model_fields}) for m in served_models(services.db).values()]
