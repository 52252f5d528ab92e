"""How a worker reaches the queue: directly (in-process, `solvent serve`) or over the worker API."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import SolventError
from ..jobs import results
from ..jobs.queue import LeaseLost
from ..jobs.workers import declare
from ..ledger.catalog import set_worker_rate


@dataclass
class Leased:
    id: str
    model: str
    mode: str
    params: dict[str, Any]
    attempt: int | None = None  # which lease of the job this is; completion names it


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


class RemoteError(SolventError):
    code = "server_error"


class HttpBackend:
    """Talks to a Solvent server's worker API with a worker token; retries transient failures."""

    def __init__(self, server: str, token: str, timeout: float = 30.0, retries: int = 5):
        self.client = httpx.Client(base_url=server.rstrip("/"), timeout=timeout,
                                   headers={"Authorization": f"Bearer {token}"})
        self.retries = retries
        self.attempts: dict[str, int | None] = {}

    def _call(self, method: str, path: str, **kw) -> httpx.Response:
        delay = 0.5
        for attempt in range(self.retries):
            try:
                r = self.client.request(method, path, **kw)
            except httpx.TransportError:
                if attempt == self.retries - 1:
                    raise
                time.sleep(delay)
                delay *= 2
                continue
            if r.status_code >= 500 and attempt < self.retries - 1:
                time.sleep(delay)
                delay *= 2
                continue
            is_json = r.headers.get("content-type", "").startswith("application/json")
            err = r.json().get("error", {}) if r.status_code >= 400 and is_json else {}
            if err.get("code") == "lease_lost":
                raise LeaseLost(err.get("message", "lease lost"))
            if r.status_code >= 400:
                e = RemoteError(f"{method} {path}: {r.status_code} {err.get('message', r.text[:200])}")
                e.status = r.status_code
                raise e
            return r
        raise AssertionError("unreachable")

    def hello(self, decl: dict[str, Any]) -> None:
        self._call("POST", "/api/worker/hello", json=decl)

    def lease(self, loaded: list[str], batch: int = 1) -> list[Leased]:
        r = self._call("POST", "/api/worker/lease", json={"loaded": loaded, "batch": batch})
        if r.status_code == 204:
            return []
        d = r.json()
        jobs = [Leased(x["id"], x["model"], x["mode"], x["params"], x.get("attempt")) for x in [d, *d.get("batch", [])]]
        self.attempts = {j.id: j.attempt for j in jobs}
        return jobs

    def heartbeat(self, job_id: str, progress: float | None, preview: str | None) -> bool:
        r = self._call("POST", f"/api/worker/jobs/{job_id}/heartbeat", json={"progress": progress, "preview": preview})
        return bool(r.json()["cancel"])

    def input_image(self, job_id: str, key: str) -> bytes:
        return self._call("GET", f"/api/worker/jobs/{job_id}/blobs/{key}").content

    def upload(self, job_id: str, index: int, seed: int, width: int, height: int, data: bytes) -> None:
        params = {"index": index, "seed": seed, "width": width, "height": height}
        if self.attempts.get(job_id) is not None:
            params["attempt"] = self.attempts[job_id]
        self._call("POST", f"/api/worker/jobs/{job_id}/images", content=data, params=params,
                   headers={"Content-Type": "image/png"})

    def complete(self, job_id: str, usage: dict, infotexts: list[str]) -> None:
        self._call("POST", f"/api/worker/jobs/{job_id}/complete",
                   json={"usage": usage, "infotexts": infotexts, "attempt": self.attempts.get(job_id)})

    def fail(self, job_id: str, code: str, message: str, retry: bool, usage: dict | None = None) -> None:
        self._call("POST", f"/api/worker/jobs/{job_id}/fail",
                   json={"code": code, "message": message, "retry": retry, "usage": usage})

    def canceled(self, job_id: str, usage: dict | None = None) -> None:
        self._call("POST", f"/api/worker/jobs/{job_id}/canceled", json={"usage": usage})

    def release(self, job_id: str) -> None:
        self._call("POST", f"/api/worker/jobs/{job_id}/release")
