"""The worker loop: lease → generate (progress streamed, lease kept alive) → store images → complete.

A worker stops gracefully: `stop()` lets the running job finish; `abort()` cancels it between
steps and hands it back to the queue. Nothing is lost either way.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import threading
import time
import traceback
from typing import Any

from ..engine import GenerationRequest, LoraSpec, batch_parts, part_ms
from ..engine.families import get_family
from ..engine.lora import lora_family
from ..errors import Cancelled, OutOfMemory, SolventError
from ..jobs.queue import LeaseLost
from .backends import Leased

log = logging.getLogger("solvent.worker")
PREVIEW_EVERY = 0.5  # seconds between previews sent to the server


def declaration(engine, provider: str = "local", region: str = "", instance_type: str = "", name: str = "",
                commitment: str = "on_demand", usd_per_hour: str | None = None) -> dict:
    """What this worker tells the server: hardware, location, models it can serve."""
    import torch

    dev = engine.device
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        hardware = {"kind": "gpu", "gpu": props.name, "count": torch.cuda.device_count(),
                    "memory_bytes": props.total_memory}
    else:
        hardware = {"kind": dev.type, "cpus": os.cpu_count()}
    records = engine.store.list()
    models = [{"id": r.id, "family": r.family, "native_resolution": r.native_resolution,
               "default_steps": r.default_steps, "default_cfg": r.default_cfg, "default_sampler": r.default_sampler,
               "license_name": r.license_name, "license_url": r.license_url, "short_hash": r.short_hash,
               "sha256": r.sha256}
              for r in records]
    installed = _loras(engine.settings.loras_dir)
    for m, r in zip(models, records, strict=True):  # the LoRAs each model can take (the studio's picker)
        arch, width = get_family(r.family).architecture, engine.store.cross_attention_width(r)
        m["loras"] = [name for name, lora_arch, lora_width in installed
                      if lora_arch == arch and (None in (width, lora_width) or width == lora_width)]
    return {"name": name or os.uname().nodename, "hardware": hardware, "provider": provider, "region": region,
            "instance_type": instance_type, "commitment": commitment, "usd_per_hour": usd_per_hour, "models": models,
            "loaded": engine.loaded_models()}


def _loras(folder) -> list[tuple[str, str, int | None]]:
    """(name, architecture, cross-attention width) of each readable LoRA file in the LoRA folder."""
    out = []
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        try:
            out.append((path.stem, *lora_family(path)))
        except SolventError:
            continue  # unreadable: a job naming it gets the engine's clear error instead
    return out


class WorkerLoop:
    def __init__(self, engine, backend, decl: dict[str, Any], poll: float = 0.5, lease_seconds: int = 30,
                 batch: int = 1):
        self.engine = engine
        self.backend = backend
        self.batch = batch  # jobs run in one device call when compatible ones are queued
        self.decl = decl
        self.poll = poll
        self.beat_every = max(0.2, min(0.5, lease_seconds / 3))  # also how often progress reaches the API
        self._stop = threading.Event()
        self._abort = threading.Event()
        self.jobs_done = 0

    def stop(self) -> None:
        """Finish the current job, then stop."""
        self._stop.set()

    def abort(self) -> None:
        """Stop now: cancel the current job between steps and hand it back to the queue."""
        self._abort.set()
        self._stop.set()

    def run(self) -> None:
        self.backend.hello(self.decl)
        while not self._stop.is_set():
            try:
                jobs = self.backend.lease(self.engine.loaded_models(), self.batch)
            except Exception as e:  # noqa: BLE001 - unreachable server, refusal, a locked database: keep trying
                log.warning("lease failed: %s", e)
                self._stop.wait(min(5.0, self.poll * 4))
                continue
            if not jobs:
                self._stop.wait(self.poll)
                continue
            self.run_jobs(jobs)

    def _request(self, job: Leased) -> GenerationRequest:
        from PIL import Image

        p = job.params
        init = mask = None
        if p.get("init_image_blob"):
            init = Image.open(io.BytesIO(self.backend.input_image(job.id, p["init_image_blob"]))).convert("RGB")
        if p.get("mask_blob"):
            mask = Image.open(io.BytesIO(self.backend.input_image(job.id, p["mask_blob"]))).convert("L")
        return GenerationRequest(
            prompt=p.get("prompt", ""), negative_prompt=p.get("negative_prompt", ""), model=job.model,
            width=p.get("width"), height=p.get("height"), steps=p.get("steps"), cfg_scale=p.get("cfg_scale"),
            sampler=p.get("sampler"), seed=p.get("seed"), batch_size=p.get("batch_size", 1), init_image=init,
            strength=p.get("strength", 0.75), mask=mask,
            loras=[LoraSpec(x["name"], x.get("weight", 1.0)) for x in p.get("loras", [])],
            terms=dict(p.get("terms") or {}),
        )

    def run_jobs(self, jobs: list[Leased]) -> None:
        """Run one job, or compatible jobs in one device call; each is completed, failed or cancelled on its own."""
        canceled: set[str] = set()  # jobs whose owner cancelled them (a batch runs on for the others)
        lost: set[str] = set()
        state = {"progress": 0.0, "preview": None, "preview_at": 0.0}
        done = threading.Event()

        def stop_all() -> bool:
            return self._abort.is_set() or len(canceled | lost) == len(jobs)

        def beat() -> None:
            while not done.wait(self.beat_every):
                for job in jobs:
                    if job.id in canceled or job.id in lost:
                        continue
                    try:
                        if self.backend.heartbeat(job.id, state["progress"], state["preview"]):
                            canceled.add(job.id)
                    except LeaseLost:
                        lost.add(job.id)
                    except Exception as e:  # noqa: BLE001 - a failed beat is retried; the lease has slack
                        log.warning("heartbeat for %s failed: %s", job.id, e)

        def progress(ev) -> None:
            state["progress"] = ev.fraction
            now = time.monotonic()
            if now - state["preview_at"] >= PREVIEW_EVERY:
                state["preview_at"] = now
                img = ev.preview()
                if img is not None:
                    buf = io.BytesIO()
                    img.save(buf, "PNG")
                    state["preview"] = base64.b64encode(buf.getvalue()).decode()

        def each(fn) -> None:  # report to every job still ours; one lost lease does not stop the others
            for job in jobs:
                if job.id in lost:
                    continue
                try:
                    fn(job)
                except LeaseLost as e:
                    log.warning("job %s: %s (another worker has it now)", job.id, e)

        def shares(seconds: float) -> dict[str, dict | None]:
            """Each job's part of a batch that stopped without results, by images asked (a lone job's time is its own)."""
            if len(jobs) == 1:
                return {jobs[0].id: None}
            parts = batch_parts(round(seconds * 1000), [max(1, int(j.params.get("batch_size") or 1)) for j in jobs])
            return {j.id: {"device_seconds": part_ms(p) / 1000, "images": 0, "batch": p}
                    for j, p in zip(jobs, parts, strict=True)}

        beater = threading.Thread(target=beat, name=f"heartbeat-{jobs[0].id}", daemon=True)
        beater.start()
        started = time.perf_counter()
        try:
            try:
                requests = [self._request(job) for job in jobs]
                if len(jobs) == 1:
                    results = [self.engine.generate(requests[0], progress=progress, cancel=stop_all)]
                else:
                    results = self.engine.generate_batch(requests, progress=progress, cancel=stop_all)
            except Cancelled:
                if self._abort.is_set():
                    each(lambda job: self.backend.release(job.id))
                else:
                    used = shares(time.perf_counter() - started)
                    each(lambda job: self.backend.canceled(job.id, used[job.id]))
                return
            except SolventError as e:  # out of memory is retried (on a smaller batch, or another worker)
                code, message, retry = e.code, e.message, isinstance(e, OutOfMemory) or e.status >= 500
                if isinstance(e, OutOfMemory) and len(jobs) > 1:
                    self.batch = max(1, len(jobs) // 2)
                    log.warning("a batch of %d jobs ran out of device memory; batching at most %d from now on",
                                len(jobs), self.batch)
                used = shares(time.perf_counter() - started)
                each(lambda job: self.backend.fail(job.id, code, message, retry=retry, usage=used[job.id]))
                return
            except Exception as e:  # noqa: BLE001 - reported to the server with its cause, then retried
                log.error("job(s) %s failed:\n%s", ", ".join(j.id for j in jobs), traceback.format_exc())
                message, used = f"{type(e).__name__}: {e}", shares(time.perf_counter() - started)
                each(lambda job: self.backend.fail(job.id, "engine_error", message, retry=True, usage=used[job.id]))
                return
            by_id = {job.id: result for job, result in zip(jobs, results, strict=True)}

            def deliver(job: Leased) -> None:
                result = by_id[job.id]
                if job.id in canceled:  # cancelled while its batch ran on: its images are dropped, its time counted
                    self.backend.canceled(job.id, {**result.usage.to_dict(), "images": 0, "pixels": 0})
                    return
                for i, img in enumerate(result.images):
                    self.backend.upload(job.id, i, result.seeds[i], img.width, img.height, result.encode(i, "png"))
                self.backend.complete(job.id, result.usage.to_dict(), result.infotexts)
                self.jobs_done += 1

            each(deliver)
        finally:
            done.set()
            beater.join(timeout=5)
