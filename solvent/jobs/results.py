"""What a worker hands back: images (stored once per job and index) and the final result."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..errors import LeaseLost, NotFound
from ..storage.blobs import ImageStore
from ..storage.db import Database
from ..storage.models import Image, Job, JobState
from .queue import JobQueue


def _held(s, job_id: str, worker_id: str, attempt: int | None = None) -> Job:
    """The running job `worker_id` holds — under the same lease (`attempt`) when it says which."""
    job = s.scalar(select(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.running))
    if job is None:
        raise LeaseLost(f"worker {worker_id!r} no longer holds job {job_id!r}.", field="job", value=job_id)
    if attempt is not None and job.attempts != attempt:
        raise LeaseLost(f"job {job_id!r} was leased again (attempt {job.attempts}); attempt {attempt}'s lease ended.",
                        field="attempt", value=attempt)
    return job


def store_image(db: Database, images: ImageStore, job_id: str, worker_id: str, index: int, seed: int,
                width: int, height: int, data: bytes, attempt: int | None = None) -> str:
    """Store image `index` of a job held by `worker_id`; a retried upload replaces, never duplicates.

    A worker that does not hold the job stores nothing: the lease is checked before the bytes are written.
    """
    with db.session() as s:
        _held(s, job_id, worker_id, attempt)
    blob = images.put(data)
    with db.session() as s:
        job = _held(s, job_id, worker_id, attempt)
        img = s.scalar(select(Image).where(Image.job_id == job_id, Image.index == index))
        if img is None:
            img = Image(org_id=job.org_id, job_id=job_id, index=index, seed=seed, blob=blob, width=width,
                        height=height)
            s.add(img)
        else:
            img.seed, img.blob, img.width, img.height = seed, blob, width, height
    return img.id


def complete(queue: JobQueue, job_id: str, worker_id: str, usage: dict[str, Any], infotexts: list[str],
             attempt: int | None = None) -> Job:
    """Finish a job with the images already uploaded for it (under the lease `attempt`, when given)."""
    with queue.db.session() as s:
        _held(s, job_id, worker_id, attempt)
        imgs = s.scalars(select(Image).where(Image.job_id == job_id).order_by(Image.index)).all()
        result = {
            "images": [{"id": i.id, "index": i.index, "seed": i.seed, "width": i.width, "height": i.height}
                       for i in imgs],
            "usage": usage,
            "infotexts": infotexts,
        }
    return queue.complete(job_id, worker_id, result)


def job_blob(db: Database, job_id: str, worker_id: str, key: str) -> str:
    """Check that `key` is an input of a job `worker_id` holds (workers read only their own inputs)."""
    with db.session() as s:
        job = _held(s, job_id, worker_id)
        if key not in job.spec.blob_keys():
            raise NotFound(f"`blob` {key!r} is not an input of job {job_id!r}.", field="blob", value=key)
    return key


def image_of(db: Database, org_id: str, image_id: str) -> Image:
    """An image of the organisation's, or `NotFound` (the same answer whether it is another's or none)."""
    with db.session() as s:
        img = s.scalar(select(Image).where(Image.id == image_id, Image.org_id == org_id))
    if img is None:
        raise NotFound(f"`image` {image_id!r} was not found.", field="image", value=image_id)
    return img


def image_by_id(db: Database, image_id: str) -> Image | None:
    """An image by its (unguessable) id alone: only for a capability already checked, such as a signed link."""
    with db.session() as s:
        return s.scalar(select(Image).where(Image.id == image_id))


def images_of_job(db: Database, org_id: str, job_id: str) -> list[Image]:
    """A job's images of the organisation's, by index."""
    with db.session() as s:
        return list(s.scalars(select(Image).where(Image.job_id == job_id, Image.org_id == org_id).order_by(Image.index)))
