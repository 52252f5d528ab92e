"""Reports over the ledger: cost, revenue, margin, utilisation, idle cost and what was given away.

`report(db, start, end, by)` groups finished jobs by a time bucket (day, week, month) or a
dimension (model, plan, org, worker, provider, paid_by, grant) and adds, for time buckets and
worker/provider groups, the idle cost of the workers' uptime (its own `__idle__` line, as
OpenCost does). Refunded jobs keep their cost but lose their revenue. All sums are integers.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, literal, select

from ..billing.plans import period_bounds
from ..errors import ValidationFailed
from ..money import MICROS_PER_MC, fmt_usd
from ..storage.db import Database
from ..storage.models import CreditHold, JobCost, Worker
from .costing import uptime_cost

TIME_BUCKETS = ("day", "week", "month")
DIMENSIONS = ("model", "plan", "org", "worker", "provider", "paid_by", "grant")
BY = (*TIME_BUCKETS, *DIMENSIONS, "total")
IDLE = "__idle__"


@dataclass
class Line:
    key: str
    jobs: int = 0
    images: int = 0
    device_ms: int = 0
    uptime_ms: int = 0
    cost_micros: int = 0
    list_cost_micros: int = 0
    idle_micros: int = 0
    revenue_micros: int = 0
    captured_mc: int = 0
    given_away_mc: int = 0
    given_away_cost_micros: int = 0  # what the compute given away cost the operator
    unpriced_jobs: int = 0

    def add(self, jobs: int, images: int, device_ms: int, cost: int, list_cost: int, revenue: int, captured: int,
            given: int, given_cost: int, unpriced: int) -> None:
        """Add a group of jobs (already divided by its share where a job is split between lines)."""
        self.jobs += jobs
        self.images += images
        self.device_ms += device_ms
        self.cost_micros += cost
        self.list_cost_micros += list_cost
        self.revenue_micros += revenue
        self.captured_mc += captured
        self.given_away_mc += given
        self.given_away_cost_micros += given_cost
        self.unpriced_jobs += unpriced

    @property
    def total_cost_micros(self) -> int:
        return self.cost_micros + self.idle_micros

    @property
    def margin_micros(self) -> int:
        return self.revenue_micros - self.total_cost_micros

    @property
    def cost_per_image_micros(self) -> int | None:
        return -(-self.total_cost_micros // self.images) if self.images else None

    @property
    def utilisation_bp(self) -> int | None:
        """Busy device time over uptime, in basis points (10000 = 100%)."""
        return min(10000, self.device_ms * 10000 // self.uptime_ms) if self.uptime_ms else None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "jobs": self.jobs, "images": self.images, "device_ms": self.device_ms,
                "uptime_ms": self.uptime_ms, "cost_micros": self.cost_micros,
                "list_cost_micros": self.list_cost_micros, "idle_micros": self.idle_micros,
                "total_cost_micros": self.total_cost_micros, "revenue_micros": self.revenue_micros,
                "margin_micros": self.margin_micros, "cost_per_image_micros": self.cost_per_image_micros,
                "utilisation_bp": self.utilisation_bp, "captured_mc": self.captured_mc,
                "given_away_mc": self.given_away_mc, "given_away_value_micros": self.given_away_mc * MICROS_PER_MC,
                "given_away_cost_micros": self.given_away_cost_micros, "unpriced_jobs": self.unpriced_jobs}


@dataclass
class Report:
    start: datetime
    end: datetime
    by: str
    lines: list[Line]
    total: Line = field(default_factory=lambda: Line("total"))

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "by": self.by,
                "lines": [ln.to_dict() for ln in self.lines], "total": self.total.to_dict()}

    def csv(self) -> str:
        buf = io.StringIO()
        cols = list(Line("x").to_dict())
        w = csv.DictWriter(buf, fieldnames=[self.by if c == "key" else c for c in cols])
        w.writeheader()
        for ln in [*self.lines, self.total]:
            d = ln.to_dict()
            d[self.by] = d.pop("key")
            w.writerow(d)
        return buf.getvalue()

    def text(self) -> str:
        head = (f"{self.by:<22} {'jobs':>6} {'images':>7} {'GPU-h':>8} {'cost':>11} {'idle':>10} {'revenue':>11} "
                f"{'margin':>11} {'$/image':>9} {'util':>5} {'given away':>11}")
        rows = [f"Compute ledger {self.start:%Y-%m-%d %H:%M} – {self.end:%Y-%m-%d %H:%M} UTC", head, "-" * len(head)]
        for ln in [*self.lines, self.total]:
            if ln is self.total:
                rows.append("-" * len(head))
            util = f"{ln.utilisation_bp // 100}%" if ln.utilisation_bp is not None else "-"
            cpi = fmt_usd(ln.cost_per_image_micros, 4) if ln.cost_per_image_micros is not None else "-"
            rows.append(f"{ln.key[:22]:<22} {ln.jobs:>6} {ln.images:>7} {ln.device_ms / 3.6e6:>8.3f} "
                        f"{fmt_usd(ln.cost_micros):>11} {fmt_usd(ln.idle_micros):>10} {fmt_usd(ln.revenue_micros):>11} "
                        f"{fmt_usd(ln.margin_micros):>11} {cpi:>9} {util:>5} {fmt_usd(ln.given_away_cost_micros):>11}")
        if self.total.unpriced_jobs:
            rows.append(f"{self.total.unpriced_jobs} job(s) ran on workers with no price: set one with "
                        "`solvent prices set` or start the worker with --usd-per-hour.")
        return "\n".join(rows)


def bucket(when: datetime, by: str) -> str:
    if by == "day":
        return when.strftime("%Y-%m-%d")
    if by == "week":
        y, w, _ = when.isocalendar()
        return f"{y}-W{w:02d}"
    return when.strftime("%Y-%m")


def _bucket_bounds(start: datetime, end: datetime, by: str) -> list[tuple[str, datetime, datetime]]:
    out, cur = [], start
    while cur < end:
        if by == "week":
            d = datetime(cur.year, cur.month, cur.day, tzinfo=cur.tzinfo)
            nxt = d + timedelta(days=7 - d.weekday())
        else:
            nxt = period_bounds(by, None, cur)[1]
        nxt = min(nxt, end)
        out.append((bucket(cur, by), cur, nxt))
        cur = nxt
    return out


def report(db: Database, start: datetime, end: datetime, by: str = "day", org_id: str | None = None,
           share_idle: bool = False) -> Report:
    with db.session() as s:
        return report_in(s, start, end, by, org_id, share_idle)


def report_in(s, start: datetime, end: datetime, by: str = "day", org_id: str | None = None,
              share_idle: bool = False) -> Report:
    """`share_idle` (with a dimension): the `__idle__` line is shared pro rata to each line's busy cost."""
    if by not in BY:
        raise ValidationFailed(f"`by` must be one of {', '.join(BY)} but is {by!r}.", field="by", value=by)
    if end <= start:
        raise ValidationFailed(f"`until` ({end.isoformat()}) must be after `since` ({start.isoformat()}).",
                               field="until", value=end.isoformat())
    lines: dict[str, Line] = {}
    if by in TIME_BUCKETS:  # every bucket of the range, quiet ones too, so a time series has no gaps
        lines = {key: Line(key) for key, _, _ in _bucket_bounds(start, end, by)}
    total = Line("total")
    where = [JobCost.finished_at >= start, JobCost.finished_at < end]
    if org_id:
        where.append(JobCost.org_id == org_id)
    if by == "grant":
        _grant_lines(s, where, lines, total)
    else:
        _sql_lines(s, where, by, lines, total)
    if not org_id:  # idle capacity is the operator's, not an organisation's
        _idle(s, start, end, by, lines, total)
        if share_idle and IDLE in lines:
            _share(lines)
    ordered = sorted(lines.values(), key=lambda ln: (ln.key == IDLE, ln.key))
    return Report(start, end, by, ordered, total)


