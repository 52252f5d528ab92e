"""Burn and runway (economics.md): how long the cash lasts at the ledger's recent trend.

    cloud       = max(metered cloud cost per month, committed cloud spend per month)
    gross burn  = cloud + payroll + rent + other
    net burn    = gross burn − revenue
    runway      = cash ÷ net burn   (months; unlimited when net burn ≤ 0: "default alive")

Cloud commitments are a floor: reservations and committed-use contracts are billed whether the
GPUs are busy or not. Amounts are integer micro-dollars; runway is exact to the hundredth of a
month (and in days, at 365/12 days a month), rounded half up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select

from ..errors import ValidationFailed
from ..money import fmt_usd, usd_to_micros
from ..storage.db import Database, utcnow
from ..storage.models import Finances

DAYS_PER_MONTH = Decimal(365) / 12


@dataclass(frozen=True)
class Runway:
    cash_micros: int
    cloud_metered_micros: int
    cloud_committed_micros: int
    fixed_micros: int  # payroll + rent + other, per month
    revenue_micros: int  # per month
    gross_burn_micros: int
    net_burn_micros: int
    exact_months: Decimal | None  # cash ÷ net burn to 6 places; None: revenue covers the burn

    @property
    def months(self) -> Decimal | None:
        return None if self.exact_months is None else self.exact_months.quantize(Decimal("0.01"), ROUND_HALF_UP)

    @property
    def days(self) -> Decimal | None:
        if self.exact_months is None:
            return None
        return (self.exact_months * DAYS_PER_MONTH).quantize(Decimal("0.1"), ROUND_HALF_UP)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["exact_months"] = None if self.exact_months is None else str(self.exact_months)
        d["months"] = None if self.months is None else str(self.months)
        d["days"] = None if self.days is None else str(self.days)
        return d

    def text(self) -> str:
        lines = [
            f"cash on hand          {fmt_usd(self.cash_micros, 0):>16}",
            f"cloud (metered)       {fmt_usd(self.cloud_metered_micros, 0):>16} /month",
            f"cloud (committed)     {fmt_usd(self.cloud_committed_micros, 0):>16} /month",
            f"payroll, rent, other  {fmt_usd(self.fixed_micros, 0):>16} /month",
            f"gross burn            {fmt_usd(self.gross_burn_micros, 0):>16} /month",
            f"revenue               {fmt_usd(self.revenue_micros, 0):>16} /month",
            f"net burn              {fmt_usd(self.net_burn_micros, 0):>16} /month",
        ]
        if self.months is None:
            lines.append("runway                unlimited (revenue covers the burn: default alive)")
        else:
            lines.append(f"runway                {self.months:>10} months ({self.days} days)")
        return "\n".join(lines)


def compute(cash_micros: int, cloud_metered_micros: int, fixed_micros: int, revenue_micros: int,
            cloud_committed_micros: int = 0) -> Runway:
    for name, v in (("cash", cash_micros), ("cloud", cloud_metered_micros), ("fixed", fixed_micros),
                    ("revenue", revenue_micros), ("committed", cloud_committed_micros)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValidationFailed(f"`{name}` must be a non-negative whole number of micro-dollars but is {v!r}.",
                                   field=name, value=v)
    cloud = max(cloud_metered_micros, cloud_committed_micros)
    gross = cloud + fixed_micros
    net = gross - revenue_micros
    months = (Decimal(cash_micros) / Decimal(net)).quantize(Decimal("0.000001"), ROUND_HALF_UP) if net > 0 else None
    return Runway(cash_micros, cloud_metered_micros, cloud_committed_micros, fixed_micros, revenue_micros, gross,
                  net, months)


def set_finances(db: Database, cash: Any, payroll: Any = 0, rent: Any = 0, other: Any = 0,
                 committed_cloud: Any = 0, as_of: datetime | None = None, actor: str = "cli") -> Finances:
    """Record cash on hand and monthly fixed costs (USD amounts); the newest record is the one used."""
    row = Finances(as_of=as_of or utcnow(), cash_micros=usd_to_micros(cash, "cash"),
                   payroll_micros=usd_to_micros(payroll, "payroll"), rent_micros=usd_to_micros(rent, "rent"),
                   other_micros=usd_to_micros(other, "other"),
                   committed_cloud_micros=usd_to_micros(committed_cloud, "committed_cloud"), actor=actor)
    with db.session() as s:
        s.add(row)
    return row


def latest_finances(s) -> Finances | None:
    return s.scalar(select(Finances).order_by(Finances.as_of.desc(), Finances.id.desc()).limit(1))


def from_ledger(db: Database, now: datetime | None = None, days: int = 30) -> Runway:
    with db.session() as s:
        return from_ledger_in(s, now, days)


def from_ledger_in(s, now: datetime | None = None, days: int = 30) -> Runway:
    """Runway from the recorded finances and the ledger's last `days` of cost and revenue."""
    from .reports import monthly_trend

    fin = latest_finances(s)
    if fin is None:
        raise ValidationFailed("no finances recorded: run `solvent ledger finances --cash USD --payroll USD …` first.",
                               field="cash")
    trend = monthly_trend(s, now or utcnow(), days)
    return compute(fin.cash_micros, trend["cloud_micros"], fin.payroll_micros + fin.rent_micros + fin.other_micros,
                   trend["revenue_micros"], fin.committed_cloud_micros)
