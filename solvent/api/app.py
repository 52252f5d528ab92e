"""The FastAPI app factory: one app per `Services`; nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from fastapi import FastAPI

from .. import __version__
from ..services import Services
from . import errors
from .admission import AdmissionHook
from .exposure import ExposureGuard
from .limits import LimitsMiddleware, WaitGate
from .metrics import Metrics
from .routes import accounts, admin, billing, control, edits, health, images, jobs, ledger, models, worker
from .schemas import ErrorOut

log = logging.getLogger("solvent.api")


def housekeeping(services: Services) -> None:
    """One round: re-queue jobs whose worker's lease ran out (even when no worker polls), and collect the
    inputs of jobs that ended longer ago than the retention setting."""
    from ..jobs.retention import collect_inputs

    services.queue.reap_expired()
    collect_inputs(services.db, services.images, timedelta(hours=services.settings.input_retention_hours))


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    services: Services = app.state.services

    async def loop() -> None:
        while True:
            await asyncio.sleep(max(1, services.settings.housekeeping_seconds))
            try:
                await asyncio.to_thread(housekeeping, services)
            except Exception:  # noqa: BLE001 - a failed round is logged and the next one tries again
                log.exception("housekeeping round failed")

    task = asyncio.create_task(loop())
    services.webhooks.start()  # job webhooks: sent from the API processes, retried with back-off
    try:
        yield
    finally:
        task.cancel()
        services.webhooks.stop()


def create_app(services: Services, *, metrics: Metrics, compat: tuple = (),
               admission_hooks: list[AdmissionHook] | None = None) -> FastAPI:
    """The app over `services`. `solvent.root.build_app` calls this with the compatible surfaces (modules
    with a `router` and their error `SURFACES`) and the metrics it hooks on the queue."""
    app = FastAPI(
        lifespan=lifespan,
        title="Solvent",
        version=__version__,
        description="Self-hosted image generation that pays its own bills. Authenticate with "
        "`Authorization: Bearer <API key>`.",
    )
    app.state.services = services
    app.state.admission_hooks = list(admission_hooks or [])  # seam: billing and budgets
    app.state.metrics = metrics
    app.state.waits = WaitGate(services.settings.max_waits_per_org)  # sync waits and event streams per org
    errors.install(app, [surface for module in compat for surface in module.SURFACES])
    # The native routers answer errors as `ErrorOut` (so their 422 is documented as such, not as FastAPI's
    # default); the compat routers document their own surfaces' shapes.
    native = {422: {"model": ErrorOut, "description": "a field has a value that is not allowed"}}
    for r in (jobs.router, edits.router, images.router, models.router, control.router, accounts.router, billing.router, worker.router,
              health.router, ledger.router, admin.router):
        app.include_router(r, responses=native)
    for module in compat:
        app.include_router(module.router)
    settings = services.settings
    app.add_middleware(ExposureGuard, services=services)
    # Outermost: every route's body passes the one set of limits before anything reads it.
    app.add_middleware(LimitsMiddleware, max_bytes=settings.max_request_bytes, max_depth=settings.max_json_depth,
                       max_digits=settings.max_json_int_digits)
    return app
