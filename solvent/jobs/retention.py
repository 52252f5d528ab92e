"""How long a finished job's input images are kept (`SOLVENT_INPUT_RETENTION_HOURS`), then collected.

A job's inputs (init image, mask, control images) are only needed while it can run. Once it has ended and the retention
period has passed, its input blobs are deleted from the image store — unless an image or a job that is
still within its own retention refers to the same content (blobs are content-addressed) — and the job
records when (`inputs_collected_at`; its params keep the keys so the record stays readable).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import String, cast, func, select

from ..storage.blobs import ImageStore
from ..storage.db import Database, utcnow
from ..storage.models import FINAL_STATES, Image, Job


def blob_in_use(s, blob: str, exclude_jobs: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether an image, or a job whose inputs are not collected yet, refers to this content-addressed blob."""
    return bool(s.scalar(select(func.count()).select_from(Image).where(Image.blob == blob)) or s.scalar(
        select(func.count()).select_from(Job).where(Job.id.not_in(list(exclude_jobs)),
                                                    Job.inputs_collected_at.is_(None),
                                                    cast(Job.params, String).contains(blob))))


def collect_inputs(db: Database, images: ImageStore, retention: timedelta, limit: int = 200) -> int:
    """Delete the inputs of up to `limit` jobs that ended more than `retention` ago. Returns jobs collected."""
    cutoff = utcnow() - retention
    with db.session() as s:
        # Any mode may hold inputs (a text-to-image job's ControlNet images too).
        jobs = s.scalars(select(Job).where(Job.state.in_(FINAL_STATES), Job.inputs_collected_at.is_(None),
                                           Job.finished_at <= cutoff)
                         .order_by(Job.finished_at).limit(limit)).all()
        blobs = {b for job in jobs for b in job.spec.blob_keys()}
        now = utcnow()
        for job in jobs:
            job.inputs_collected_at = now
        ids = [job.id for job in jobs]
    for blob in blobs:
        with db.session() as s:
            used = blob_in_use(s, blob, ids)
        if not used:
            images.delete(blob)
    return len(ids)
