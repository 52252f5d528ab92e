"""The services a running Solvent is made of, as one typed container. `solvent.root` builds it."""

from __future__ import annotations

from dataclasses import dataclass

from .accounts.mail import Mailer
from .billing import Billing
from .config import Settings
from .jobs import JobQueue
from .jobs.webhooks import Webhooks
from .ledger.budgets import Budgets
from .storage import Database, ImageStore


@dataclass
class Services:
    settings: Settings
    db: Database
    queue: JobQueue
    images: ImageStore
    billing: Billing
    budgets: Budgets
    mailer: Mailer
    webhooks: Webhooks

    def close(self) -> None:
        self.db.dispose()
