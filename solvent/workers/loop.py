"""The worker loop: lease → generate (progress streamed, lease kept alive) → store images → complete.

`WorkerLoop.run_jobs` reads as numbered steps; `_LeaseKeeper` holds what changes while the engine runs
(heartbeats, cancellations, lost leases, progress and the preview). A worker stops gracefully: `stop()`
lets the running job finish; `abort()` cancels it between steps and hands it back to the queue. Nothing
is lost either way.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..engine.lora import fits_architecture, lora_family
from ..errors import Cancelled, LeaseLost, OutOfMemory, SolventError
from ..generation import GenerationRequest, JobSpec, batch_parts, part_ms
from ..generation.families import get_family
from ..generation.images import png_b64
from ..generation.request import SegmentRequest, UpscaleRequest
from .protocol import Leased, WorkerBackend

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
    upscalers = [r.id for r in engine.store.list("upscaler")]
    for m, r in zip(models, records, strict=True):  # the LoRAs and adapters each model can take
        arch, width = get_family(r.family).architecture, engine.store.cross_attention_width(r)
        m["loras"] = [name for name, lora_arch, lora_width in installed
                      if fits_architecture(lora_arch, arch) and (None in (width, lora_width) or width == lora_width)]
        m["preset"] = r.preset
        m["max_side"] = r.details.get("max_side")  # an SD3 transformer's position table: larger sizes are upscaled
        m["upscalers"] = upscalers  # hires fix and upscale jobs may name these (and Lanczos, the latent modes)
        m["cost_class"] = r.details.get("cost_class") or get_family(r.family).cost_class
        m["text_layers"] = engine.store.text_layers(r)  # the largest CLIP skip it takes
        m["default_vae"] = r.default_vae
        m.update(engine.fits(r))  # controlnets (with t2i_adapters), ip_adapters, vaes, embeddings
    # Upscalers are served like models (an upscale job is leased by its upscaler); Lanczos needs no file.
    models += [{"id": "lanczos", "kind": "upscaler", "scale": 2, "architecture": "Lanczos", "builtin": True}]
    models += [{"id": r.id, "kind": "upscaler", "scale": int(r.details.get("scale") or 4),
                "architecture": r.details.get("architecture"), "short_hash": r.short_hash, "sha256": r.sha256,
                "license_name": r.license_name, "builtin": r.source == "builtin"}
               for r in engine.store.list("upscaler")]
    # Segmenters too (a background-removal job is leased by its segmenter; `mask_prompt` jobs need one beside the
    # checkpoint, which each checkpoint's `segmenters` lists).
    models += [{"id": r.id, "kind": "segmenter", "architecture": r.details.get("model_type"),
                "short_hash": r.short_hash, "sha256": r.sha256, "license_name": r.license_name}
               for r in engine.store.list("segmenter")]
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


class _LeaseKeeper:
    """While a device call runs: a heartbeat thread keeps each job's lease, learns of cancellations and lost
    leases, and carries the latest progress and preview to the server."""

    def __init__(self, backend: WorkerBackend, jobs: list[Leased], every: float):
        self.backend, self.jobs, self.every = backend, jobs, every
        self.canceled: set[str] = set()  # jobs whose owner cancelled them (a batch runs on for the others)
        self.lost: set[str] = set()  # jobs another worker holds now
        self.progress, self.preview, self._preview_at = 0.0, None, 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{jobs[0].id}", daemon=True)

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._done.wait(self.every):
            for job in self.jobs:
                if job.id in self.canceled or job.id in self.lost:
                    continue
                try:
                    if self.backend.heartbeat(job.id, self.progress, self.preview):
                        self.canceled.add(job.id)
                except LeaseLost:
                    self.lost.add(job.id)
                except Exception as e:  # noqa: BLE001 - a failed beat is retried; the lease has slack
                    log.warning("heartbeat for %s failed: %s", job.id, e)

    def all_gone(self) -> bool:
        """Every job of the call was cancelled or lost: the engine may stop."""
        return len(self.canceled | self.lost) == len(self.jobs)

    def on_progress(self, ev) -> None:
        self.progress = ev.fraction
        now = time.monotonic()
        if now - self._preview_at >= PREVIEW_EVERY:
            self._preview_at = now
            img = ev.preview()
            if img is not None:
                self.preview = png_b64(img)

    def each(self, fn: Callable[[Leased], None]) -> None:
        """Report to every job still ours; one lost lease does not stop the others."""
        for job in self.jobs:
            if job.id in self.lost:
                continue
            try:
                fn(job)
            except LeaseLost as e:
                log.warning("job %s: %s (another worker has it now)", job.id, e)


class WorkerLoop:
    def __init__(self, engine, backend: WorkerBackend, decl: dict[str, Any], poll: float = 0.5,
                 lease_seconds: int = 30, batch: int = 1):
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

    def _request(self, job: Leased) -> GenerationRequest | UpscaleRequest | SegmentRequest:
        """The job spec as the engine's request, its input images fetched and decoded."""
        from PIL import Image

        spec = JobSpec.from_params(job.params)
        if spec.task == "generate" or spec.refine:
            spec.model = job.model

        def image(blob: str, mode: str = "RGB") -> Image.Image:
            return Image.open(io.BytesIO(self.backend.input_image(job.id, blob))).convert(mode)

        init = image(spec.init_image_blob) if spec.init_image_blob else None
        if spec.task == "upscale":
            return spec.to_upscale(init)
        if spec.task == "segment":
            return spec.to_segment(init)
        mask = image(spec.mask_blob, "L") if spec.mask_blob else None
        controls = [image(c["image_blob"]) for c in spec.controls]
        references = [[image(b) for b in u.get("image_blobs") or []] for u in spec.ip_adapters]
        return spec.to_request(init, mask, controls, references)

    def run_jobs(self, jobs: list[Leased]) -> None:
        """Run one job, or compatible jobs in one device call; each is completed, failed or cancelled on its own."""
        with _LeaseKeeper(self.backend, jobs, self.beat_every) as keeper:
            started = time.perf_counter()
            try:
                # 1. The job specs as engine requests (input images fetched).
                requests = [self._request(job) for job in jobs]
                # 2. One device call: the engine stops between steps when aborted or every job is gone.
                stop = lambda: self._abort.is_set() or keeper.all_gone()  # noqa: E731
                if isinstance(requests[0], UpscaleRequest):
                    results = [self.engine.run_upscale(requests[0], progress=keeper.on_progress, cancel=stop)]
                elif isinstance(requests[0], SegmentRequest):
                    results = [self.engine.run_segment(requests[0], progress=keeper.on_progress, cancel=stop)]
                elif len(jobs) == 1:
                    results = [self.engine.generate(requests[0], progress=keeper.on_progress, cancel=stop)]
                else:
                    results = self.engine.generate_batch(requests, progress=keeper.on_progress, cancel=stop)
            except Cancelled:
                # 3a. Stopped: handed back (abort) or cancelled with the time it used.
                if self._abort.is_set():
                    keeper.each(lambda job: self.backend.release(job.id))
                else:
                    used = self._shares(jobs, time.perf_counter() - started)
                    keeper.each(lambda job: self.backend.canceled(job.id, used[job.id]))
                return
            except Exception as e:  # noqa: BLE001 - reported to the server with its cause
                # 3b. Failed: every job of the call fails with the same cause and its share of the time.
                self._fail_all(keeper, jobs, e, time.perf_counter() - started)
                return
            # 4. Delivered: images stored, then each job completed with its usage (or acknowledged cancelled).
            by_id = {job.id: result for job, result in zip(jobs, results, strict=True)}
            keeper.each(lambda job: self._deliver(keeper, job, by_id[job.id]))

    def _deliver(self, keeper: _LeaseKeeper, job: Leased, result) -> None:
        if job.id in keeper.canceled:  # cancelled while its batch ran on: its images are dropped, its time counted
            self.backend.canceled(job.id, {**result.usage.to_dict(), "images": 0, "pixels": 0})
            return
        for i, img in enumerate(result.images):
            self.backend.upload(job.id, i, result.seeds[i], img.width, img.height, result.encode(i, "png"))
        self.backend.complete(job.id, result.usage.to_dict(), result.infotexts)
        self.jobs_done += 1

    def _fail_all(self, keeper: _LeaseKeeper, jobs: list[Leased], error: Exception, seconds: float) -> None:
        """Out of memory and server-side errors are retried (on a smaller batch, or another worker)."""
        if isinstance(error, SolventError):
            code, message, retry = error.code, error.message, isinstance(error, OutOfMemory) or error.status >= 500
            if isinstance(error, OutOfMemory) and len(jobs) > 1:
                self.batch = max(1, len(jobs) // 2)
                log.warning("a batch of %d jobs ran out of device memory; batching at most %d from now on",
                            len(jobs), self.batch)
        else:
            log.error("job(s) %s failed:\n%s", ", ".join(j.id for j in jobs), traceback.format_exc())
            code, message, retry = "engine_error", f"{type(error).__name__}: {error}", True
        used = self._shares(jobs, seconds)
        keeper.each(lambda job: self.backend.fail(job.id, code, message, retry=retry, usage=used[job.id]))

    @staticmethod
    def _shares(jobs: list[Leased], seconds: float) -> dict[str, dict | None]:
        """Each job's part of a call that stopped without results, by images asked (a lone job's time is its own)."""
        if len(jobs) == 1:
            return {jobs[0].id: None}
        parts = batch_parts(round(seconds * 1000), [JobSpec.from_params(j.params).images for j in jobs])
        return {j.id: {"device_seconds": part_ms(p) / 1000, "images": 0, "batch": p}
                for j, p in zip(jobs, parts, strict=True)}
