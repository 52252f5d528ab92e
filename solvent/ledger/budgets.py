"""Budgets and guardrails: soft alerts and hard caps on compute cost, and a runway floor.

A budget covers a scope (`all`, `free` for the free tier, `plan:<id>`, `org:<id>`, `grant:<id>`)
over a calendar period (UTC day or month). Its spend is the priced cost of the scope's finished
jobs in the period (kept as a running sum on the budget's row), plus the estimated cost of its
queued and running jobs (`reserved_micros`; each job records its own in `Job.budget_hold`).

- Soft thresholds (e.g. 80% and 100%) raise an alert once per period: stored, logged, and posted
  to the budget's webhook.
- A hard cap refuses the scope's new jobs at admission with `budget_exceeded`. The estimate is
  reserved inside the enqueue transaction by an `UPDATE … RETURNING` on the budget's row, which
  locks it until the job is queued, so concurrent requests cannot all pass the check before any
  is counted (LiteLLM's overshoot). A job's real cost may
  still differ from its estimate by the estimate's error, never by concurrency.
- A runway floor pauses its scope (the free tier, a grant) while the runway computed from the
  ledger is below N months.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import BigInteger, String, and_, bindparam, case, cast, false, func, or_, select, update
from sqlalchemy.orm import Session

from ..billing.credits import classify
from ..billing.plans import period_bounds
from ..errors import Forbidden, NotFound, ValidationFailed
from ..money import fmt_usd, usd_to_micros
from ..outbound import check_url
from ..storage.db import Database, utcnow
from ..storage.models import Budget, BudgetAlert, CreditHold, Job, JobCost, Worker
from .costing import cost_of, worker_rate

log = logging.getLogger("solvent.ledger.budgets")
PERIODS = ("day", "month")
DEFAULT_MS_PER_IMAGE = 2000  # the estimate when a model has no priced history yet
HISTORY = 50  # recent jobs of the same model the estimate averages


class BudgetExceeded(Forbidden):
    """A hard budget (or the runway floor) refuses this scope's new jobs."""

    code = "budget_exceeded"


def check_scope(scope: str) -> str:
    kind, _, ident = scope.partition(":")
    if scope in ("all", "free") or (kind in ("plan", "org", "grant") and ident):
        return scope
    raise ValidationFailed(f"`scope` must be all, free, plan:<id>, org:<id> or grant:<id> but is {scope!r}.",
                           field="scope", value=scope)


def period_of(period: str, now: datetime) -> tuple[str, datetime, datetime]:
    """The budget period containing `now` (UTC day or calendar month) and its key."""
    start, end = period_bounds(period, None, now)
    return start.strftime("%Y-%m-%d" if period == "day" else "%Y-%m"), start, end


def create_budget(db: Database, scope: str, *, period: str = "month", limit_usd: Any = None,
                  thresholds: list[int] | None = None, hard: bool = False, runway_floor_months: Any = None,
                  webhook_url: str | None = None, name: str = "",
                  allow_hosts: list[str] | tuple[str, ...] = ()) -> Budget:
    """`thresholds` are percentages of the limit (default 80 and 100); `webhook_url` must pass `check_url`
    (public addresses only, unless `allow_hosts` names the host)."""
    check_scope(scope)
    if period not in PERIODS:
        raise ValidationFailed(f"`period` must be day or month but is {period!r}.", field="period", value=period)
    limit = usd_to_micros(limit_usd, "limit") if limit_usd not in (None, "") else None
    floor = None
    if runway_floor_months not in (None, ""):
        try:
            months = Decimal(str(runway_floor_months))
        except InvalidOperation:
            months = Decimal(-1)
        if not months.is_finite() or not 0 < months <= 120:
            raise ValidationFailed(f"`runway_floor_months` must be a number of months from 0 to 120 but is "
                                   f"{runway_floor_months!r}.", field="runway_floor_months", value=runway_floor_months)
        floor = int(months * 100)  # hundredths of a month
    if limit is None and floor is None:
        raise ValidationFailed("a budget needs `limit` (USD per period) or `runway_floor_months`.", field="limit")
    if hard and limit is None:
        raise ValidationFailed("`hard` needs a `limit` to enforce.", field="hard", value=hard)
    pcts = [80, 100] if thresholds is None else thresholds
    for p in pcts:
        if not isinstance(p, int) or isinstance(p, bool) or not 1 <= p <= 1000:
            raise ValidationFailed(f"`thresholds` are whole percentages from 1 to 1000 but include {p!r}.",
                                   field="thresholds", value=p)
    if webhook_url:
        check_url(webhook_url, allow_hosts)
    with db.session() as s:
        b = Budget(name=name or scope, scope=scope, period=period, limit_micros=limit,
                   thresholds_bp=sorted(p * 100 for p in pcts) if limit is not None else [], hard=hard,
                   runway_floor_cm=floor, webhook_url=webhook_url or None, created_at=utcnow())
        now = b.created_at
        b.period_key = period_of(period, now)[0]
        b.spent_micros = _summed(s, b, now)  # what this period spent before the budget existed
        s.add(b)
        s.flush()
        if limit is not None:  # thresholds this period has already reached are due now
            _alerts(s, b, -1, now)
    _changed()
    return b


