"""The composition root: the one module that assembles a running Solvent from its settings.

Read this file to see what Solvent is made of and how the parts are joined:

- `build_services` / `assemble`: the database-side services, and the queue's seams that make a job's end
  settle its money in the same transaction — billing captures or releases the credits, the ledger prices
  the job's device time, the budgets add the spend (`settle_final_job_in`); alerts leave after the commit.
- `build_store` / `build_engine`: the model store with its built-in models, and the engine over it.
- `build_app`: the HTTP app with its API surfaces (native, Stability, A1111, OpenAI), their error
  renderers, the metrics hook on the queue, and the studio.
- `build_local_worker` / `build_remote_worker`: a worker loop in this process, or one reaching a server
  over the worker API.
- `bootstrap_admin`: on a fresh database, the operator's user, organisation, key and grant.
- `Server`: the app and its in-process worker started and stopped together (`solvent serve`).

Nothing is built at import time and nothing registers itself: every hook is attached here. The CLI parses
arguments, calls these and prints. Each builder imports what it builds, so a remote worker (which needs the
engine and HTTP only) never imports the database side, and an API process never imports torch.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import Settings, get_settings

if TYPE_CHECKING:
    from .billing import Pricing
    from .jobs import QueueLimits
    from .services import Services
    from .storage import Database, ImageStore

# -- database-side services --------------------------------------------------------------------


def queue_limits(settings: Settings) -> QueueLimits:
    from .jobs import QueueLimits

    return QueueLimits(max_queued_per_org=settings.max_queued_per_org, max_queued_total=settings.max_queued_total,
                       lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts,
                       aging_skips=settings.aging_skips)


def build_services(settings: Settings | None = None, migrate: bool = True) -> Services:
    """Open (and migrate) the database named by the settings and assemble the services over it."""
    from .billing import ensure_plans
    from .storage import Database

    settings = settings or get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    if migrate:
        db.create_all()
        ensure_plans(db)
    return assemble(settings, db, queue_limits(settings))


def assemble(settings: Settings, db: Database, limits: QueueLimits | None = None, pricing: Pricing | None = None,
             images: ImageStore | None = None) -> Services:
    """Wire the services over an open database."""
    from .accounts.mail import Mailer
    from .billing import Billing, Pricing
    from .jobs import JobQueue
    from .jobs.webhooks import Webhooks
    from .jobs.webhooks import record_in as record_webhook_in
    from .ledger.budgets import Budgets
    from .ledger.costing import record_job_cost_in
    from .services import Services
    from .storage import LocalImageStore

    queue = JobQueue(db, limits or queue_limits(settings))
    billing = Billing(db, pricing or Pricing.from_json(settings.pricing), settings.credits_per_gpu_hour)
    budgets = Budgets(db, allow_hosts=settings.outbound_allow_hosts)

    def settle_final_job_in(s, job) -> None:
        """A job became final (succeeded, failed, cancelled): inside the transaction that says so, its credits
        are captured or released, its cost and revenue priced, and its budgets' estimate released and spend
        added (handed the new cost row, so settlement need not read it back)."""
        billing.settle_in(s, job)
        budgets.settle_in(s, job, record_job_cost_in(s, job))
        record_webhook_in(s, job)  # the job's own webhook, durable with the job's end

    webhooks = Webhooks(db, allow_hosts=tuple(settings.outbound_allow_hosts), backoff=settings.webhook_backoff_seconds,
                        max_attempts=settings.webhook_attempts)
    queue.in_final.append(settle_final_job_in)
    queue.on_final.append(budgets.on_final)  # alerts to webhooks, after the commit
    queue.on_final.append(webhooks.wake)
    return Services(settings, db, queue, images or LocalImageStore(settings.images_dir), billing, budgets,
                    Mailer(settings.smtp_url, settings.mail_from), webhooks)


# -- first start ------------------------------------------------------------------------------

OPERATOR_GRANT_CREDITS = 100_000
ADMIN_EMAIL = "admin@solvent.localhost"


def _write_secret(path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def bootstrap_admin(services) -> tuple[str, str] | None:
    """On a fresh database: an operator user (for the studio) owning the admin organisation, and an API key.

    Returns (API key, password), each shown once and written to a file only its owner can read.
    """
    import secrets

    from sqlalchemy import func, select

    from .accounts import create_key, create_user
    from .money import credits_to_mc
    from .storage.models import Organisation

    with services.db.session() as s:
        if s.scalar(select(func.count()).select_from(Organisation)):
            return None
    password = secrets.token_urlsafe(12)
    _, org_id = create_user(services.db, ADMIN_EMAIL, password, "Administrator", org_name="admin",
                            plan_id="enterprise", operator=True, actor="solvent serve")
    _, secret = create_key(services.db, org_id, "admin (created by solvent serve)",
                           ("generate", "read", "admin", "operator"))
    # The operator's own use is compute too: a grant makes it visible (as given away) and capped.
    services.billing.ledger.grant(org_id, credits_to_mc(OPERATOR_GRANT_CREDITS), purpose="operator's own use (solvent serve)",
                                  key=f"bootstrap:{org_id}")
    _write_secret(services.settings.home / "admin-key.txt", secret + "\n")
    _write_secret(services.settings.home / "admin-password.txt", f"{ADMIN_EMAIL}\n{password}\n")
    return secret, password


# -- engine ---------------------------------------------------------------------------------------


def build_store(settings: Settings):
    """The model store, with the models that ship in the package (`solvent-tiny`, its ControlNet and its ×4
    upscaler)."""
    from . import tiny
    from .engine import ModelStore

    return ModelStore(settings, builtins=[tiny.record, tiny.controlnet_record, tiny.upscaler_record])


def build_engine(settings: Settings | None = None):
    """The engine over the store (torch and diffusers load here, and models on first use)."""
    from .engine import Engine
    from .engine.device import quiet_libraries

    quiet_libraries()  # diffusers' and transformers' chatter and progress bars (Solvent draws its own)
    settings = settings or get_settings()
    return Engine(settings, store=build_store(settings))


# -- HTTP -----------------------------------------------------------------------------------------


def build_app(services: Services, *, studio: bool = False, admission_hooks: list | None = None):
    """The FastAPI app: native routes and every compatible surface with its error renderer, metrics counted
    from the queue's final jobs, and (when asked) the studio at `/`."""
    from .api import create_app
    from .api.compat import a1111, controlnet, edits, openai, stability, upscaling
    from .api.metrics import Metrics

    metrics = Metrics()
    services.queue.on_final.append(metrics.on_final)  # usage, credits and the ledger's counters
    app = create_app(services, metrics=metrics, compat=(stability, a1111, controlnet, openai, upscaling, edits), admission_hooks=admission_hooks)
    if studio:
        from .studio import mount

        mount(app)
    return app


