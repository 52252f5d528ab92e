"""Job webhooks: any native job may carry a `webhook_url`; when it ends, that URL gets a signed POST.

- Durable: `record_in` writes the delivery in the transaction that ends the job, so a crash loses nothing.
- Signed: `Solvent-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the organisation's
  secret>` (`sign` / `verify`); `Solvent-Webhook-Id` is the event id, the same on every retry (receivers drop
  repeats by it). The secret (`whsec_…`) is per organisation, created on first use, readable and rotatable by its
  admins.
- Retried: a non-2xx answer or a network error is tried again after `backoff × 2^attempt` seconds (capped at an
  hour) until `max_attempts`; every attempt is logged on the delivery, which the job's API answer shows.
- Outbound rules: the URL passes `solvent.outbound.check_url` when the job is admitted and again before each
  attempt; redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from ..errors import ValidationFailed
from ..outbound import check_url
from ..storage.db import Database, utcnow
from ..storage.models import Job, JobState, Organisation, WebhookDelivery

log = logging.getLogger("solvent.webhooks")
TOLERANCE_SECONDS = 300  # a receiver should refuse signatures older than this (replays)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float | None = None,
           tolerance: int = TOLERANCE_SECONDS) -> bool:
    """Whether `header` (a `Solvent-Signature`) signs `body` with `secret` and is recent: what a receiver runs."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        ts = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, ts, body), f"t={ts},v1={parts.get('v1', '')}")


def secret_of(db: Database, org_id: str, rotate: bool = False) -> str:
    """The organisation's signing secret, made on first use (or anew with `rotate`)."""
    with db.session() as s:
        org = s.get(Organisation, org_id)
        if org.webhook_secret is None or rotate:
            org.webhook_secret = "whsec_" + secrets.token_urlsafe(32)
        return org.webhook_secret


def event_of(job: Job) -> str:
    return {JobState.succeeded: "job.succeeded", JobState.failed: "job.failed"}.get(job.state, "job.canceled")


def record_in(s, job: Job) -> None:
    """Inside the transaction that ends `job`: its delivery, when it has a `webhook_url` (once per job)."""
    url = (job.params or {}).get("webhook_url")
    if not url or s.scalar(select(WebhookDelivery.id).where(WebhookDelivery.job_id == job.id)) is not None:
        return
    s.add(WebhookDelivery(job_id=job.id, org_id=job.org_id, url=url, event=event_of(job), next_at=utcnow(),
                          log=[]))


