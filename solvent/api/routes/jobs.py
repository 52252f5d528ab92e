"""Native jobs API: create, get, list, cancel, and the event stream."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy import select
from starlette.background import BackgroundTask

from ...errors import BadRequest, NotFound, ValidationFailed
from ...storage.models import FINAL_STATES, Image, Job, JobState
from ..admission import admit, quote
from ..deps import PrincipalDep, ServicesDep
from ..schemas import GenerationIn, ImageOut, JobError, JobList, JobOut

router = APIRouter(prefix="/api", tags=["jobs"])
MAX_BODY = 64 * 1024 * 1024


def job_out(services, job: Job, position: bool = True) -> JobOut:
    result = job.result or {}
    images = [ImageOut(**i, url=f"/api/images/{i['id']}") for i in result.get("images", [])]
    params = {k: v for k, v in job.params.items() if not k.endswith("_blob")}
    return JobOut(
        id=job.id, state=job.state, mode=job.mode, model=job.model, params=params, progress=job.progress,
        queue_position=services.queue.position(job) if position and job.state == JobState.queued else None,
        attempts=job.attempts, created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        error=JobError(code=job.error_code, message=job.error_message) if job.error_code else None,
        images=images, usage=result.get("usage"),
        commercial_use=(job.params.get("terms") or {}).get("commercial_use"),
        license=(job.params.get("terms") or {}).get("license"),
        license_url=(job.params.get("terms") or {}).get("license_url"),
        price_mc=job.params.get("price_mc"),
    )


async def _body(request: Request) -> GenerationIn:
    length = int(request.headers.get("content-length") or 0)
    if length > MAX_BODY:
        raise BadRequest(f"the body is {length} bytes; at most {MAX_BODY} are accepted.", field="body", value=length)
    ctype = request.headers.get("content-type", "")
    try:
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            data: dict = {}
            for key, value in form.multi_items():
                if hasattr(value, "read"):
                    raw = await value.read()
                    data[key] = base64.b64encode(raw).decode()
                elif key == "loras":
                    data[key] = json.loads(value)
                else:
                    data[key] = value
            return GenerationIn.model_validate(data)
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise BadRequest(f"the body is over {MAX_BODY} bytes.", field="body")
        try:
            payload = json.loads(raw or b"{}")
        except json.JSONDecodeError as e:
            raise BadRequest(f"the body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}.",
                             field="body") from e
        if not isinstance(payload, dict):
            raise BadRequest(f"the body must be a JSON object but is {type(payload).__name__}.", field="body")
        return GenerationIn.model_validate(payload)
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from e
    except json.JSONDecodeError as e:
        raise ValidationFailed(f"`loras` is not valid JSON: {e.msg}.", field="loras") from e


@router.post("/jobs", status_code=201, response_model=JobOut, summary="Create a generation job",
             openapi_extra={"requestBody": {"content": {
                 "application/json": {"schema": GenerationIn.model_json_schema()},
                 "multipart/form-data": {"schema": {"type": "object"}}}}})
async def create_job(request: Request, response: Response, services: ServicesDep, principal: PrincipalDep,
                     idempotency_key: Annotated[str | None, Header()] = None) -> JobOut:
    body = await _body(request)
    job, created = await asyncio.to_thread(admit, services, principal, body, idempotency_key,
                                           request.app.state.admission_hooks)
    if not created:
        response.status_code = 200
    return job_out(services, job)


@router.post("/quote", summary="Price a generation request without running it (dry run)")
async def quote_job(request: Request, services: ServicesDep, principal: PrincipalDep) -> dict:
    body = await _body(request)
    return await asyncio.to_thread(quote, services, principal, body)


@router.get("/jobs/{job_id}", response_model=JobOut, summary="Get a job")
def get_job(job_id: str, services: ServicesDep, principal: PrincipalDep) -> JobOut:
    principal.require("read")
    return job_out(services, services.queue.get(principal.org_id, job_id))


def newest_first(s, query, row, org_id: str, cursor: str | None, what: str):
    """`query` ordered newest first (`created_at`, then `id`), after the `cursor` row of this organisation."""
    if cursor:
        anchor = s.scalar(select(row).where(row.id == cursor, row.org_id == org_id))
        if anchor is None:
            raise ValidationFailed(f"`cursor` {cursor!r} is not {'an' if what[0] in 'aeiou' else 'a'} {what} of "
                                   "yours.", field="cursor", value=cursor)
        query = query.where((row.created_at < anchor.created_at) |
                            ((row.created_at == anchor.created_at) & (row.id < anchor.id)))
    return query.order_by(row.created_at.desc(), row.id.desc())


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


def image_row(services, org_id: str, image_id: str) -> Image:
    with services.db.session() as s:
        img = s.scalar(select(Image).where(Image.id == image_id, Image.org_id == org_id))
    if img is None:
        raise NotFound(f"`image` {image_id!r} was not found.", field="image", value=image_id)
    return img
