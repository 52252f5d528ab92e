"""A job queue in the database, safe for many API processes and many workers at once.

Lifecycle: queued → running (leased by one worker, renewed by heartbeats) → succeeded | failed
| canceled. A lease that expires (the worker vanished) puts the job back in the queue, up to
`max_attempts`, then fails it with a clear reason. Completion is a compare-and-set on the lease
(state, worker and attempt), so a job is never completed twice even if two workers ran it.

Dequeue order (`lease`), among queued jobs this worker can serve:
1. effective priority = priority + skips // aging_skips (a job passed over often rises);
2. affinity: a job whose model the worker has loaded comes first;
3. round-robin between organisations: the one served longest ago goes first, so one
   organisation's burst of 100 jobs cannot starve another's single job;
4. then oldest first.
PostgreSQL claims the chosen row with `FOR UPDATE SKIP LOCKED`; SQLite serialises writers with
short `BEGIN IMMEDIATE` transactions. Both then claim with a conditional UPDATE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import LeaseLost, NotFound, TooManyRequests
from ..storage.db import Database, utcnow
from ..storage.models import FINAL_STATES, Job, JobState, Organisation, new_id

CANDIDATES = 64  # queue heads considered per dequeue
# The params jobs must share to run in one device call with the job a worker leased (text-to-image only).


class QueueFull(TooManyRequests):
    """Back-pressure: too many queued jobs (HTTP 429 with Retry-After)."""

    code = "queue_full"


@dataclass
class QueueLimits:
    max_queued_per_org: int = 100
    max_queued_total: int = 10_000
    lease_seconds: int = 30
    max_attempts: int = 3
    aging_skips: int = 5
    retry_after_seconds: int = 5


class JobQueue:
    """Every queue operation is one short transaction."""

    def __init__(self, db: Database, limits: QueueLimits | None = None):
        self.db = db
        self.limits = limits or QueueLimits()
        # Seams for billing and the compute ledger. `in_final` hooks run inside the transaction that
        # makes a job final (settlement can never be lost); `on_final` hooks run after it commits.
        self.in_final: list[Callable[[Session, Job], None]] = []
        self.on_final: list[Callable[[Job], None]] = []

    # ------------------------------------------------------------------------------------------
    # Producers
    # ------------------------------------------------------------------------------------------

    def enqueue(
        self,
        org_id: str,
        model: str,
        params: dict[str, Any],
        *,
        mode: str = "txt2img",
        priority: int = 0,
        idempotency_key: str | None = None,
        api_key_id: str | None = None,
        max_attempts: int | None = None,
        on_insert: Callable[[Session, Job], None] | None = None,
    ) -> tuple[Job, bool]:
        """Queue a job; returns (job, created). A repeated idempotency key returns the first job.

        `on_insert(session, job)` runs inside the enqueue transaction before the job is added (admission
        checks and the credit reservation); if it raises, nothing is written.
        """
        if idempotency_key is not None:
            existing = self._by_idempotency(org_id, idempotency_key)
            if existing is not None:
                return existing, False
        try:
            with self.db.session() as s:
                queued_org = s.scalar(
                    select(func.count()).select_from(Job).where(Job.org_id == org_id, Job.state == JobState.queued)
                )
                if queued_org >= self.limits.max_queued_per_org:
                    raise QueueFull(
                        f"your organisation already has {queued_org} queued jobs (the limit is "
                        f"{self.limits.max_queued_per_org}); retry when some have run.",
                        retry_after=self.limits.retry_after_seconds,
                    )
                queued = s.scalar(select(func.count()).select_from(Job).where(Job.state == JobState.queued))
                if queued >= self.limits.max_queued_total:
                    raise QueueFull(
                        f"the server has {queued} queued jobs (the limit is {self.limits.max_queued_total}); "
                        "retry shortly.",
                        retry_after=self.limits.retry_after_seconds,
                    )
                job = Job(
                    id=new_id("job"), org_id=org_id, model=model, params=params, mode=mode, priority=priority,
                    idempotency_key=idempotency_key, api_key_id=api_key_id,
                    max_attempts=max_attempts or self.limits.max_attempts, created_at=utcnow(),
                )
                if on_insert is not None:
                    on_insert(s, job)
                s.add(job)
            return job, True
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = self._by_idempotency(org_id, idempotency_key)  # lost a race with the same key
            if existing is None:
                raise
            return existing, False

    def find_idempotent(self, org_id: str, key: str) -> Job | None:
        """The job an earlier request with this idempotency key made, if any (admission skips all work then)."""
        return self._by_idempotency(org_id, key)

    def _by_idempotency(self, org_id: str, key: str) -> Job | None:
        with self.db.session() as s:
            return s.scalar(select(Job).where(Job.org_id == org_id, Job.idempotency_key == key))

    def get(self, org_id: str, job_id: str) -> Job:
        """A job of `org_id`; another organisation's job is indistinguishable from a missing one."""
        with self.db.session() as s:
            job = s.scalar(select(Job).where(Job.id == job_id, Job.org_id == org_id))
        if job is None:
            raise NotFound(f"`job` {job_id!r} was not found.", field="job", value=job_id)
        return job

    def cancel(self, org_id: str, job_id: str) -> Job:
        """Cancel a queued job at once; ask a running one to stop between steps."""
        with self.db.session() as s:
            job = s.scalar(select(Job).where(Job.id == job_id, Job.org_id == org_id))
            if job is None:
                raise NotFound(f"`job` {job_id!r} was not found.", field="job", value=job_id)
            final = job.state == JobState.queued
            if final:
                job.state, job.finished_at = JobState.canceled, utcnow()
                job.error_code, job.error_message = "canceled", "canceled before it started"
                self._in_final(s, job)
            elif job.state == JobState.running:
                job.cancel_requested = True
        if final:
            self._final(job)
        return job

    def position(self, job: Job) -> int:
        """Approximate place in line: queued jobs of at least this priority created before it."""
        if job.state != JobState.queued:
            return 0
        with self.db.session() as s:
            return int(s.scalar(
                select(func.count()).select_from(Job).where(
                    Job.state == JobState.queued, Job.priority >= job.priority, Job.created_at < job.created_at
                )
            ))

    # ------------------------------------------------------------------------------------------
    # Workers
    # ------------------------------------------------------------------------------------------

    def lease(self, worker_id: str, models: list[str] | None = None, loaded: list[str] | None = None) -> Job | None:
        """Claim the next job for `worker_id` (serving `models`, None = any); None if the queue is empty."""
        self.reap_expired()
        for _ in range(5):  # lost races are retried with a fresh view
            with self.db.session() as s:
                job = self._pick(s, models, set(loaded or ()))
                if job is None:
                    return None
                now = utcnow()
                if not self._claim(s, job.id, worker_id, now):
                    continue
                # Everyone the chosen job overtook at its priority level ages by one skip.
                s.execute(
                    update(Job)
                    .where(Job.state == JobState.queued, Job.created_at < job.created_at, Job.org_id != job.org_id)
                    .values(skips=Job.skips + 1)
                )
                s.execute(update(Organisation).where(Organisation.id == job.org_id).values(last_served_at=now))
                s.refresh(job)
                return job
        return None

    def active_for(self, org_id: str, key_id: str | None = None) -> list[Job]:
        """The organisation's queued and running jobs (only those made with `key_id` when given), oldest first."""
        with self.db.session() as s:
            q = select(Job).where(Job.org_id == org_id, Job.state.in_((JobState.running, JobState.queued)))
            if key_id:
                q = q.where(Job.api_key_id == key_id)
            return list(s.scalars(q.order_by(Job.created_at)))

    def cancel_active(self, org_id: str, key_id: str | None = None) -> int:
        """Cancel every job `active_for` lists (A1111's interrupt); returns how many were asked to stop."""
        jobs = self.active_for(org_id, key_id)
        for job in jobs:
            self.cancel(org_id, job.id)
        return len(jobs)

    def lease_like(self, worker_id: str, first: Job, limit: int) -> list[Job]:
        """Claim up to `limit` more queued jobs that can run in one device call with `first` (just leased).

        They share its model and the `BATCH_FIELDS` of its params, are text-to-image and are taken oldest
        first. Each is claimed as `lease` claims one (a lost race only means a smaller batch).
        """
        want = first.spec.batch_key()
        if limit < 1 or first.mode != "txt2img" or want is None:
            return []
        out: list[Job] = []
        with self.db.session() as s:
            q = (select(Job).where(Job.state == JobState.queued, Job.model == first.model, Job.mode == "txt2img")
                 .order_by(Job.created_at, Job.id).limit(CANDIDATES))
            if not self.db.is_sqlite:
                q = q.with_for_update(skip_locked=True)
            now = utcnow()
            for job in list(s.scalars(q)):
                if len(out) < limit and job.spec.batch_key() == want and self._claim(
                        s, job.id, worker_id, now):
                    out.append(job)
            for job in out:
                s.refresh(job)
        return out

    def _claim(self, s, job_id: str, worker_id: str, now) -> bool:
        """Move a queued job to running under `worker_id`'s lease; False if someone else claimed it first."""
        return s.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.queued)
            .values(state=JobState.running, worker_id=worker_id, attempts=Job.attempts + 1,
                    lease_expires_at=now + timedelta(seconds=self.limits.lease_seconds), started_at=now, progress=0.0)
        ).rowcount == 1

    def _pick(self, s, models: list[str] | None, loaded: set[str]) -> Job | None:
        q = select(Job).where(Job.state == JobState.queued)
        if models is not None:
            q = q.where(Job.model.in_(models))
        # Candidates: the head of each organisation's line per priority and model (its oldest job).
        heads = (
            select(Job.org_id, Job.priority, Job.model, func.min(Job.created_at).label("first"))
            .where(Job.state == JobState.queued)
            .group_by(Job.org_id, Job.priority, Job.model)
        )
        if models is not None:
            heads = heads.where(Job.model.in_(models))
        heads = heads.subquery()
        cands = s.execute(
            q.join(heads, and_(Job.org_id == heads.c.org_id, Job.priority == heads.c.priority,
                               Job.model == heads.c.model, Job.created_at == heads.c.first))
            .limit(CANDIDATES)
        ).scalars().all()
        if not cands:
            return None
        served = dict(s.execute(
            select(Organisation.id, Organisation.last_served_at).where(Organisation.id.in_({c.org_id for c in cands}))
        ).all())
        epoch = min(c.created_at for c in cands)

        def rank(job: Job):
            effective = job.priority + job.skips // max(1, self.limits.aging_skips)
            last = served.get(job.org_id) or epoch - timedelta(days=3650)
            return (-effective, job.model not in loaded, last, job.created_at, job.id)

        best = min(cands, key=rank)
        if not self.db.is_sqlite:
            locked = s.scalar(
                select(Job).where(Job.id == best.id, Job.state == JobState.queued).with_for_update(skip_locked=True)
            )
            return locked
        return best

    def heartbeat(self, job_id: str, worker_id: str, progress: float | None = None, preview: str | None = None) -> bool:
        """Renew the lease (and record progress and a preview); True when the owner asked to cancel."""
        with self.db.session() as s:
            values: dict[str, Any] = {"lease_expires_at": utcnow() + timedelta(seconds=self.limits.lease_seconds)}
            if progress is not None:
                values["progress"] = max(0.0, min(1.0, float(progress)))
            if preview is not None:
                values["preview"] = preview
            n = s.execute(
                update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.running)
                .values(**values)
            ).rowcount
            if n != 1:
                raise LeaseLost(f"worker {worker_id!r} no longer holds job {job_id!r}.", field="job", value=job_id)
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))

    def _finish(self, job_id: str, worker_id: str, **values: Any) -> Job:
        with self.db.session() as s:
            n = s.execute(
                update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.running)
                .values(finished_at=utcnow(), lease_expires_at=None, **values)
            ).rowcount
            if n != 1:
                raise LeaseLost(f"worker {worker_id!r} no longer holds job {job_id!r}.", field="job", value=job_id)
            job = s.get(Job, job_id)
            self._in_final(s, job)
        self._final(job)
        return job

    def _in_final(self, s: Session, job: Job) -> None:
        for hook in self.in_final:
            hook(s, job)

    def _final(self, job: Job) -> None:
        for hook in self.on_final:
            hook(job)

    def complete(self, job_id: str, worker_id: str, result: dict[str, Any]) -> Job:
        """Mark the job succeeded with its result; `LeaseLost` if this worker lost it meanwhile."""
        return self._finish(job_id, worker_id, state=JobState.succeeded, result=result, progress=1.0)

    def cancelled(self, job_id: str, worker_id: str, usage: dict[str, Any] | None = None) -> Job:
        """The job stopped because its owner cancelled it; `usage` is its share of a batch that ran on."""
        return self._finish(job_id, worker_id, state=JobState.canceled, error_code="canceled",
                            error_message="canceled while running", result={"usage": usage} if usage else None)

    def fail(self, job_id: str, worker_id: str, code: str, message: str, retry: bool = False,
             usage: dict[str, Any] | None = None) -> Job:
        """Fail the job, or (retry=True and attempts left) put it back in the queue; `usage` as for `cancelled`."""
        with self.db.session() as s:
            job = s.scalar(select(Job).where(Job.id == job_id, Job.worker_id == worker_id,
                                             Job.state == JobState.running))
            if job is None:
                raise LeaseLost(f"worker {worker_id!r} no longer holds job {job_id!r}.", field="job", value=job_id)
            if retry and job.attempts < job.max_attempts:
                job.state, job.worker_id, job.lease_expires_at = JobState.queued, None, None
            else:
                job.state, job.finished_at, job.lease_expires_at = JobState.failed, utcnow(), None
                if usage:
                    job.result = {"usage": usage}
            job.error_code, job.error_message = code, message
            if job.state == JobState.failed:
                self._in_final(s, job)
        if job.state == JobState.failed:
            self._final(job)
        return job

    def release(self, job_id: str, worker_id: str) -> None:
        """A stopping worker hands its job back untouched (the attempt does not count)."""
        with self.db.session() as s:
            s.execute(
                update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.running)
                .values(state=JobState.queued, worker_id=None, lease_expires_at=None, attempts=Job.attempts - 1)
            )

    def reap_expired(self) -> int:
        """Re-queue (or fail, when out of attempts) running jobs whose lease has expired."""
        now = utcnow()
        finals = []
        with self.db.session() as s:
            expired = s.scalars(
                select(Job).where(Job.state == JobState.running, Job.lease_expires_at < now)
                .with_for_update(skip_locked=True)
            ).all()
            for job in expired:
                job.worker_id, job.lease_expires_at, job.error_code = None, None, "worker_lost"
                if job.attempts >= job.max_attempts:
                    job.state, job.finished_at = JobState.failed, now
                    job.error_message = (f"the worker running this job stopped responding {job.attempts} times; "
                                         "giving up")
                    self._in_final(s, job)
                    finals.append(job)
                else:
                    job.state = JobState.queued
                    job.error_message = "the previous worker stopped responding; retried"
        for job in finals:
            self._final(job)
        return len(expired)

    def counts(self) -> dict[str, int]:
        with self.db.session() as s:
            rows = s.execute(select(Job.state, func.count()).group_by(Job.state)).all()
        out = {state.value: 0 for state in JobState}
        out.update({k: int(v) for k, v in rows})
        return out


__all__ = ["FINAL_STATES", "JobQueue", "LeaseLost", "QueueFull", "QueueLimits"]
