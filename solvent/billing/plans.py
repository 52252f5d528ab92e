"""Plans: what an organisation may do and what it gets each period.

Shipped defaults mirror Stability's memberships (Dec 2023): Community is free and non-commercial
with a daily image quota; Professional is $20/month with commercial use and monthly included
credits; Enterprise is custom; Pay-as-you-go buys credit packs. Operators change any field with
`solvent plans set` or the admin API; the defaults are inserted once and never overwrite edits.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from ..errors import NotFound, ValidationFailed
from ..money import MC_PER_CREDIT
from ..storage.db import Database, keep, utcnow
from ..storage.models import Plan

DEFAULT_PLANS: list[dict[str, Any]] = [
    dict(id="community", name="Community", price_micros=0, period="day", included_mc=10 * MC_PER_CREDIT,
         daily_images=25, commercial=False, priority=0, concurrent_jobs=1, rpm=10, max_pixels=768 * 768,
         max_steps=50, allowed_models=None),
    dict(id="payg", name="Pay as you go", price_micros=0, period="month", included_mc=0, daily_images=None,
         commercial=True, priority=5, concurrent_jobs=2, rpm=30, max_pixels=1024 * 1024, max_steps=100,
         allowed_models=None),
    dict(id="professional", name="Professional", price_micros=20_000_000, period="month",
         included_mc=1000 * MC_PER_CREDIT, daily_images=None, commercial=True, priority=10, concurrent_jobs=4,
         rpm=60, max_pixels=2048 * 2048, max_steps=150, allowed_models=None),
    dict(id="enterprise", name="Enterprise", price_micros=None, period="month", included_mc=0, daily_images=None,
         commercial=True, priority=20, concurrent_jobs=16, rpm=600, max_pixels=4096 * 4096, max_steps=150,
         allowed_models=None),
]

# Pay-as-you-go credit packs (what a checkout sells): credits and price in micro-dollars.
CREDIT_PACKS: list[dict[str, int | str]] = [
    {"id": "pack-1000", "credits": 1000, "price_micros": 10_000_000},
    {"id": "pack-5000", "credits": 5000, "price_micros": 50_000_000},
    {"id": "pack-25000", "credits": 25000, "price_micros": 250_000_000},
]

EDITABLE = ("name", "price_micros", "period", "included_mc", "daily_images", "commercial", "priority",
            "concurrent_jobs", "rpm", "max_pixels", "max_steps", "allowed_models")


@dataclass(frozen=True)
class PlanView:
    """A plan as plain values (safe to use outside a session)."""

    id: str
    name: str
    price_micros: int | None
    period: str
    included_mc: int
    daily_images: int | None
    commercial: bool
    priority: int
    concurrent_jobs: int
    rpm: int
    max_pixels: int
    max_steps: int
    allowed_models: list[str] | None

    @classmethod
    def of(cls, p: Plan) -> PlanView:
        return cls(**{k: getattr(p, k) for k in ("id", *EDITABLE)})

    @property
    def free(self) -> bool:
        """Whether what this plan includes is given away (no fee pays for it)."""
        return not self.price_micros

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("id", *EDITABLE)}


def ensure_plans(db: Database) -> None:
    """Insert the shipped plans that do not exist yet."""
    with db.session() as s:
        have = set(s.scalars(select(Plan.id)))
        for d in DEFAULT_PLANS:
            if d["id"] not in have:
                s.add(Plan(**d))


def _check(field: str, value: Any) -> Any:
    ints = ("included_mc", "priority", "concurrent_jobs", "rpm", "max_pixels", "max_steps")
    if field in ints or field in ("price_micros", "daily_images"):
        if value is None and field in ("price_micros", "daily_images"):
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 10**15:
            raise ValidationFailed(f"`{field}` must be a whole number from 0 to 10^15 but is {value!r}.",
                                   field=field, value=value)
    elif field == "period" and value not in ("day", "month"):
        raise ValidationFailed(f"`period` must be `day` or `month` but is {value!r}.", field=field, value=value)
    elif field == "commercial" and not isinstance(value, bool):
        raise ValidationFailed(f"`commercial` must be true or false but is {value!r}.", field=field, value=value)
    elif field == "allowed_models" and value is not None and (
            not isinstance(value, list) or not all(isinstance(m, str) for m in value)):
        raise ValidationFailed(f"`allowed_models` must be a list of model ids or null but is {value!r}.",
                               field=field, value=value)
    elif field == "name" and (not isinstance(value, str) or not 0 < len(value) <= 100):
        raise ValidationFailed(f"`name` must be 1–100 characters but is {value!r}.", field=field, value=value)
    return value


def list_plans(db: Database) -> list[PlanView]:
    with db.session() as s:
        return [PlanView.of(p) for p in s.scalars(select(Plan).order_by(Plan.priority, Plan.id))]


def get_plan(s, plan_id: str) -> PlanView:
    p = s.get(Plan, plan_id)
    if p is None:
        raise NotFound(f"`plan` {plan_id!r} was not found.", field="plan", value=plan_id)
    keep(s, p)  # admission reads it twice (limits, then the reservation): the second read is from the session
    return PlanView.of(p)


def set_plan(db: Database, plan_id: str, create: bool = False, **fields: Any) -> PlanView:
    """Change fields of a plan (or create it with `create=True`)."""
    for k in fields:
        if k not in EDITABLE:
            raise ValidationFailed(f"`{k}` is not a plan field; plan fields: {', '.join(EDITABLE)}.", field=k)
    clean = {k: _check(k, v) for k, v in fields.items()}
    with db.session() as s:
        p = s.get(Plan, plan_id)
        if p is None:
            if not create:
                raise NotFound(f"`plan` {plan_id!r} was not found.", field="plan", value=plan_id)
            p = Plan(id=plan_id, name=clean.pop("name", plan_id))
            s.add(p)
        for k, v in clean.items():
            setattr(p, k, v)
        p.updated_at = utcnow()
        s.flush()
        return PlanView.of(p)


def _add_months(t: datetime, months: int) -> datetime:
    y, m = divmod(t.month - 1 + months, 12)
    y, m = t.year + y, m + 1
    return t.replace(year=y, month=m, day=min(t.day, calendar.monthrange(y, m)[1]))


def period_bounds(period: str, anchor: datetime | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end) of the period containing `now`: UTC days, or months from `anchor` (else the 1st)."""
    now = now or utcnow()
    if period == "day":
        start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    if anchor is None or anchor > now:
        anchor = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    k = (now.year - anchor.year) * 12 + now.month - anchor.month
    while _add_months(anchor, k) > now:
        k -= 1
    return _add_months(anchor, k), _add_months(anchor, k + 1)


def set_org_plan(db: Database, org_id: str, plan_id: str) -> dict[str, Any]:
    """Move an organisation to a plan (jobs already admitted keep their holds and terms)."""
    from ..storage.models import Organisation

    with db.session() as s:
        org = s.scalar(select(Organisation).where(Organisation.id == org_id).with_for_update())
        if org is None:
            raise NotFound(f"`org` {org_id!r} was not found.", field="org", value=org_id)
        get_plan(s, plan_id)
        previous, org.plan_id = org.plan_id, plan_id
        return {"org_id": org_id, "plan": plan_id, "previous": previous}
