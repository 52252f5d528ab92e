"""What a worker loop needs from the queue, whichever way it reaches it (`local` or `remote`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass
class Leased:
    """A job as a worker holds it: its id, model, mode, the job spec's params and which lease this is."""

    id: str
    model: str
    mode: str
    params: dict[str, Any]
    attempt: int | None = None  # which lease of the job this is; completion names it


class WorkerBackend(Protocol):
    """The worker's side of the queue. Every call after `lease` names a job this worker holds; a call for a
    job whose lease has moved on raises `LeaseLost` (the loop drops that job and carries on with the rest)."""

    def hello(self, decl: dict[str, Any]) -> None:
        """Declare this worker: hardware, placement, models it serves, the rate it asks for."""

    def lease(self, loaded: list[str], batch: int = 1) -> list[Leased]:
        """The next job for this worker (models in memory first), plus up to `batch` - 1 that can share its
        device call; [] when nothing is queued for it."""

    def heartbeat(self, job_id: str, progress: float | None, preview: str | None) -> bool:
        """Keep the lease alive and report progress (0–1) and a base64 PNG preview; True when the job's
        owner cancelled it."""

    def input_image(self, job_id: str, key: str) -> bytes:
        """The bytes of one of the job's stored input images (`init_image_blob`, `mask_blob`)."""

    def upload(self, job_id: str, index: int, seed: int, width: int, height: int, data: bytes) -> None:
        """Store image `index` of the job (idempotent per job and index)."""

    def complete(self, job_id: str, usage: dict, infotexts: list[str]) -> None:
        """Mark the job succeeded with its `Usage` (as a dict); credits are captured and its cost priced."""

    def fail(self, job_id: str, code: str, message: str, retry: bool, usage: dict | None = None) -> None:
        """Fail the job (re-queued when `retry` and attempts remain), with its share of device time if known."""

    def canceled(self, job_id: str, usage: dict | None = None) -> None:
        """Acknowledge the owner's cancellation, with the device time the job used."""

    def release(self, job_id: str) -> None:
        """Hand the job back to the queue untouched (the worker is stopping)."""