def delivery_of(db: Database, org_id: str, job_id: str) -> dict[str, Any] | None:
    """What a job's owner sees of its webhook."""
    with db.session() as s:
        d = s.scalar(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id,
                                                   WebhookDelivery.org_id == org_id))
        if d is None:
            return None
        return {"id": d.id, "url": d.url, "event": d.event, "state": d.state, "attempts": d.attempts,
                "next_at": d.next_at.isoformat() if d.state == "pending" else None,
                "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None, "log": list(d.log or [])}


def job_summary(db: Database, job: Job) -> dict[str, Any]:
    """The job as its webhook tells it: state, what was asked (no storage keys), images, error, usage, price."""
    from ..generation.spec import visible
    from .results import images_of_job

    images = [{"id": r.id, "index": r.index, "seed": r.seed, "width": r.width, "height": r.height,
               "url": f"/api/images/{r.id}"} for r in images_of_job(db, job.org_id, job.id)]
    params = {k: v for k, v in visible(job.params or {}).items() if k not in ("terms", "plan")}
    return {"id": job.id, "state": str(job.state), "mode": job.mode, "model": job.model, "params": params,
            "images": images, "error": {"code": job.error_code, "message": job.error_message} if job.error_code
            else None, "usage": (job.result or {}).get("usage"), "price_mc": (job.params or {}).get("price_mc"),
            "created_at": job.created_at.isoformat() if job.created_at else None,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None}


class Webhooks:
    """The sender: due deliveries are claimed (a short lease, so two API processes do not both send), posted,
    and their outcome written back. `wake()` after a job ends; `run_due()` is also called on a timer."""

    def __init__(self, db: Database, allow_hosts: tuple[str, ...] = (), backoff: float = 2.0,
                 max_attempts: int = 6, timeout: float = 10.0):
        self.db, self.allow_hosts = db, tuple(allow_hosts)
        self.backoff, self.max_attempts, self.timeout = backoff, max_attempts, timeout
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self, url: str) -> str:
        return check_url(url, self.allow_hosts, field="webhook_url")

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self, job: Job | None = None) -> None:
        if job is None or (job.params or {}).get("webhook_url"):
            self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=max(0.05, min(5.0, self.backoff)))
            self._wake.clear()
            try:
                while self.run_due():
                    pass
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                log.exception("webhook round failed")

    def run_due(self, limit: int = 20) -> int:
        """Send what is due now; returns how many attempts were made."""
        now = utcnow()
        with self.db.session() as s:
            due = list(s.scalars(select(WebhookDelivery.id).where(WebhookDelivery.state == "pending",
                                                                   WebhookDelivery.next_at <= now)
                                 .order_by(WebhookDelivery.next_at).limit(limit)))
        made = 0
        for delivery_id in due:
            with self.db.session() as s:  # claim: whoever moves next_at first sends it
                claimed = s.execute(update(WebhookDelivery).where(
                    WebhookDelivery.id == delivery_id, WebhookDelivery.state == "pending",
                    WebhookDelivery.next_at <= now).values(next_at=now + timedelta(seconds=self.timeout + 5))
                    .execution_options(synchronize_session=False)).rowcount
            if claimed:
                self._attempt(delivery_id)
                made += 1
        return made

    def _attempt(self, delivery_id: str) -> None:
        import httpx

        with self.db.session() as s:
            d = s.get(WebhookDelivery, delivery_id)
            job = s.get(Job, d.job_id)
            org = s.get(Organisation, d.org_id)
            if org is None:  # the organisation was deleted since: nobody to send for
                d.state, d.log = "failed", [*(d.log or []), {"at": utcnow().isoformat(), "status": None,
                                                             "error": "the organisation no longer exists"}]
                return
            secret = org.webhook_secret
            url, event, org_id, job_id = d.url, d.event, d.org_id, d.job_id
        if secret is None:
            secret = secret_of(self.db, org_id)
        body = json.dumps({"id": delivery_id, "type": event, "created": int(time.time()),
                           "data": job_summary(self.db, job) if job is not None else {"id": job_id}},
                          separators=(",", ":"), default=str).encode()
        ts = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": "Solvent-Webhooks/1",
                   "Solvent-Webhook-Id": delivery_id, "Solvent-Webhook-Timestamp": str(ts),
                   "Solvent-Signature": sign(secret, ts, body)}
        t0 = time.perf_counter()
        status, error = None, ""
        try:
            self.check(url)  # again: a name may resolve elsewhere by now
            r = httpx.post(url, content=body, headers=headers, timeout=self.timeout, follow_redirects=False)
            status = r.status_code
        except ValidationFailed as e:
            error = f"refused: {e.message}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"[:300]
        entry = {"at": utcnow().isoformat(), "status": status, "error": error,
                 "seconds": round(time.perf_counter() - t0, 3)}
        ok = status is not None and 200 <= status < 300
        with self.db.session() as s:
            d = s.get(WebhookDelivery, delivery_id)
            d.attempts += 1
            d.log = [*(d.log or []), entry]
            if ok:
                d.state, d.delivered_at = "delivered", utcnow()
            elif d.attempts >= self.max_attempts or error.startswith("refused"):
                d.state = "failed"
                log.warning("webhook %s for job %s failed for good: %s", delivery_id, d.job_id, error or status)
            else:
                d.next_at = utcnow() + timedelta(seconds=min(3600.0, self.backoff * 2 ** (d.attempts - 1)))
