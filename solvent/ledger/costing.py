"""What a worker's time costs, what each job cost, and what it brought in.

A worker's rate comes from what it declared: an explicit rate (a `worker` price version), or
its provider, instance type and commitment looked up in the operator's prices and then the
shipped catalog, per GPU × the GPUs it holds (one unless its hardware says `gpus_used`). Every
finished job gets a `JobCost` row inside the transaction that finishes it (a queue `in_final`
hook that runs after billing settled the credits): device time × rate, list cost at the
on-demand price, the credits captured, the revenue recognised (paid credits at their price;
plan allowance at the plan's fee amortised over what it includes; grants and free allowances
bring nothing and count as given away). Idle cost is a worker's uptime priced at its rate
minus what its jobs cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from ..billing.credits import classify
from ..money import MICROS_PER_MC
from ..storage.db import keep, utcnow
from ..storage.models import CreditHold, Job, JobCost, Plan, PriceVersion, Worker, WorkerUptime
from .catalog import WORKER, Price, catalog_price, price_of_row

MS_PER_HOUR = 3_600_000


def cost_of(ms: int, micros_per_hour: int) -> int:
    """µ$ for `ms` milliseconds at a rate, rounded half up (exact integers)."""
    return (ms * micros_per_hour + MS_PER_HOUR // 2) // MS_PER_HOUR


@dataclass(frozen=True)
class Rate:
    micros_per_hour: int  # what the operator pays for this worker's time
    list_micros_per_hour: int  # the on-demand list price of the same hardware
    source: str  # "" when nothing prices this worker (its time costs 0 and reports say so)


def gpus_held(worker: Worker) -> int:
    try:
        return max(1, int((worker.hardware or {}).get("gpus_used", 1)))
    except (TypeError, ValueError):
        return 1


def _worker_price_keys(worker: Worker):
    """The operator's price versions that can apply to a worker: its own rate, its instance type's."""
    return or_(and_(PriceVersion.provider == WORKER, PriceVersion.instance_type == worker.id),
               and_(PriceVersion.provider == worker.provider, PriceVersion.instance_type == worker.instance_type))


def worker_rate(s: Session, worker: Worker, at: datetime) -> Rate:
    held = gpus_held(worker)
    commitment = worker.commitment or "on_demand"
    # One query for the operator's versions that can apply (this worker's own, its instance type's).
    latest: dict[tuple[str, str, str], Price] = {}
    for r in s.scalars(select(PriceVersion).where(_worker_price_keys(worker), PriceVersion.effective_from <= at)
                       .order_by(PriceVersion.effective_from, PriceVersion.id)):
        latest[(r.provider, r.instance_type, r.commitment)] = price_of_row(r)

    def find(provider: str, itype: str, comm: str) -> Price | None:
        return latest.get((provider, itype, comm)) or catalog_price(provider, itype, comm)

    explicit = latest.get((WORKER, worker.id, "on_demand"))
    listed = find(worker.provider, worker.instance_type, "on_demand")
    list_rate = listed.micros_per_gpu_hour * held if listed else 0
    if explicit is not None:
        return Rate(explicit.micros_per_hour, list_rate or explicit.micros_per_hour, f"worker rate ({explicit.source})")
    p = find(worker.provider, worker.instance_type, commitment)
    if p is None:
        return Rate(0, list_rate, "")
    src = f"{p.provider} {p.instance_type} {p.commitment} ({p.source}{', ' + p.as_of if p.as_of else ''})"
    return Rate(p.micros_per_gpu_hour * held, list_rate or p.micros_per_gpu_hour * held, src)


def _batch(usage: dict) -> tuple[int, int, int, int] | None:
    """(device ms of the whole call, work before this job, its work, the call's work) when the job ran batched."""
    b = usage.get("batch")
    try:
        t, before, work, total = (int(b[k]) for k in ("device_ms", "work_before", "work", "total_work"))
    except (TypeError, KeyError, ValueError):
        return None
    return (t, before, work, total) if t >= 0 and 0 <= before and 0 < work and before + work <= total else None


def batch_cost(device_ms: int, micros_per_hour: int, before: int, work: int, total_work: int) -> int:
    """A batched job's µ$: its share of the whole call's cost, rounded so a batch's parts add up to
    `cost_of(device_ms, rate)` exactly (the rounded running total telescopes)."""
    def upto(w: int) -> int:  # the call's cost for the first `w` units of work, rounded half up
        den = total_work * MS_PER_HOUR
        return (2 * device_ms * micros_per_hour * w + den) // (2 * den)

    return upto(before + work) - upto(before)


def _device_ms(job: Job, usage: dict, batch: tuple[int, int, int, int] | None) -> int:
    if batch is not None:  # its share of the call's time, split the same telescoping way as its cost
        t, before, work, total = batch
        return t * (before + work) // total - t * before // total
    if usage.get("device_seconds") is not None:
        return max(0, round(float(usage["device_seconds"]) * 1000))
    if job.started_at and job.finished_at:  # failed or canceled mid-run: the device was held all the same
        return max(0, round((job.finished_at - job.started_at).total_seconds() * 1000))
    return 0


def _money(s: Session, job: Job) -> tuple[int, int, int, str, list[str]]:
    """(captured mc, revenue µ$, given-away mc, paid_by, grant ids) from the job's settled hold."""
    hold = s.get(CreditHold, job.id)
    if hold is None or hold.state != "captured":
        return 0, 0, 0, "", []
    revenue = given = 0
    grants: list[str] = []
    plan = None
    for _, _, dest, taken in hold.legs:
        if not taken:
            continue
        where = classify(dest)
        if where.kind == "paid":
            revenue += taken * MICROS_PER_MC
        elif where.kind == "plan":
            plan = plan or s.get(Plan, job.spec.plan or "")
            if plan is not None and plan.price_micros and plan.included_mc:
                revenue += plan.price_micros * taken // plan.included_mc
            else:
                revenue += taken * MICROS_PER_MC
        else:
            given += taken
            if where.grant_id:
                grants.append(where.grant_id)
    return hold.captured_mc, revenue, given, hold.paid_by, grants


def record_job_cost_in(s: Session, job: Job) -> JobCost | None:
    """Price a finished job. The queue runs this once per job, in the transaction of its one final transition
    (a second call would fail on the primary key and roll that transaction back, never double-count)."""
    if job.worker_id is None:
        return None
    worker = s.get(Worker, job.worker_id)
    finished = job.finished_at or utcnow()
    rate = worker_rate(s, worker, finished) if worker else Rate(0, 0, "")
    usage = (job.result or {}).get("usage") or {}
    batch = _batch(usage)
    ms = _device_ms(job, usage, batch)
    captured, revenue, given, paid_by, grants = _money(s, job)
    if batch is None:  # alone on the device: its own time at the rate
        cost, list_cost = cost_of(ms, rate.micros_per_hour), cost_of(ms, rate.list_micros_per_hour)
    else:  # one call ran several jobs: each pays its share of the call's work
        cost, list_cost = (batch_cost(batch[0], r, *batch[1:]) for r in (rate.micros_per_hour,
                                                                          rate.list_micros_per_hour))
    row = JobCost(
        job_id=job.id, org_id=job.org_id, worker_id=job.worker_id,
        provider=worker.provider if worker else "", instance_type=worker.instance_type if worker else "",
        commitment=worker.commitment if worker else "", model=job.model, plan_id=job.spec.plan or "",
        state=str(job.state), paid_by=paid_by, grant_ids=grants,
        images=int(usage.get("images") or len((job.result or {}).get("images", []))),
        device_ms=ms, rate_micros_per_hour=rate.micros_per_hour, list_rate_micros_per_hour=rate.list_micros_per_hour,
        rate_source=rate.source[:200], cost_micros=cost, list_cost_micros=list_cost, captured_mc=captured,
        revenue_micros=revenue, batch_id=str(usage["batch"].get("id") or "")[:40] if batch else "",
        given_away_mc=given, finished_at=finished,
    )
    s.add(row)
    return keep(s, row)  # budget settlement reads it next, in this transaction


def _boundaries(s: Session, worker: Worker, start: datetime, end: datetime) -> list[datetime]:
    """Moments inside (start, end) where one of this worker's prices changes."""
    return sorted(set(s.scalars(select(PriceVersion.effective_from).where(
        _worker_price_keys(worker), PriceVersion.effective_from > start, PriceVersion.effective_from < end))))


def uptime_segments(s: Session, worker: Worker, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The worker's uptime clipped to [start, end)."""
    rows = s.scalars(select(WorkerUptime).where(WorkerUptime.worker_id == worker.id,
                                                WorkerUptime.started_at < end, WorkerUptime.last_seen_at > start))
    return [(max(r.started_at, start), min(r.last_seen_at, end)) for r in rows]


def uptime_cost(s: Session, worker: Worker, start: datetime, end: datetime) -> tuple[int, int]:
    """(uptime ms, µ$) of a worker in [start, end), each stretch split where its price changes."""
    total_ms = total = 0
    for a, b in uptime_segments(s, worker, start, end):
        cuts = [a, *_boundaries(s, worker, a, b), b]
        for x, y in zip(cuts, cuts[1:], strict=False):
            ms = round((y - x) / timedelta(milliseconds=1))
            total_ms += ms
            total += cost_of(ms, worker_rate(s, worker, x).micros_per_hour)
    return total_ms, total
