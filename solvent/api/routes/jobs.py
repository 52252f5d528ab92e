"""Native jobs API: create, get, list, cancel, and the event stream."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy import select
from starlette.background import BackgroundTask

from ...errors import BadRequest, ValidationFailed
from ...generation.images import b64
from ...generation.spec import visible
from ...jobs.webhooks import delivery_of, secret_of
from ...storage.db import newest_first
from ...storage.models import FINAL_STATES, Job, JobState
from ..admission import admit, quote
from ..bodies import read_json_object, read_multipart
from ..deps import PrincipalDep, ServicesDep
from ..schemas import GenerationIn, ImageOut, JobError, JobList, JobOut, SegmentIn, UpscaleIn

router = APIRouter(prefix="/api", tags=["jobs"])


def job_out(services, job: Job, position: bool = True) -> JobOut:
    result = job.result or {}
    images = [ImageOut(**i, url=f"/api/images/{i['id']}") for i in result.get("images", [])]
    spec = job.spec
    params = visible(job.params)
    return JobOut(
        id=job.id, state=job.state, mode=job.mode, model=job.model, params=params, progress=job.progress,
        queue_position=services.queue.position(job) if position and job.state == JobState.queued else None,
        attempts=job.attempts, created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        error=JobError(code=job.error_code, message=job.error_message) if job.error_code else None,
        images=images, usage=result.get("usage"),
        commercial_use=spec.terms.get("commercial_use"), license=spec.terms.get("license"),
        license_url=spec.terms.get("license_url"), price_mc=spec.price_mc, webhook=_webhook(services, job),
    )


def _webhook(services, job: Job) -> dict | None:
    url = (job.params or {}).get("webhook_url")
    if not url:
        return None
    return delivery_of(services.db, job.org_id, job.id) or {"url": url, "state": "waiting", "attempts": 0, "log": []}


async def _body(request: Request, model: type[GenerationIn] | type[UpscaleIn] | type[SegmentIn] = GenerationIn):
    """The request as JSON, or as a multipart form whose files are the images (the size limits were applied
    by the limits middleware before this reads anything)."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        items, files = await read_multipart(request, "this form")
        data: dict = {k: b64(v) for k, v in files.items()}
        for key, value in items:
            try:
                data[key] = json.loads(value) if key == "loras" else value
            except json.JSONDecodeError as e:
                raise ValidationFailed(f"`loras` is not valid JSON: {e.msg}.", field="loras") from e
    else:
        data = await read_json_object(request, BadRequest, "the body is not valid JSON: {}.",
                                      "the body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from e


@router.post("/jobs", status_code=201, response_model=JobOut, summary="Create a generation job",
             openapi_extra={"requestBody": {"content": {
                 "application/json": {"schema": GenerationIn.model_json_schema()},
                 "multipart/form-data": {"schema": {"type": "object"}}}}})
async def create_job(request: Request, response: Response, services: ServicesDep, principal: PrincipalDep,
                     idempotency_key: Annotated[str | None, Header()] = None) -> JobOut:
    return await admitted(request, response, services, principal, await _body(request), idempotency_key)


async def admitted(request: Request, response: Response, services, principal, body, idempotency_key) -> JobOut:
    """Admit `body` (any native job) and answer it: 201 when created, 200 when the idempotency key replays it."""
    job, created = await asyncio.to_thread(admit, services, principal, body, idempotency_key,
                                           request.app.state.admission_hooks)
    if not created:
        response.status_code = 200
    return job_out(services, job)


@router.post("/upscale", status_code=201, response_model=JobOut, summary="Create an upscale job (an image made "
             "larger by an upscaler, optionally refined by a model with a prompt)",
             openapi_extra={"requestBody": {"content": {
                 "application/json": {"schema": UpscaleIn.model_json_schema()},
                 "multipart/form-data": {"schema": {"type": "object"}}}}})
async def create_upscale(request: Request, response: Response, services: ServicesDep, principal: PrincipalDep,
                         idempotency_key: Annotated[str | None, Header()] = None) -> JobOut:
    return await admitted(request, response, services, principal, await _body(request, UpscaleIn), idempotency_key)


@router.post("/remove-background", status_code=201, response_model=JobOut,
             summary="Create a background-removal job (what a segmenter finds for `prompt` kept, the rest transparent)",
             openapi_extra={"requestBody": {"content": {
                 "application/json": {"schema": SegmentIn.model_json_schema()},
                 "multipart/form-data": {"schema": {"type": "object"}}}}})
async def create_remove_background(request: Request, response: Response, services: ServicesDep,
                                   principal: PrincipalDep,
                                   idempotency_key: Annotated[str | None, Header()] = None) -> JobOut:
    return await admitted(request, response, services, principal, await _body(request, SegmentIn), idempotency_key)


@router.get("/webhooks/secret", summary="The organisation's webhook signing secret (admins)")
def webhook_secret(services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("admin")
    return {"secret": secret_of(services.db, principal.org_id), "signature_header": "Solvent-Signature",
            "scheme": "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>'>"}


@router.post("/webhooks/secret/rotate", summary="Make a new webhook signing secret (admins); the old one stops")
def rotate_webhook_secret(services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("admin")
    return {"secret": secret_of(services.db, principal.org_id, rotate=True)}


@router.post("/quote", summary="Price a generation request without running it (dry run)")
async def quote_job(request: Request, services: ServicesDep, principal: PrincipalDep) -> dict:
    body = await _body(request)
    return await asyncio.to_thread(quote, services, principal, body)


@router.get("/jobs/{job_id}", response_model=JobOut, summary="Get a job")
def get_job(job_id: str, services: ServicesDep, principal: PrincipalDep) -> JobOut:
    principal.require("read")
    return job_out(services, services.queue.get(principal.org_id, job_id))


@router.get("/jobs", response_model=JobList, summary="List jobs, newest first")
def list_jobs(services: ServicesDep, principal: PrincipalDep,
              state: Annotated[JobState | None, Query()] = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 20,
              cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None) -> JobList:
    principal.require("read")
    with services.db.session() as s:
        q = select(Job).where(Job.org_id == principal.org_id)
        if state is not None:
            q = q.where(Job.state == state)
        jobs = s.scalars(newest_first(s, q, Job, principal.org_id, cursor, "job").limit(limit + 1)).all()
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return JobList(jobs=[job_out(services, j, position=False) for j in jobs],
                   next_cursor=jobs[-1].id if more else None)


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, summary="Cancel a queued or running job")
def cancel_job(job_id: str, services: ServicesDep, principal: PrincipalDep) -> JobOut:
    principal.require("generate")
    return job_out(services, services.queue.cancel(principal.org_id, job_id))


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


@router.get("/jobs/{job_id}/events", summary="Server-Sent Events: queued, progress, preview, result",
            response_class=StreamingResponse)
async def job_events(job_id: str, request: Request, services: ServicesDep, principal: PrincipalDep):
    principal.require("read")
    services.queue.get(principal.org_id, job_id)  # 404 before the stream starts
    release = request.app.state.waits.acquire(principal.org_id, "event stream")
    try:
        return StreamingResponse(_events(job_id, request, services, principal, release),
                                 media_type="text/event-stream", background=BackgroundTask(release),
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    except BaseException:
        release()
        raise


async def _events(job_id: str, request: Request, services, principal, release):
    try:
        async for chunk in _stream(job_id, request, services, principal):
            yield chunk
    finally:
        release()


async def _stream(job_id: str, request: Request, services, principal):
    last: tuple | None = None
    last_preview = None
    while True:
        job = await asyncio.to_thread(services.queue.get, principal.org_id, job_id)
        if job.state == JobState.queued:
            pos = await asyncio.to_thread(services.queue.position, job)
            if last != ("queued", pos):
                last = ("queued", pos)
                yield _sse("queued", {"state": "queued", "position": pos})
        elif job.state == JobState.running:
            if last != ("running", job.progress):
                last = ("running", job.progress)
                yield _sse("progress", {"state": "running", "progress": job.progress})
            if job.preview and job.preview != last_preview:
                last_preview = job.preview
                yield _sse("preview", {"image": job.preview})
        if job.state in FINAL_STATES:
            out = job_out(services, job, position=False)
            yield _sse("result" if job.state == JobState.succeeded else job.state, out.model_dump(mode="json"))
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.2)
