"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from ...jobs.registry import alive
from ..deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers and a worker is alive")
def readyz(services: ServicesDep, response: Response) -> dict:
    try:
        with services.db.session() as s:
            s.execute(text("SELECT 1"))
        db_ok = True
    except Exception as e:  # noqa: BLE001 - readiness reports any database failure as not ready
        db_ok, error = False, str(e)
    workers = len(alive(services.db)) if db_ok else 0
    ready = db_ok and workers > 0
    response.status_code = 200 if ready else 503
    out = {"status": "ready" if ready else "not ready", "database": db_ok, "workers": workers}
    if not db_ok:
        out["error"] = error
    return out


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request, services: ServicesDep) -> Response:
    m = request.app.state.metrics
    for state, n in services.queue.counts().items():
        m.jobs.labels(state=state).set(n)
    m.workers_alive.set(len(alive(services.db)))
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
