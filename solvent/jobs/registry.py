"""The worker registry: tokens (hashed), declared hardware and location, models served, liveness."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from ..errors import NotFound, Unauthorized
from ..hashing import hash_secret
from ..storage.db import Database, utcnow
from ..storage.models import Worker, WorkerUptime

TOKEN_PREFIX = "wt-solvent-"
ALIVE_SECONDS = 60  # a worker that has not checked in for this long serves nothing


def create_worker(db: Database, name: str = "", **declared: Any) -> tuple[Worker, str]:
    """Register a worker; returns (record, token). The token is shown once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.session() as s:
        w = Worker(name=name, token_hash=hash_secret(token), **declared)
        s.add(w)
    return w, token


def authenticate_worker(db: Database, token: str | None) -> Worker:
    if not token:
        raise Unauthorized("missing worker token: send `Authorization: Bearer <worker token>`.", field="authorization")
    with db.session() as s:
        w = s.scalar(select(Worker).where(Worker.token_hash == hash_secret(token)))
    if w is None:
        raise Unauthorized("invalid worker token.", field="authorization")
    return w


def declare(db: Database, worker_id: str, **declared: Any) -> Worker:
    """Record what a worker says about itself (hardware, provider, region, instance type, models)."""
    allowed = {"name", "hardware", "provider", "region", "instance_type", "commitment", "models", "loaded", "status"}
    now = utcnow()
    with db.session() as s:
        w = s.get(Worker, worker_id)
        if w is None:
            raise NotFound(f"`worker` {worker_id!r} was not found.", field="worker", value=worker_id)
        for k, v in declared.items():
            if k in allowed and v is not None:
                setattr(w, k, v)
        w.last_heartbeat_at = now
        _uptime(s, worker_id, now)
    return w


def _uptime(s, worker_id: str, now: datetime) -> None:
    """Extend the worker's current stretch of uptime, or open a new one after a gap (the ledger prices both)."""
    last = s.scalar(select(WorkerUptime).where(WorkerUptime.worker_id == worker_id)
                    .order_by(WorkerUptime.last_seen_at.desc()).limit(1))
    if last is not None and (now - last.last_seen_at).total_seconds() <= ALIVE_SECONDS:
        last.last_seen_at = max(last.last_seen_at, now)
    else:
        s.add(WorkerUptime(worker_id=worker_id, started_at=now, last_seen_at=now))


def alive(db: Database, within: int = ALIVE_SECONDS) -> list[Worker]:
    cutoff = utcnow() - timedelta(seconds=within)
    with db.session() as s:
        return list(s.scalars(select(Worker).where(Worker.last_heartbeat_at >= cutoff)))


def served_models(db: Database, kind: str = "checkpoint") -> dict[str, dict[str, Any]]:
    """Model id → its declared record, over the workers alive now: models that make images by default, or
    `kind="upscaler"` for the upscalers (Lanczos, which every worker has, among them)."""
    out: dict[str, dict[str, Any]] = {}
    for w in alive(db):
        for m in w.models or []:
            if m.get("kind", "checkpoint") == kind:
                out.setdefault(m["id"], m)
    return out


def all_workers(db: Database) -> list[Worker]:
    with db.session() as s:
        return list(s.scalars(select(Worker).order_by(Worker.created_at)))
