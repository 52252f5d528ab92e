"""Dependencies as `Annotated` aliases so route signatures stay one line."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..accounts import Principal, authenticate
from ..jobs.workers import authenticate_worker
from ..services import Services
from ..storage.models import Worker


def get_services(request: Request) -> Services:
    return request.app.state.services


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def current_principal(request: Request, services: Annotated[Services, Depends(get_services)]) -> Principal:
    return authenticate(services.db, _bearer(request))


def current_worker(request: Request, services: Annotated[Services, Depends(get_services)]) -> Worker:
    return authenticate_worker(services.db, _bearer(request))


ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
WorkerDep = Annotated[Worker, Depends(current_worker)]
