"""The remote worker backend: a Solvent server's worker API over HTTP, with a worker token.

Imports no database code: a GPU machine needs the engine, httpx and this package's vocabulary only.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from ..errors import LeaseLost, RemoteError
from .protocol import Leased


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
                raise RemoteError(f"{method} {path}: {r.status_code} {err.get('message', r.text[:200])}",
                                  status=r.status_code)
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