def _day_bucket(day: str, by: str) -> str:
    """A YYYY-MM-DD string from the database, as the key of its day, week or month."""
    return bucket(datetime.fromisoformat(day).replace(tzinfo=UTC), by)


def _refunded(s, where):
    return select(CreditHold.job_id).where(CreditHold.state == "refunded",
                                           CreditHold.job_id.in_(select(JobCost.job_id).where(*where)))


def _day(s):
    """The UTC day of `finished_at` as YYYY-MM-DD, in the database's own dialect."""
    if s.bind.dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d", JobCost.finished_at)
    return func.to_char(func.timezone("UTC", JobCost.finished_at), "YYYY-MM-DD")


def _sql_lines(s, where, by: str, lines: dict[str, Line], total: Line) -> None:
    """Sum in the database, one row per group (per day for time buckets, rolled up here)."""
    key = {"model": JobCost.model, "plan": JobCost.plan_id, "org": JobCost.org_id, "worker": JobCost.worker_id,
           "provider": JobCost.provider, "paid_by": JobCost.paid_by, "total": literal("total")}.get(by)
    key = _day(s) if key is None else key
    refunded = JobCost.job_id.in_(_refunded(s, where))
    given_cost = case((JobCost.captured_mc > 0, JobCost.cost_micros * JobCost.given_away_mc / JobCost.captured_mc),
                      else_=0)
    q = select(key, func.count(), func.sum(JobCost.images), func.sum(JobCost.device_ms), func.sum(JobCost.cost_micros),
               func.sum(JobCost.list_cost_micros), func.sum(case((refunded, 0), else_=JobCost.revenue_micros)),
               func.sum(JobCost.captured_mc), func.sum(JobCost.given_away_mc), func.sum(given_cost),
               func.sum(case((JobCost.rate_source == "", 1), else_=0))).where(*where)
    if by != "total":  # PostgreSQL refuses GROUP BY a constant
        q = q.group_by(key)
    for k, *sums in s.execute(q):
        if not sums[0]:
            continue
        if by in TIME_BUCKETS:
            k = _day_bucket(k, by)
        k = str(k) if k else "(none)"
        values = [int(v or 0) for v in sums]
        for ln in (lines.setdefault(k, Line(k)), total):
            ln.add(*values)


