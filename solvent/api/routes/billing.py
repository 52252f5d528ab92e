"""Billing API: balance, statement (JSON or CSV), grants, plans, the Stripe webhook, and operator admin."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from ...accounts import Principal, record
from ...billing import list_plans, set_plan
from ...billing.credits import statement_csv
from ...billing.payments import handle, verify
from ...billing.plans import CREDIT_PACKS, EDITABLE, set_org_plan
from ...errors import NotFound
from ...money import credits_to_mc
from ...storage.db import utcnow
from ...storage.models import CreditHold, Image
from ..deps import PrincipalDep, ServicesDep
from ..schemas import UtcDatetime

router = APIRouter(prefix="/api", tags=["billing"])



def _org(principal: Principal, org_id: str | None) -> str:
    """The caller's own organisation, or (operator keys only) any organisation."""
    if org_id is None or org_id == principal.org_id:
        return principal.org_id
    principal.require("operator")
    return org_id


@router.get("/billing/balance", summary="Credits available now, by source, and credits held for running jobs")
def balance(services: ServicesDep, principal: PrincipalDep, org: str | None = None) -> dict:
    principal.require("read")
    return services.billing.ledger.balance(_org(principal, org))


@router.get("/billing/statement", summary="Every credit transaction with its legs (`format=csv` for a spreadsheet)")
def statement(services: ServicesDep, principal: PrincipalDep, org: str | None = None,
              since: UtcDatetime | None = None,
              format: Annotated[str, Query(pattern="^(json|csv)$")] = "json") -> Any:
    principal.require("read")
    rows = services.billing.ledger.statement(_org(principal, org), since)
    if format == "csv":
        return Response(statement_csv(rows), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="statement.csv"'})
    return {"transactions": rows}


@router.get("/billing/usage", summary="Credits spent and images made per UTC day (for the usage chart)")
def usage(services: ServicesDep, principal: PrincipalDep, days: Annotated[int, Query(ge=1, le=366)] = 30,
          org: str | None = None) -> dict:
    principal.require("read")
    org_id = _org(principal, org)
    end = utcnow()
    start = (end - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    out = {(start + timedelta(days=i)).strftime("%Y-%m-%d"): {"credits_mc": 0, "images": 0} for i in range(days)}
    with services.db.session() as s:
        for at, mc in s.execute(select(CreditHold.settled_at, CreditHold.captured_mc).where(
                CreditHold.org_id == org_id, CreditHold.state == "captured", CreditHold.settled_at >= start)):
            out.setdefault(at.strftime("%Y-%m-%d"), {"credits_mc": 0, "images": 0})["credits_mc"] += mc
        for (at,) in s.execute(select(Image.created_at).where(Image.org_id == org_id, Image.created_at >= start)):
            out.setdefault(at.strftime("%Y-%m-%d"), {"credits_mc": 0, "images": 0})["images"] += 1
    return {"days": [{"day": k, **v} for k, v in sorted(out.items())]}


@router.get("/billing/grants", summary="Compute grants of the organisation")
def grants(services: ServicesDep, principal: PrincipalDep, org: str | None = None) -> dict:
    principal.require("read")
    return {"grants": services.billing.ledger.grants(_org(principal, org))}


@router.get("/billing/plans", summary="Plans and credit packs on offer")
def plans(services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("read")
    return {"plans": [p.to_dict() for p in list_plans(services.db)], "credit_packs": CREDIT_PACKS,
            "pricing": {"classes": services.billing.pricing.table(), "min_mc": services.billing.pricing.min_mc}}


@router.post("/billing/stripe/webhook", summary="Stripe events (signed): purchases, paid periods, plan changes")
async def stripe_webhook(request: Request, services: ServicesDep) -> dict:
    secret = services.settings.stripe_webhook_secret
    if not secret:
        raise NotFound("Stripe is not configured on this server (set SOLVENT_STRIPE_WEBHOOK_SECRET).",
                       field="stripe")
    payload = await request.body()
    event = verify(payload, request.headers.get("stripe-signature"), secret,
                   services.settings.stripe_tolerance_seconds)
    return await asyncio.to_thread(handle, services.billing, event, services.settings.default_plan)


# ----------------------------------------------------------------------------------------------
# Operator administration
# ----------------------------------------------------------------------------------------------


class CreditsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credits: int = Field(..., ge=-10**12, le=10**12, description="whole credits (adjustments may be negative)")
    memo: str = Field("", max_length=500)
    idempotency_key: str = Field(..., min_length=1, max_length=150)


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credits: int | None = Field(None, gt=0, le=10**12)
    gpu_hours: float | None = Field(None, gt=0, le=10**7, description="GPU time, converted at the operator's rate")
    purpose: str = Field(..., min_length=1, max_length=500)
    starts_at: UtcDatetime | None = None
    expires_at: UtcDatetime | None = None
    daily_cap_credits: int | None = Field(None, gt=0, le=10**12)
    idempotency_key: str | None = Field(None, max_length=150)


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    price_micros: int | None = None
    period: str | None = None
    included_mc: int | None = None
    daily_images: int | None = None
    commercial: bool | None = None
    priority: int | None = None
    concurrent_jobs: int | None = None
    rpm: int | None = None
    max_pixels: int | None = None
    max_steps: int | None = None
    allowed_models: list[str] | None = None


@router.post("/admin/orgs/{org_id}/credits/adjust", tags=["admin"], summary="Add (or remove) paid credits")
def admin_adjust(org_id: str, body: CreditsIn, services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("operator")
    txn, created = services.billing.ledger.adjust(org_id, credits_to_mc(body.credits), f"admin:{org_id}:{body.idempotency_key}",
                                                  body.memo, actor=principal.actor)
    if created:
        record(services.db, principal.actor, "credits.adjusted", org_id, txn.id, credits=body.credits)
    return {"txn_id": txn.id, "created": created, "balance": services.billing.ledger.balance(org_id)}


@router.post("/admin/orgs/{org_id}/grants", tags=["admin"], summary="Grant compute (credits) to an organisation")
def admin_grant(org_id: str, body: GrantIn, services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("operator")
    g = services.billing.ledger.grant(
        org_id, credits_to_mc(body.credits) if body.credits else None, gpu_hours=body.gpu_hours, purpose=body.purpose, starts_at=body.starts_at, expires_at=body.expires_at,
        daily_cap_mc=credits_to_mc(body.daily_cap_credits) if body.daily_cap_credits else None,
        key=f"admin-grant:{org_id}:{body.idempotency_key}" if body.idempotency_key else None, actor=principal.actor)
    record(services.db, principal.actor, "grant.created", org_id, g.id, credits=body.credits, purpose=body.purpose)
    return {"grant_id": g.id, "balance": services.billing.ledger.balance(org_id)}


@router.post("/admin/orgs/{org_id}/grants/{grant_id}/revoke", tags=["admin"], summary="Revoke a grant")
def admin_revoke_grant(org_id: str, grant_id: str, services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("operator")
    g = services.billing.ledger.revoke_grant(org_id, grant_id, actor=principal.actor)
    record(services.db, principal.actor, "grant.revoked", org_id, grant_id)
    return {"grant_id": g.id, "revoked_at": g.revoked_at}


@router.post("/admin/orgs/{org_id}/plan", tags=["admin"], summary="Move an organisation to a plan")
def admin_set_org_plan(org_id: str, plan: Annotated[str, Query()], services: ServicesDep,
                       principal: PrincipalDep) -> dict:
    principal.require("operator")
    out = set_org_plan(services.db, org_id, plan)
    record(services.db, principal.actor, "plan.changed", org_id, plan, previous=out["previous"])
    return out


@router.put("/admin/plans/{plan_id}", tags=["admin"], summary="Create or change a plan")
def admin_put_plan(plan_id: str, body: PlanIn, services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("operator")
    fields = {k: v for k, v in body.model_dump(exclude_unset=True).items() if k in EDITABLE}
    out = set_plan(services.db, plan_id, create=True, **fields).to_dict()
    record(services.db, principal.actor, "plan.edited", None, plan_id, **fields)
    return out


@router.get("/admin/given-away", tags=["admin"], summary="Credits given away: free tier and each grant")
def admin_given_away(services: ServicesDep, principal: PrincipalDep, org: str | None = None) -> dict:
    principal.require("operator")
    return {"given_away_mc": services.billing.ledger.given_away(org)}


@router.get("/admin/orgs", tags=["admin"], summary="Organisations with plan and balance")
def admin_orgs(services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("operator")
    from sqlalchemy import select

    from ...storage.models import Organisation

    with services.db.session() as s:
        orgs = s.scalars(select(Organisation).order_by(Organisation.created_at)).all()
    return {"orgs": [{"id": o.id, "name": o.name, "plan": o.plan_id, "created_at": o.created_at,
                      "balance": services.billing.ledger.balance(o.id)} for o in orgs]}


@router.get("/admin/users", tags=["admin"], summary="Users and their memberships")
def admin_users(services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("operator")
    from sqlalchemy import select

    from ...storage.models import Membership, User

    with services.db.session() as s:
        users = s.scalars(select(User).order_by(User.created_at)).all()
        ms = s.scalars(select(Membership)).all()
        return {"users": [{"id": u.id, "email": u.email, "name": u.name, "operator": u.operator,
                           "created_at": u.created_at, "last_login_at": u.last_login_at,
                           "locked": u.locked_until is not None,
                           "orgs": [{"org_id": m.org_id, "role": m.role} for m in ms if m.user_id == u.id]}
                          for u in users]}


@router.get("/admin/orgs/{org_id}/statement", tags=["admin"], summary="An organisation's ledger statement")
def admin_statement(org_id: str, services: ServicesDep, principal: PrincipalDep,
                    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json") -> Any:
    principal.require("operator")
    return statement(services, principal, org=org_id, since=None, format=format)
