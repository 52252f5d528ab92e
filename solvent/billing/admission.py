"""Billing at the two ends of a job: admission (limits, price, reserve) and settlement (capture/release).

`admit_in` runs inside the queue's enqueue transaction, after the organisation's row is locked,
so limits, the price and the reservation see a consistent view and a refused request leaves no
job behind. `settle_in` runs inside the transaction that makes a job final, so a job can never be
final without its credits captured or released.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import Forbidden, PaymentRequired, TooManyRequests
from ..generation.spec import JobSpec
from ..money import fmt_credits
from ..storage.db import Database, utcnow
from ..storage.models import ApiKey, CreditHold, Job, JobState, Organisation
from .credits import TOP_UP, CreditLedger, insufficient, lock_org
from .plans import PlanView, get_plan, period_bounds
from .pricing import PriceRequest, Pricing


class PlanLimit(Forbidden):
    """The request exceeds a cap of the plan or of the API key (pixels, steps, models)."""

    code = "plan_limit"


class RateLimited(TooManyRequests):
    code = "rate_limited"


class QuotaExceeded(TooManyRequests):
    code = "daily_quota"


class KeyCapReached(PaymentRequired):
    code = "key_cap_reached"


@dataclass(frozen=True)
class Payer:
    """Who a request is charged to."""

    org_id: str
    key_id: str | None = None


ACTIVE = (JobState.queued, JobState.running)


class Billing:
    """Billing at admission and settlement: the limits a request must pass, its price, the credit reservation
    inside the enqueue transaction, and the capture or release when the job ends."""

    def __init__(self, db: Database, pricing: Pricing | None = None, credits_per_gpu_hour: int = 250):
        self.db = db
        self.pricing = pricing or Pricing()
        self.ledger = CreditLedger(db, credits_per_gpu_hour)

    # ------------------------------------------------------------------------------------------
    # Checks
    # ------------------------------------------------------------------------------------------

    @staticmethod
    def _caps(plan: PlanView, key: ApiKey | None, req: PriceRequest) -> None:
        width, height = (req.out_width, req.out_height) if req.out_width else (req.width, req.height)
        pixels = width * height  # what the image will have (an upscaled one: the size asked for)
        for who, max_pixels, max_steps in (("plan " + plan.name, plan.max_pixels, plan.max_steps),
                                           ("API key", key.max_pixels if key else None,
                                            key.max_steps if key else None)):
            if max_pixels is not None and pixels > max_pixels:
                raise PlanLimit(f"`width`×`height` = {width}×{height} = {pixels} pixels exceeds the {who} cap "
                                f"of {max_pixels} pixels.", field="width", value=width, cap="max_pixels",
                                limit=max_pixels)
            if max_steps is not None and req.steps > max_steps:
                raise PlanLimit(f"`steps` {req.steps} exceeds the {who} cap of {max_steps} steps.", field="steps",
                                value=req.steps, cap="max_steps", limit=max_steps)
        if plan.allowed_models is not None and req.model not in plan.allowed_models:
            raise PlanLimit(f"`model` {req.model!r} is not included in plan {plan.name} (it allows: "
                            f"{', '.join(plan.allowed_models) or 'none'}).", field="model", value=req.model,
                            cap="allowed_models")

    @staticmethod
    def _rates(s: Session, org: Organisation, plan: PlanView, key: ApiKey | None, req: PriceRequest,
               now: datetime) -> None:
        def active(*where) -> int:
            return int(s.scalar(select(func.count()).select_from(Job).where(Job.state.in_(ACTIVE), *where)))

        def recent(*where) -> tuple[int, datetime | None]:
            row = s.execute(select(func.count(), func.min(Job.created_at)).where(
                Job.created_at > now - timedelta(seconds=60), *where)).one()
            return int(row[0]), row[1]

        limits = [("plan " + plan.name, plan.concurrent_jobs, plan.rpm, Job.org_id == org.id)]
        if key is not None:
            limits.append(("API key", key.concurrent_jobs, key.rpm, Job.api_key_id == key.id))
        for who, concurrent, rpm, where in limits:
            if concurrent is not None:
                n = active(where)
                if n >= concurrent:
                    raise RateLimited(f"the {who} allows {concurrent} concurrent job(s) and {n} are queued or "
                                      "running; retry when one finishes.", field="concurrent_jobs", value=n,
                                      retry_after=5, limit=concurrent)
            if rpm is not None:
                n, oldest = recent(where)
                if n >= rpm:
                    wait = 60 - (now - oldest).total_seconds() if oldest else 60
                    raise RateLimited(f"the {who} allows {rpm} generation requests per minute; retry in "
                                      f"{max(1, int(wait) + 1)} s.", field="rpm", value=n,
                                      retry_after=max(1, int(wait) + 1), limit=rpm)
        if plan.daily_images is not None:
            day, tomorrow = period_bounds("day", None, now)
            made = 0
            for params in s.scalars(select(Job.params).where(
                    Job.org_id == org.id, Job.created_at >= day,
                    Job.state.not_in((JobState.failed, JobState.canceled)))):
                made += JobSpec.from_params(params).images
            if made + req.images > plan.daily_images:
                raise QuotaExceeded(
                    f"plan {plan.name} includes {plan.daily_images} images a day and {made} were made today; the "
                    f"quota resets at {tomorrow.isoformat()} (upgrade to Professional for no daily quota).",
                    field="batch_size", value=req.images, retry_after=int((tomorrow - now).total_seconds()) + 1,
                    limit=plan.daily_images, used=made)

    def _key_cap(self, s: Session, key: ApiKey | None, price: int, now: datetime) -> None:
        if key is None or key.credit_cap_mc is None:
            return
        start, end = period_bounds(key.cap_period, key.created_at, now)
        spent = 0
        for h in s.scalars(select(CreditHold).where(CreditHold.api_key_id == key.id, CreditHold.created_at >= start,
                                                    CreditHold.state.in_(("held", "captured")))):
            spent += h.amount_mc if h.state == "held" else h.captured_mc
        if spent + price > key.credit_cap_mc:
            raise KeyCapReached(
                f"this API key may spend {fmt_credits(key.credit_cap_mc)} credits per {key.cap_period} and has "
                f"spent or reserved {fmt_credits(spent)}; this request costs {fmt_credits(price)}. The cap resets "
                f"at {end.isoformat()}.", field="credits", value=price, price_mc=price,
                balance_mc=max(0, key.credit_cap_mc - spent), price=fmt_credits(price),
                balance=fmt_credits(max(0, key.credit_cap_mc - spent)), top_up="ask an admin to raise the key's cap")

    # ------------------------------------------------------------------------------------------
    # Admission and settlement
    # ------------------------------------------------------------------------------------------

    def admit_in(self, s: Session, job: Job, payer: Payer, req: PriceRequest, terms: dict[str, Any] | None = None,
                 now: datetime | None = None) -> int:
        """Check limits, price, reserve; stamps the job with priority, price and usage terms. Returns the price."""
        now = now or utcnow()
        org = lock_org(s, payer.org_id)
        plan = get_plan(s, org.plan_id)
        key = s.get(ApiKey, payer.key_id) if payer.key_id else None
        price = self._limits(s, org, plan, key, req, now)
        self.ledger.reserve_in(s, payer.org_id, job.id, price, api_key_id=payer.key_id, now=now)
        job.priority = plan.priority
        job.params = {**job.params, "price_mc": price, "plan": plan.id,
                      "terms": {**(terms or {}), "commercial_use": plan.commercial}}
        return price

    def settle_in(self, s: Session, job: Job) -> None:
        """Capture what a succeeded job used (its price × images made / asked), release the rest."""
        used = 0
        if job.state == JobState.succeeded:
            hold = s.get(CreditHold, job.id)
            if hold is None:
                return
            asked = job.spec.images
            made = len((job.result or {}).get("images", [])) or asked
            used = -(-hold.amount_mc * min(made, asked) // asked)
        self.ledger.settle_in(s, job.id, used)

    def precheck(self, payer: Payer, req: PriceRequest, now: datetime | None = None) -> None:
        """Raise what admission would refuse for now (caps, rates, the key's cap, credits); writes nothing.

        Admission calls it before any costly validation (tokeniser, image decoding), so a refused request
        costs the server a few reads; `admit_in` checks again, atomically, inside the enqueue transaction.
        """
        now = now or utcnow()
        with self.db.session() as s:
            org = s.get(Organisation, payer.org_id)
            plan = get_plan(s, org.plan_id)
            key = s.get(ApiKey, payer.key_id) if payer.key_id else None
            price = self._limits(s, org, plan, key, req, now)
        available = self.ledger.balance(payer.org_id, now)["available_mc"]
        if price > available:
            raise insufficient(price, available)

    def _limits(self, s: Session, org: Organisation, plan, key: ApiKey | None, req: PriceRequest,
                now: datetime) -> int:
        """The plan's and the key's caps and rates for `req`; returns its price (raises what refuses it)."""
        self._caps(plan, key, req)
        self._rates(s, org, plan, key, req, now)
        price = self.pricing.price_mc(req)
        self._key_cap(s, key, price, now)
        return price

    def quote(self, payer: Payer, req: PriceRequest, now: datetime | None = None) -> dict[str, Any]:
        """The price of a request and whether it would be admitted now; writes nothing."""
        now = now or utcnow()
        price = self.pricing.price_mc(req)
        balance = self.ledger.balance(payer.org_id, now)
        problems: list[dict[str, Any]] = []
        with self.db.session() as s:
            org = s.get(Organisation, payer.org_id)
            plan = get_plan(s, org.plan_id)
            key = s.get(ApiKey, payer.key_id) if payer.key_id else None
            for check in (lambda: self._caps(plan, key, req), lambda: self._rates(s, org, plan, key, req, now),
                          lambda: self._key_cap(s, key, price, now)):
                try:
                    check()
                except (Forbidden, TooManyRequests, PaymentRequired) as e:
                    problems.append({"code": e.code, "message": e.message, "field": e.field})
        if price > balance["available_mc"]:
            problems.append({"code": "insufficient_credits", "field": "credits",
                             "message": f"costs {fmt_credits(price)} credits, {balance['available']} available; "
                                        f"{TOP_UP}."})
        return {"price_mc": price, "price": fmt_credits(price), "per_image_mc": self.pricing.per_image_mc(req),
                "images": req.images, "cost_class": req.cost_class, "steps_billed": req.steps_run,
                "balance_mc": balance["available_mc"], "balance": balance["available"], "plan": plan.id,
                "commercial_use": plan.commercial, "admissible": not problems, "problems": problems}
