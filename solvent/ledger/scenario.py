"""What-ifs on the runway: `solvent ledger scenario`.

Starts from the same monthly trend as `solvent ledger runway` (the ledger's last N days and the
recorded finances) and changes one or more levers:

- `price_change_pct`: every credit price up or down (revenue scales; demand assumed unchanged);
- `plan_factor`: revenue from one plan multiplied (a different plan mix), e.g. {"professional": 2};
- `grants_cut_pct` / `free_cut_pct`: that share of the compute given to grants / the free tier
  not given (its busy cost saved; the idle fleet still costs what it costs);
- `moves`: workers re-priced as if on another provider, instance type or commitment,
  e.g. ("aws", "g5.xlarge", "gcp", "g2-standard-4", "1y"): their uptime cost scales by the
  ratio of the target's per-GPU rate to what they pay now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from ..errors import ValidationFailed
from ..money import fmt_usd
from ..storage.db import Database, utcnow
from ..storage.models import JobCost, Worker
from .catalog import price_at
from .costing import uptime_cost, worker_rate
from .runway import Runway, compute, latest_finances


@dataclass
class Levers:
    price_change_pct: Decimal = Decimal(0)
    plan_factor: dict[str, Decimal] = field(default_factory=dict)
    grants_cut_pct: Decimal = Decimal(0)
    free_cut_pct: Decimal = Decimal(0)
    moves: list[tuple[str, str, str, str, str]] = field(default_factory=list)


@dataclass
class Scenario:
    baseline: Runway
    scenario: Runway
    effects: list[tuple[str, int]]  # (what changed, µ$ per month: + saves or earns, − costs)

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline.to_dict(), "scenario": self.scenario.to_dict(),
                "effects": [{"lever": k, "micros_per_month": v} for k, v in self.effects]}

    def text(self) -> str:
        def months(r: Runway) -> str:
            return "unlimited" if r.months is None else f"{r.months} months ({r.days} days)"

        lines = [f"{'':<34} {'baseline':>16} {'scenario':>16}"]
        for label, attr in (("cloud per month", "cloud_metered_micros"), ("revenue per month", "revenue_micros"),
                            ("gross burn", "gross_burn_micros"), ("net burn", "net_burn_micros")):
            lines.append(f"{label:<34} {fmt_usd(getattr(self.baseline, attr), 0):>16} "
                         f"{fmt_usd(getattr(self.scenario, attr), 0):>16}")
        lines.append(f"{'runway':<34} {months(self.baseline):>16} {months(self.scenario):>16}")
        for k, v in self.effects:
            lines.append(f"  {k}: {'+' if v >= 0 else '-'}{fmt_usd(abs(v), 0)} a month")
        return "\n".join(lines)


def _pct(v: Decimal, name: str, lo: int, hi: int) -> Decimal:
    if not lo <= v <= hi:
        raise ValidationFailed(f"`{name}` must be from {lo} to {hi} but is {v}.", field=name, value=str(v))
    return v


def run(db: Database, levers: Levers, now: datetime | None = None, days: int = 30) -> Scenario:
    now = now or utcnow()
    start = now - timedelta(days=days)
    _pct(levers.price_change_pct, "price_change_pct", -100, 1000)
    _pct(levers.grants_cut_pct, "grants_cut_pct", 0, 100)
    _pct(levers.free_cut_pct, "free_cut_pct", 0, 100)
    with db.session() as s:
        fin = latest_finances(s)
        if fin is None:
            raise ValidationFailed("no finances recorded: run `solvent ledger finances --cash USD …` first.",
                                   field="cash")
        jobs = list(s.scalars(select(JobCost).where(JobCost.finished_at >= start, JobCost.finished_at < now)))
        workers = list(s.scalars(select(Worker)))
        uptime = {w.id: uptime_cost(s, w, start, now)[1] for w in workers}
        busy = sum(j.cost_micros for j in jobs)
        cloud = max(sum(uptime.values()), busy)  # unmetered uptime still counts its jobs
        revenue = sum(j.revenue_micros for j in jobs)
        effects: list[tuple[str, int]] = []
        if levers.price_change_pct:
            delta = int(revenue * levers.price_change_pct / 100)
            effects.append((f"prices {levers.price_change_pct:+}%", delta))
        for plan, factor in levers.plan_factor.items():
            if factor < 0:
                raise ValidationFailed(f"`plan_factor` for {plan!r} must not be negative but is {factor}.",
                                       field="plan_factor", value=str(factor))
            base = sum(j.revenue_micros for j in jobs if j.plan_id == plan)
            effects.append((f"revenue of plan {plan} × {factor}", int(base * (factor - 1))))
        if levers.grants_cut_pct:
            saved = sum(j.cost_micros for j in jobs if j.grant_ids)
            effects.append((f"grants cut {levers.grants_cut_pct}%", int(saved * levers.grants_cut_pct / 100)))
        if levers.free_cut_pct:
            saved = sum(j.cost_micros for j in jobs if j.paid_by == "free")
            effects.append((f"free tier cut {levers.free_cut_pct}%", int(saved * levers.free_cut_pct / 100)))
        for src_p, src_i, dst_p, dst_i, dst_c in levers.moves:
            target = price_at(s, dst_p, dst_i, dst_c, now)
            if target is None:
                raise ValidationFailed(f"no price for {dst_p} {dst_i} {dst_c}: add one with `solvent prices set`.",
                                       field="moves", value=f"{dst_p}:{dst_i}:{dst_c}")
            saved = 0
            for w in workers:
                if (w.provider, w.instance_type) != (src_p, src_i):
                    continue
                rate = worker_rate(s, w, now).micros_per_hour
                if rate:
                    saved += uptime[w.id] - uptime[w.id] * target.micros_per_gpu_hour // rate
            effects.append((f"{src_p} {src_i} moved to {dst_p} {dst_i} {dst_c}", saved))
    scale = Decimal(30) / days
    fixed = fin.payroll_micros + fin.rent_micros + fin.other_micros

    def monthly(v: int) -> int:
        return int(v * scale)

    baseline = compute(fin.cash_micros, monthly(cloud), fixed, monthly(revenue), fin.committed_cloud_micros)
    earn = sum(v for k, v in effects if k.startswith(("prices", "revenue")))
    save = sum(v for k, v in effects if not k.startswith(("prices", "revenue")))
    after = compute(fin.cash_micros, max(0, monthly(cloud - save)), fixed, max(0, monthly(revenue + earn)),
                    fin.committed_cloud_micros)
    return Scenario(baseline, after, [(k, monthly(v)) for k, v in effects])
