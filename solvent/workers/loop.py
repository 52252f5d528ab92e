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

from ..engine import GenerationRequest, LoraSpec
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
    def __init__(self, engine, backend, decl: dict[str, Any], poll: float = 0.5, lease_seconds: int = 30):
        self.engine = engine
        self.backend = backend
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
                job = self.backend.lease(self.engine.loaded_models())
            except Exception as e:  # noqa: BLE001 - unreachable server, refusal, a locked database: keep trying
                log.warning("lease failed: %s", e)
                self._stop.wait(min(5.0, self.poll * 4))
                continue
            if job is None:
                self._stop.wait(self.poll)
                continue
            self.run_job(job)

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

    def run_job(self, job: Leased) -> None:
        cancel = threading.Event()
        state = {"progress": 0.0, "preview": None, "preview_at": 0.0}
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.beat_every):
                try:
                    if self.backend.heartbeat(job.id, state["progress"], state["preview"]):
                        cancel.set()
                except LeaseLost:
                    cancel.set()
                    return
                except Exception as e:  # noqa: BLE001 - a failed beat is retried; the lease has slack
                    log.warning("heartbeat for %s failed: %s", job.id, e)
                if self._abort.is_set():
                    cancel.set()

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

        beater = threading.Thread(target=beat, name=f"heartbeat-{job.id}", daemon=True)
        beater.start()
        try:
            try:
                result = self.engine.generate(self._request(job), progress=progress,
                                              cancel=lambda: cancel.is_set() or self._abort.is_set())
            except Cancelled:
                if self._abort.is_set():
                    self.backend.release(job.id)
                else:
                    self.backend.canceled(job.id)
                return
            except OutOfMemory as e:
                self.backend.fail(job.id, e.code, e.message, retry=True)
                return
            except SolventError as e:
                self.backend.fail(job.id, e.code, e.message, retry=e.status >= 500)
                return
            except Exception as e:  # noqa: BLE001 - reported to the server with its cause, then retried
                log.error("job %s failed:\n%s", job.id, traceback.format_exc())
                self.backend.fail(job.id, "engine_error", f"{type(e).__name__}: {e}", retry=True)
                return
            for i, img in enumerate(result.images):
                self.backend.upload(job.id, i, result.seeds[i], img.width, img.height, result.encode(i, "png"))
            self.backend.complete(job.id, result.usage.to_dict(), result.infotexts)
            self.jobs_done += 1
        except LeaseLost as e:
            log.warning("job %s: %s (another worker has it now)", job.id, e)
        finally:
            done.set()
            beater.join(timeout=5)
