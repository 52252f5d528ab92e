"""The in-process worker backend (`solvent serve`): the queue, the registry and the image store, directly."""

from __future__ import annotations

from typing import Any

from ..jobs import results
from ..jobs.registry import declare
from ..ledger.catalog import set_worker_rate
from .protocol import Leased


class LocalBackend:
    """Talks to the database and image store of this process."""

    def __init__(self, services, worker_id: str):
        self.s = services
        self.worker_id = worker_id
        self.attempts: dict[str, int] = {}

    def hello(self, decl: dict[str, Any]) -> None:
        decl = dict(decl)
        rate = decl.pop("usd_per_hour", None)
        declare(self.s.db, self.worker_id, status="idle", **decl)
        set_worker_rate(self.s.db, self.worker_id, rate)

    def lease(self, loaded: list[str], batch: int = 1) -> list[Leased]:
        """The next job, and up to `batch` - 1 more that can share its device call; [] when the queue is empty."""
        w = declare(self.s.db, self.worker_id, loaded=loaded)
        job = self.s.queue.lease(self.worker_id, models=[m["id"] for m in w.models], loaded=loaded)
        declare(self.s.db, self.worker_id, status="busy" if job else "idle")
        if job is None:
            return []
        jobs = [job, *self.s.queue.lease_like(self.worker_id, job, batch - 1)]
        self.attempts = {j.id: j.attempts for j in jobs}
        return [Leased(j.id, j.model, j.mode, j.params, j.attempts) for j in jobs]

    def heartbeat(self, job_id: str, progress: float | None, preview: str | None) -> bool:
        declare(self.s.db, self.worker_id)
        return self.s.queue.heartbeat(job_id, self.worker_id, progress, preview)

    def input_image(self, job_id: str, key: str) -> bytes:
        return self.s.images.get(results.job_blob(self.s.db, job_id, self.worker_id, key))

    def upload(self, job_id: str, index: int, seed: int, width: int, height: int, data: bytes) -> None:
        results.store_image(self.s.db, self.s.images, job_id, self.worker_id, index, seed, width, height, data,
                            self.attempts.get(job_id))

    def complete(self, job_id: str, usage: dict, infotexts: list[str]) -> None:
        results.complete(self.s.queue, job_id, self.worker_id, usage, infotexts, self.attempts.get(job_id))

    def fail(self, job_id: str, code: str, message: str, retry: bool, usage: dict | None = None) -> None:
        self.s.queue.fail(job_id, self.worker_id, code, message, retry, usage)

    def canceled(self, job_id: str, usage: dict | None = None) -> None:
        self.s.queue.cancelled(job_id, self.worker_id, usage)

    def release(self, job_id: str) -> None:
        self.s.queue.release(job_id, self.worker_id)
        declare(self.s.db, self.worker_id, status="stopped")
