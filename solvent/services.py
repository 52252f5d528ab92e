"""The composition root: builds every service from settings. Nothing is built at import time."""

from __future__ import annotations

from dataclasses import dataclass

from .accounts.mail import Mailer
from .billing import Billing, Pricing, ensure_plans
from .config import Settings, get_settings
from .jobs import JobQueue, QueueLimits
from .ledger.budgets import Budgets
from .ledger.costing import record_job_cost_in
from .storage import Database, ImageStore, LocalImageStore


@dataclass
class Services:
    settings: Settings
    db: Database
    queue: JobQueue
    images: ImageStore
    billing: Billing
    budgets: Budgets
    mailer: Mailer

    def close(self) -> None:
        self.db.dispose()


def build_services(settings: Settings | None = None, migrate: bool = True) -> Services:
    settings = settings or get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    if migrate:
        db.create_all()
        ensure_plans(db)
    limits = QueueLimits(
        max_queued_per_org=settings.max_queued_per_org,
        max_queued_total=settings.max_queued_total,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        aging_skips=settings.aging_skips,
    )
    return assemble(settings, db, limits)


def assemble(settings: Settings, db: Database, limits: QueueLimits | None = None, pricing: Pricing | None = None,
             images: ImageStore | None = None) -> Services:
    """Wire the services over an open database: the queue's seams carry billing, the ledger and budgets."""
    queue = JobQueue(db, limits or QueueLimits())
    billing = Billing(db, pricing or Pricing.from_json(settings.pricing), settings.credits_per_gpu_hour)
    budgets = Budgets(db, allow_hosts=settings.outbound_allow_hosts)
    queue.in_final.append(billing.settle_in)  # a final job always has its credits captured or released
    # …then, in the same transaction, its cost and revenue priced, and its budgets' estimate released and
    # spend added (handed the new row, so settlement need not read it back)
    queue.in_final.append(lambda s, job: budgets.settle_in(s, job, record_job_cost_in(s, job)))
    queue.on_final.append(budgets.on_final)  # alerts to webhooks, after the commit
    return Services(settings, db, queue, images or LocalImageStore(settings.images_dir), billing, budgets,
                    Mailer(settings.smtp_url, settings.mail_from))