# -- workers --------------------------------------------------------------------------------------


@dataclass
class Placement:
    """Where a worker runs, as it declares itself (the ledger prices its time from this)."""

    provider: str = "local"
    region: str = ""
    instance_type: str = ""
    name: str = ""
    commitment: str = "on_demand"
    usd_per_hour: str | None = None


def build_local_worker(services: Services, engine, placement: Placement | None = None, batch: int = 1):
    """A worker loop in this process, reaching the queue and image store directly."""
    from .jobs.registry import create_worker
    from .workers import WorkerLoop, declaration
    from .workers.local import LocalBackend

    placement = placement or Placement(name="in-process")
    decl = declaration(engine, **vars(placement))
    worker, _ = create_worker(services.db, name=placement.name or "in-process", provider=placement.provider)
    return WorkerLoop(engine, LocalBackend(services, worker.id), decl, lease_seconds=services.settings.lease_seconds,
                      batch=batch)


def build_remote_worker(server: str, token: str, settings: Settings | None = None, placement: Placement | None = None,
                        batch: int = 1, poll: float = 0.5):
    """A worker loop that reaches a Solvent server over the worker API only (no database in this process)."""
    from .workers import WorkerLoop, declaration
    from .workers.remote import HttpBackend

    settings = settings or get_settings()
    engine = build_engine(settings)
    decl = declaration(engine, **vars(placement or Placement()))
    return WorkerLoop(engine, HttpBackend(server, token), decl, poll=poll, lease_seconds=settings.lease_seconds,
                      batch=batch)


@dataclass
class Server:
    """`solvent serve`: the services, the app, and the in-process worker (when there is one)."""

    services: Services
    app: Any
    worker: Any = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start_worker(self) -> None:
        if self.worker is not None and self._thread is None:
            self._thread = threading.Thread(target=self.worker.run, name="worker", daemon=True)
            self._thread.start()

    def stop(self, grace: float = 30.0) -> None:
        """Let the running job finish for `grace` seconds, else hand it back to the queue; then close."""
        if self._thread is not None:
            self.worker.stop()
            self._thread.join(timeout=grace)
            if self._thread.is_alive():
                self.worker.abort()
                self._thread.join(timeout=30)
        self.services.close()


def build_server(settings: Settings | None = None, *, worker: bool = True, studio: bool = True,
                 placement: Placement | None = None, batch: int = 1) -> Server:
    settings = settings or get_settings()
    services = build_services(settings)
    app = build_app(services, studio=studio)
    loop = build_local_worker(services, build_engine(settings), placement, batch) if worker else None
    return Server(services, app, loop)