def _grant_lines(s, where, lines: dict[str, Line], total: Line) -> None:
    """By grant, in Python: a job paid from two grants is split between them."""
    refunded = set(s.scalars(_refunded(s, where)))
    for row in s.scalars(select(JobCost).where(*where)):
        revenue = 0 if row.job_id in refunded else row.revenue_micros
        keys = list(row.grant_ids) or ["(none)"]
        given_cost = row.cost_micros * row.given_away_mc // row.captured_mc if row.captured_mc else 0
        for ln in [*(lines.setdefault(k, Line(k)) for k in keys), total]:
            share = len(keys) if ln is not total else 1
            ln.add(1, row.images, row.device_ms // share, row.cost_micros // share, row.list_cost_micros // share,
                   revenue // share, row.captured_mc // share, row.given_away_mc // share, given_cost // share,
                   int(not row.rate_source))


def _share(lines: dict[str, Line]) -> None:
    """OpenCost's shared idle: split the idle line over the others by busy cost (largest remainder)."""
    idle = lines[IDLE]
    others = [ln for k, ln in lines.items() if k != IDLE and ln.cost_micros > 0]
    busy = sum(ln.cost_micros for ln in others)
    if not busy:
        return
    parts = [(idle.idle_micros * ln.cost_micros // busy, idle.idle_micros * ln.cost_micros % busy, ln) for ln in others]
    left = idle.idle_micros - sum(p for p, _, _ in parts)
    for i, (share, _, ln) in enumerate(sorted(parts, key=lambda p: (-p[1], p[2].key))):
        ln.idle_micros += share + (1 if i < left else 0)
    del lines[IDLE]


def _idle(s, start: datetime, end: datetime, by: str, lines: dict[str, Line], total: Line) -> None:
    workers = list(s.scalars(select(Worker)))
    timed = by in TIME_BUCKETS
    spans = _bucket_bounds(start, end, by) if timed else [(None, start, end)]
    # Busy cost per worker (and UTC day), summed by the database in one query.
    cols = (JobCost.worker_id, _day(s)) if timed else (JobCost.worker_id,)
    busy: dict[tuple[str, str | None], int] = {}
    for *k, cost in s.execute(select(*cols, func.sum(JobCost.cost_micros)).where(
            JobCost.finished_at >= start, JobCost.finished_at < end).group_by(*cols)):
        bkey = _day_bucket(k[1], by) if timed else None
        busy[(k[0], bkey)] = busy.get((k[0], bkey), 0) + int(cost or 0)
    for w in workers:
        for key, a, b in spans:
            up_ms, up_cost = uptime_cost(s, w, a, b)
            if not up_ms:
                continue
            idle = max(0, up_cost - busy.get((w.id, key), 0))
            if by in TIME_BUCKETS:
                target = lines.setdefault(key, Line(key))
            elif by == "worker":
                target = lines.setdefault(w.id, Line(w.id))
            elif by == "provider":
                target = lines.setdefault(w.provider or "(none)", Line(w.provider or "(none)"))
            else:
                target = lines.setdefault(IDLE, Line(IDLE))
            target.idle_micros += idle
            target.uptime_ms += up_ms
            total.idle_micros += idle
            total.uptime_ms += up_ms


def monthly_trend(s, now: datetime, days: int = 30) -> dict[str, int]:
    """Cost (busy + idle) and revenue over the last `days`, scaled to a 30-day month."""
    r = report_in(s, now - timedelta(days=days), now, "total")
    t = r.total
    return {"cloud_micros": t.total_cost_micros * 30 // days, "revenue_micros": t.revenue_micros * 30 // days,
            "given_away_cost_micros": t.given_away_cost_micros * 30 // days, "images": t.images * 30 // days}