def deactivate(db: Database, budget_id: str) -> Budget:
    with db.session() as s:
        b = s.get(Budget, budget_id)
        if b is None:
            raise NotFound(f"`budget` {budget_id!r} was not found.", field="budget", value=budget_id)
        b.active = False
    _changed()
    return b


def _job_scopes(s: Session, job: Job) -> set[str]:
    scopes = {"all", f"org:{job.org_id}"}
    if job.spec.plan:
        scopes.add(f"plan:{job.spec.plan}")
    hold = s.get(CreditHold, job.id)  # billing's new hold, from the session's identity map (no SELECT)
    for leg in hold.legs if hold else []:
        where = classify(leg[2])
        if where.kind == "free":
            scopes.add("free")
        elif where.grant_id:
            scopes.add(f"grant:{where.grant_id}")
    return scopes


def _cost_scopes(row: JobCost) -> set[str]:
    """The budget scopes a priced job counts against."""
    scopes = {"all", f"org:{row.org_id}", *(f"grant:{g}" for g in row.grant_ids or [])}
    if row.plan_id:
        scopes.add(f"plan:{row.plan_id}")
    if row.paid_by == "free":
        scopes.add("free")
    return scopes


def _summed(s: Session, b: Budget, now: datetime) -> int:
    """A budget's priced cost in the period of `now`, summed from the jobs (when the budget is created)."""
    _, start, end = period_of(b.period, now)
    q = select(func.coalesce(func.sum(JobCost.cost_micros), 0)).where(JobCost.finished_at >= start,
                                                                        JobCost.finished_at < end)
    kind, _, ident = b.scope.partition(":")
    if kind == "org":
        q = q.where(JobCost.org_id == ident)
    elif kind == "plan":
        q = q.where(JobCost.plan_id == ident)
    elif kind == "free":
        q = q.where(JobCost.paid_by == "free")
    elif kind == "grant":
        q = q.where(cast(JobCost.grant_ids, String).like(f'%"{ident}"%'))
    return int(s.scalar(q))


