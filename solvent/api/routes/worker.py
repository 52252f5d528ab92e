"""The worker API: all a remote worker needs, over HTTP, authenticated by its worker token."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ...errors import BadRequest
from ...jobs import results
from ...jobs.registry import declare
from ...ledger.catalog import COMMITMENTS, request_worker_rate
from ..deps import ServicesDep, WorkerDep

router = APIRouter(prefix="/api/worker", tags=["worker"])
MAX_IMAGE = 64 * 1024 * 1024


class Hello(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""
    hardware: dict[str, Any] = Field(default_factory=dict)
    provider: str = "local"
    region: str = ""
    instance_type: str = ""
    commitment: Literal[COMMITMENTS] = "on_demand"  # type: ignore[valid-type]
    usd_per_hour: str | None = Field(None, max_length=32, description="the rate this worker asks for; recorded "
                                     "for the operator to approve, never applied by itself")
    models: list[dict[str, Any]] = Field(default_factory=list)
    loaded: list[str] = Field(default_factory=list)


class LeaseIn(BaseModel):
    loaded: list[str] = Field(default_factory=list)
    # How many jobs the worker runs in one device call: up to batch - 1 compatible jobs come with the first.
    batch: int = Field(1, ge=1, le=16)


class HeartbeatIn(BaseModel):
    progress: float | None = None
    preview: str | None = None


class CompleteIn(BaseModel):
    usage: dict[str, Any]
    infotexts: list[str] = Field(default_factory=list, max_length=64)
    attempt: int | None = Field(None, ge=0, le=1000, description="the lease's `attempt`: a stale lease cannot complete")


class FailIn(BaseModel):
    code: str
    message: str
    retry: bool = False
    usage: dict | None = None  # the job's share of a failed batch's device time (`usage.batch`)


class CanceledIn(BaseModel):
    usage: dict | None = None  # the job's share of the batch that ran on without it


@router.post("/hello", summary="Declare hardware, location and models")
def hello(body: Hello, services: ServicesDep, worker: WorkerDep) -> dict:
    declare(services.db, worker.id, status="idle", **body.model_dump(exclude={"usd_per_hour"}))
    requested = request_worker_rate(services.db, worker.id, body.usd_per_hour)
    return {"worker_id": worker.id, "lease_seconds": services.settings.lease_seconds,
            "requested_micros_per_hour": requested, "rate": "awaits the operator's approval" if requested else None}


@router.post("/lease", summary="Take the next job, with up to `batch` - 1 jobs that share its device call "
                              "(204 when there is none)")
def lease(body: LeaseIn, services: ServicesDep, worker: WorkerDep, response: Response) -> dict | None:
    w = declare(services.db, worker.id, loaded=body.loaded)
    job = services.queue.lease(worker.id, models=[m["id"] for m in w.models], loaded=body.loaded)
    if job is None:
        declare(services.db, worker.id, status="idle")
        response.status_code = 204
        return None
    declare(services.db, worker.id, status="busy")

    def out(j):
        return {"id": j.id, "model": j.model, "mode": j.mode, "params": j.params, "attempt": j.attempts}

    return {**out(job), "batch": [out(j) for j in services.queue.lease_like(worker.id, job, body.batch - 1)]}


@router.post("/jobs/{job_id}/heartbeat", summary="Renew the lease; report progress; learn of cancellation")
def heartbeat(job_id: str, body: HeartbeatIn, services: ServicesDep, worker: WorkerDep) -> dict:
    declare(services.db, worker.id)
    return {"cancel": services.queue.heartbeat(job_id, worker.id, body.progress, body.preview)}


@router.get("/jobs/{job_id}/blobs/{key}", summary="An input image of a job this worker holds",
            response_class=Response)
def blob(job_id: str, key: str, services: ServicesDep, worker: WorkerDep) -> Response:
    results.job_blob(services.db, job_id, worker.id, key)
    return Response(services.images.get(key), media_type="image/png")


@router.post("/jobs/{job_id}/images", summary="Upload image `index` (PNG bytes as the body)")
async def upload(job_id: str, request: Request, services: ServicesDep, worker: WorkerDep,
                 index: Annotated[int, Query(ge=0, le=64)], seed: Annotated[int, Query(ge=0, le=2**63 - 1)],
                 width: Annotated[int, Query(ge=1, le=65536)], height: Annotated[int, Query(ge=1, le=65536)],
                 attempt: Annotated[int | None, Query(ge=0, le=1000)] = None) -> dict:
    data = await request.body()
    if not data or len(data) > MAX_IMAGE:
        raise BadRequest(f"the image body must be 1 to {MAX_IMAGE} bytes but is {len(data)}.", field="body")
    if not data.startswith(b"\x89PNG"):
        raise BadRequest("the image body must be a PNG.", field="body")
    image_id = await asyncio.to_thread(results.store_image, services.db, services.images, job_id, worker.id, index,
                                       seed, width, height, data, attempt)
    return {"id": image_id}


@router.post("/jobs/{job_id}/complete", summary="Finish the job with the uploaded images")
def complete(job_id: str, body: CompleteIn, services: ServicesDep, worker: WorkerDep) -> dict:
    job = results.complete(services.queue, job_id, worker.id, body.usage, body.infotexts, body.attempt)
    declare(services.db, worker.id, status="idle")
    return {"state": job.state}


@router.post("/jobs/{job_id}/fail", summary="Fail (or retry) the job")
def fail(job_id: str, body: FailIn, services: ServicesDep, worker: WorkerDep) -> dict:
    job = services.queue.fail(job_id, worker.id, body.code, body.message, body.retry, body.usage)
    declare(services.db, worker.id, status="idle")
    return {"state": job.state}


@router.post("/jobs/{job_id}/canceled", summary="The job stopped because its owner cancelled it")
def canceled(job_id: str, services: ServicesDep, worker: WorkerDep, body: CanceledIn | None = None) -> dict:
    return {"state": services.queue.cancelled(job_id, worker.id, body.usage if body else None).state}


@router.post("/jobs/{job_id}/release", summary="Hand the job back untouched (the worker is stopping)")
def release(job_id: str, services: ServicesDep, worker: WorkerDep) -> dict:
    services.queue.release(job_id, worker.id)
    declare(services.db, worker.id, status="stopped")
    return {"state": "queued"}
