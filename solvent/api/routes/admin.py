"""Operator views of the running system: the queue (depth, waiting time, running jobs) and the workers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from ...jobs.registry import ALIVE_SECONDS
from ...ledger.costing import worker_rate
from ...money import fmt_usd
from ...storage.db import utcnow
from ...storage.models import Job, JobState, Worker
from ..deps import PrincipalDep, ServicesDep

router = APIRouter(prefix="/api/admin", tags=["admin"])


def _seconds(td: timedelta) -> float:
    return round(td.total_seconds(), 3)


@router.get("/queue", summary="Queue depth by state, waiting times, and the jobs running now")
def queue(services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    principal.require("operator")
    now = utcnow()
    counts = services.queue.counts()  # its own session: never open one inside another (SQLite locks at BEGIN)
    with services.db.session() as s:
        oldest = s.scalar(select(Job.created_at).where(Job.state == JobState.queued).order_by(Job.created_at).limit(1))
        started = s.execute(select(Job.created_at, Job.started_at).where(
            Job.started_at >= now - timedelta(hours=1)).order_by(Job.started_at.desc()).limit(1000)).all()
        running = s.scalars(select(Job).where(Job.state == JobState.running).order_by(Job.started_at)).all()
        waits = sorted(_seconds(b - a) for a, b in started)
        return {
            "counts": counts,
            "oldest_queued_seconds": _seconds(now - oldest) if oldest else None,
            "wait_last_hour": {"jobs": len(waits), "median_seconds": waits[len(waits) // 2] if waits else None,
                               "max_seconds": waits[-1] if waits else None},
            "running": [{"id": j.id, "org_id": j.org_id, "model": j.model, "worker_id": j.worker_id,
                         "progress": j.progress, "started_at": j.started_at,
                         "running_seconds": _seconds(now - j.started_at) if j.started_at else None} for j in running],
        }


@router.get("/workers", summary="Workers: hardware, provider, rate, status and last heartbeat")
def workers(services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    principal.require("operator")
    now = utcnow()
    out = []
    with services.db.session() as s:
        for w in s.scalars(select(Worker).order_by(Worker.created_at)):
            rate = worker_rate(s, w, now)
            alive = w.last_heartbeat_at is not None and (now - w.last_heartbeat_at).total_seconds() <= ALIVE_SECONDS
            out.append({"id": w.id, "name": w.name, "hardware": w.hardware, "provider": w.provider,
                        "region": w.region, "instance_type": w.instance_type, "commitment": w.commitment,
                        "usd_per_hour": fmt_usd(rate.micros_per_hour, 4) if rate.source else None,
                        "micros_per_hour": rate.micros_per_hour, "rate_source": rate.source,
                        "status": w.status if alive else "offline", "alive": alive,
                        "last_heartbeat_at": w.last_heartbeat_at,
                        "models": [m.get("id") for m in w.models or []]})
    return {"workers": out}