def _alerts(s: Session, b: Any, before: int, at: datetime) -> int:
    """Record (and log) the thresholds `b`'s spend crossed going from `before` to `b.spent_micros`: once per period,
    as spend only grows within one. `before` = -1 raises every threshold already reached."""
    raised = 0
    for bp in b.thresholds_bp or []:
        if before * 10000 < b.limit_micros * bp <= b.spent_micros * 10000:
            s.add(BudgetAlert(budget_id=b.id, period_key=b.period_key, threshold_bp=bp, spent_micros=b.spent_micros,
                              limit_micros=b.limit_micros, at=at))
            log.warning("budget %s (%s, %s %s) reached %d%%: %s of %s", b.id, b.scope, b.period, b.period_key,
                        bp // 100, fmt_usd(b.spent_micros, 4), fmt_usd(b.limit_micros, 4))
            raised += 1
    return raised


def spent(s: Session, b: Budget, now: datetime) -> tuple[int, int]:
    """(priced cost in this period, estimates still held) for a budget, in µ$."""
    return (b.spent_micros if b.period_key == period_of(b.period, now)[0] else 0), b.reserved_micros


_generation = 0  # bumped when this process creates or switches off a budget: cached definitions are stale


def _changed() -> None:
    global _generation
    _generation += 1


# Admission's one statement per hard budget, built once: the reservation, returning what to check it against.
_RESERVE = (update(Budget).where(Budget.id == bindparam("budget"), Budget.active.is_(True))
            .values(reserved_micros=Budget.reserved_micros + bindparam("estimate", type_=BigInteger))
            .returning(Budget.reserved_micros, Budget.spent_micros, Budget.period_key))


class Budgets:
    def __init__(self, db: Database, runway_ttl: float = 60.0, estimate_ttl: float = 10.0,
                 definitions_ttl: float = 5.0, allow_hosts: list[str] | tuple[str, ...] = ()):
        self.db = db
        self.allow_hosts = tuple(allow_hosts)  # outbound hosts allowed although private (SOLVENT_OUTBOUND_ALLOW_HOSTS)
        self.runway_ttl = runway_ttl
        self.estimate_ttl = estimate_ttl  # re-read per model after this long (jobs priced by other processes)
        # Which budgets exist is cached: re-read at once after this process changes one, and within
        # `definitions_ttl` seconds of another process (the CLI, another server) doing so.
        self.definitions_ttl = definitions_ttl
        self._definitions: tuple[float, int, list[Any]] = (-1e9, -1, [])
        self._runway: tuple[float, Any] = (0.0, None)
        # model → (when read, its last HISTORY priced jobs' (µ$, images), oldest first); jobs priced in
        # this process are appended as they settle, so the estimate follows them without a query.
        self._estimates: dict[str, tuple[float, deque[tuple[int, int]]]] = {}
        self._fleet_guess: tuple[float, int] = (-1e9, 0)  # µ$ per image before a model has history
        self._lock = threading.Lock()
        self._deliver_lock = threading.Lock()
        self._pending = False  # an alert was recorded and not yet handed to a delivery thread

    # -- admission ------------------------------------------------------------------------------

    def estimate_in(self, s: Session, job: Job) -> int:
        """µ$ the job will probably cost: its model's recent cost per image × its images (a fleet guess at first)."""
        images = job.spec.images
        cached = self._estimates.get(job.model)
        if cached is None or time.monotonic() - cached[0] >= self.estimate_ttl:
            rows = s.execute(select(JobCost.cost_micros, JobCost.images).where(
                JobCost.model == job.model, JobCost.state == "succeeded", JobCost.images > 0)
                .order_by(JobCost.finished_at.desc()).limit(HISTORY)).all()
            cached = (time.monotonic(), deque(((r[0], r[1]) for r in reversed(rows)), maxlen=HISTORY))
            self._estimates[job.model] = cached
        cost, imgs = sum(c for c, _ in cached[1]), sum(n for _, n in cached[1])
        if imgs and cost:
            return -(-cost // imgs) * images
        at, per_image = self._fleet_guess
        if time.monotonic() - at >= self.estimate_ttl:
            now = utcnow()
            rates = [worker_rate(s, w, now).micros_per_hour for w in s.scalars(select(Worker))]
            per_image = cost_of(DEFAULT_MS_PER_IMAGE, max(rates, default=0))
            self._fleet_guess = (time.monotonic(), per_image)
        return per_image * images

    def runway_cm(self, s: Session) -> int | None:
        """The runway in hundredths of a month (cached briefly); None when unknown or unlimited."""
        from .runway import from_ledger_in, latest_finances

        with self._lock:
            at, value = self._runway
            if time.monotonic() - at < self.runway_ttl:
                return value
            value = None
            if latest_finances(s) is not None:
                r = from_ledger_in(s)
                value = None if r.exact_months is None else int(r.exact_months * 100)
            self._runway = (time.monotonic(), value)
            return value

    def definitions(self, s: Session) -> list[Any]:
        """The active budgets' definitions (cached; see `definitions_ttl`)."""
        at, gen, rows = self._definitions
        if gen == _generation and time.monotonic() - at < self.definitions_ttl:
            return rows
        gen = _generation
        rows = s.execute(select(Budget.id, Budget.name, Budget.scope, Budget.period, Budget.limit_micros, Budget.hard,
                                Budget.runway_floor_cm).where(Budget.active.is_(True)).order_by(Budget.id)).all()
        self._definitions = (time.monotonic(), gen, rows)
        return rows

    def admit_in(self, s: Session, job: Job, now: datetime | None = None) -> None:
        """Refuse the job if a hard budget or the runway floor covers it; else hold its estimated cost.

        The hot path of every admission: no statement when no hard budget covers the job, and one
        `UPDATE … RETURNING` per hard budget that does (the reservation, which locks the budget's row
        until the job is queued, and the spend to check it against). The hold is written with the
        job's own INSERT (`Job.budget_hold`). A refusal raises, which rolls the reservation back.
        """
        now = now or utcnow()
        scopes = _job_scopes(s, job)
        mine = [b for b in self.definitions(s) if b.scope in scopes]
        for b in mine:
            if b.runway_floor_cm is not None:
                cm = self.runway_cm(s)
                if cm is not None and cm < b.runway_floor_cm:
                    raise BudgetExceeded(
                        f"new jobs for {b.scope} are paused: the runway is {cm / 100:.2f} months, below the floor "
                        f"of {b.runway_floor_cm / 100:.2f} set by budget {b.id!r}.", field="budget", value=b.id)
        hard = [b for b in mine if b.hard and b.limit_micros is not None]  # in id order: rows lock in one order
        if not hard:
            return
        estimate = self.estimate_in(s, job)
        held = []
        for b in hard:
            row = s.connection().execute(_RESERVE, {"budget": b.id, "estimate": estimate}).first()
            if row is None:  # switched off since the definitions were read
                continue
            done = row.spent_micros if row.period_key == period_of(b.period, now)[0] else 0
            before = row.reserved_micros - estimate
            if done + row.reserved_micros > b.limit_micros:
                raise BudgetExceeded(
                    f"budget {b.name!r} ({b.scope}, per {b.period}) is spent: {fmt_usd(done, 4)} used and "
                    f"{fmt_usd(before, 4)} reserved of {fmt_usd(b.limit_micros, 4)}; this job needs about "
                    f"{fmt_usd(estimate, 4)}.", field="budget", value=b.id)
            held.append(b.id)
        if held:
            job.budget_hold = {"budgets": held, "micros": estimate}

    # -- settlement and alerts ------------------------------------------------------------------

    def settle_in(self, s: Session, job: Job, row: JobCost | None = None) -> None:
        """Release the job's estimate, add its priced cost to its budgets' spend, record thresholds it crossed.

        One `UPDATE … RETURNING` over the budgets concerned (on PostgreSQL after locking them in id
        order, the order admission locks them in, so the two never deadlock). `row` is the job's
        cost when the caller has just priced it (else it is read).
        """
        hold = job.budget_hold or {}
        held_ids, estimate = list(hold.get("budgets") or []), int(hold.get("micros") or 0)
        row = row if row is not None else s.get(JobCost, job.id)
        cached = self._estimates.get(job.model)
        if row is not None and cached is not None and row.state == "succeeded" and row.images > 0:
            cached[1].append((row.cost_micros, row.images))  # the model's recent cost, without a query
        if row is None and not held_ids:
            return
        cost = row.cost_micros if row is not None else 0
        now = row.finished_at if row is not None else utcnow()
        scopes = _cost_scopes(row) if row is not None else set()
        covered = (and_(Budget.active.is_(True), Budget.limit_micros.is_not(None), Budget.scope.in_(sorted(scopes)))
                   if row is not None else false())
        which = or_(Budget.id.in_(held_ids), covered)
        if s.bind.dialect.name == "postgresql":
            s.execute(select(Budget.id).where(which).order_by(Budget.id).with_for_update())
        keys = {"day": period_of("day", now)[0], "month": period_of("month", now)[0]}
        key = case((Budget.period == "day", keys["day"]), else_=keys["month"])
        # Keys sort as dates. A job of an earlier period settling after a later one has begun (two workers
        # finishing either side of midnight) is not added to the new period's sum.
        spend = case((Budget.period_key == key, Budget.spent_micros + cost), (Budget.period_key < key, cost),
                     else_=Budget.spent_micros)
        changed = s.execute(
            update(Budget).where(which).values(
                reserved_micros=Budget.reserved_micros - case((Budget.id.in_(held_ids), estimate), else_=0),
                spent_micros=case((covered, spend), else_=Budget.spent_micros),
                period_key=case((and_(covered, Budget.period_key < key), key), else_=Budget.period_key))
            .returning(Budget.id, Budget.name, Budget.scope, Budget.period, Budget.limit_micros, Budget.thresholds_bp,
                       Budget.spent_micros, Budget.period_key, Budget.active)
            .execution_options(synchronize_session=False)).all()
        if row is None or not cost:
            return
        for b in changed:
            if not (b.active and b.limit_micros is not None and b.scope in scopes) or b.period_key != keys[b.period]:
                continue
            if _alerts(s, b, b.spent_micros - cost, now):  # the row is locked: exactly this job's step
                self._pending = True

    def on_final(self, job: Job) -> None:
        """After a job's transaction: deliver new alerts off the worker's thread."""
        if not self._pending:
            return
        self._pending = False
        threading.Thread(target=self.deliver, name="budget-alerts", daemon=True).start()

    def deliver(self, timeout: float = 5.0) -> int:
        """Post undelivered alerts to their budgets' webhooks. Returns how many were posted."""
        import httpx

        sent = 0
        with self._deliver_lock, self.db.session() as s:
            pending = list(s.scalars(select(BudgetAlert).where(BudgetAlert.delivered == "")))
            for a in pending:
                b = s.get(Budget, a.budget_id)
                payload = {"type": "budget.threshold", "budget": b.id, "name": b.name, "scope": b.scope,
                           "period": a.period_key, "threshold_percent": a.threshold_bp // 100,
                           "spent_micros": a.spent_micros, "limit_micros": a.limit_micros, "at": a.at.isoformat()}
                if not b.webhook_url:
                    a.delivered = "logged"
                    continue
                try:
                    check_url(b.webhook_url, self.allow_hosts)  # again: a name may resolve elsewhere by now
                except ValidationFailed as e:
                    a.delivered = "webhook refused: private address"
                    log.warning("budget alert webhook refused: %s", e.message)
                    continue
                try:
                    r = httpx.post(b.webhook_url, json=payload, timeout=timeout, follow_redirects=False)
                    a.delivered = f"webhook {r.status_code}"
                    sent += 1
                except httpx.HTTPError as e:
                    a.delivered = f"webhook failed: {type(e).__name__}"[:200]
                    log.warning("budget alert webhook %s failed: %s", b.webhook_url, e)
        return sent


def status(db: Database, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every budget with its spend this period, reserved estimates and the alerts raised."""
    now = now or utcnow()
    out = []
    with db.session() as s:
        for b in s.scalars(select(Budget).order_by(Budget.created_at)):
            done, held = spent(s, b, now)
            key, start, end = period_of(b.period, now)
            alerts = [{"threshold_percent": a.threshold_bp // 100, "period": a.period_key, "at": a.at.isoformat(),
                       "spent_micros": a.spent_micros, "delivered": a.delivered}
                      for a in s.scalars(select(BudgetAlert).where(BudgetAlert.budget_id == b.id)
                                         .order_by(BudgetAlert.at))]
            out.append({"id": b.id, "name": b.name, "scope": b.scope, "period": b.period, "period_key": key,
                        "limit_micros": b.limit_micros, "hard": b.hard, "active": b.active,
                        "runway_floor_months": None if b.runway_floor_cm is None else b.runway_floor_cm / 100,
                        "thresholds_percent": [bp // 100 for bp in b.thresholds_bp], "spent_micros": done,
                        "reserved_micros": held, "webhook_url": b.webhook_url,
                        "used_percent": None if not b.limit_micros else round(100 * (done + held) / b.limit_micros, 1),
                        "alerts": alerts})
    return out
