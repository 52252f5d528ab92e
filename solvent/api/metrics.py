"""Prometheus metrics, in a registry per app (so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..storage.models import Job, JobState

BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class Metrics:
    """The Prometheus counters and histograms of one app, fed by the queue's final jobs (hooked by the root)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Gauge("solvent_jobs", "Jobs by state", ["state"], registry=self.registry)
        self.workers_alive = Gauge("solvent_workers_alive", "Workers that checked in recently", registry=self.registry)
        self.latency = Histogram("solvent_job_latency_seconds", "Creation to final state", ["state"],
                                 buckets=BUCKETS, registry=self.registry)
        self.wait = Histogram("solvent_job_wait_seconds", "Creation to start", buckets=BUCKETS, registry=self.registry)
        self.busy = Counter("solvent_worker_busy_seconds", "Device-seconds spent generating", ["worker"],
                            registry=self.registry)
        self.images = Counter("solvent_images", "Images generated", ["model"], registry=self.registry)

    def on_final(self, job: Job) -> None:
        if job.finished_at:
            self.latency.labels(state=job.state).observe((job.finished_at - job.created_at).total_seconds())
        if job.started_at:
            self.wait.observe(max(0.0, (job.started_at - job.created_at).total_seconds()))
        if job.state == JobState.succeeded and job.result:
            usage = job.result.get("usage") or {}
            self.busy.labels(worker=job.worker_id or "").inc(float(usage.get("device_seconds", 0)))
            self.images.labels(model=job.model).inc(len(job.result.get("images", [])))
