"""The composition root: builds every service from settings. Nothing is built at import time."""

from __future__ import annotations

from dataclasses import dataclass

from .billing import Billing, Pricing, ensure_plans
from .config import Settings, get_settings
from .jobs import JobQueue, QueueLimits
from .ledger.costing import record_job_cost_in
from .storage import Database, ImageStore, LocalImageStore


@dataclass
class Services:
    settings: Settings
    db: Database
    queue: JobQueue
    images: ImageStore
    billing: Billing

    def close(self) -> None:
        self.db.dispose()


def build_services(settings: Settings | None = None, migrate: bool = True) -> Services:
    settings = settings or get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    if migrate:
        db.create_all()
    limits = QueueLimits(
        max_queued_per_org=settings.max_queued_per_org,
        max_queued_total=settings.max_queued_total,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        aging_skips=settings.aging_skips,
    )
    if migrate:
        ensure_plans(db)
    queue = JobQueue(db, limits)
    billing = Billing(db, Pricing.from_json(settings.pricing), settings.credits_per_gpu_hour)
    queue.in_final.append(billing.settle_in)  # a final job always has its credits captured or released
    queue.in_final.append(record_job_cost_in)  # …and then its cost and revenue priced, in the same transaction
    return Services(settings, db, queue, LocalImageStore(settings.images_dir), billing)
