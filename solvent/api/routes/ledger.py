"""Ledger API (operators): prices, cost and revenue reports (JSON or CSV), finances and runway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ...errors import ValidationFailed
from ...ledger.budgets import create_budget, deactivate, status
from ...ledger.catalog import COMMITMENTS, list_prices, set_price
from ...ledger.reports import BY, report
from ...ledger.runway import from_ledger, set_finances
from ..deps import PrincipalDep, ServicesDep
from ..schemas import UtcDatetime

router = APIRouter(prefix="/api/admin/ledger", tags=["ledger"])


@router.get("/prices", summary="Shipped list prices (source, date) and the operator's price versions")
def prices(services: ServicesDep, principal: PrincipalDep, provider: str | None = None) -> dict:
    principal.require("operator")
    with services.db.session() as s:
        rows = [p.to_dict() for p in list_prices(s) if not provider or p.provider == provider]
    return {"prices": rows}


class PriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str = Field(min_length=1, max_length=64)
    instance_type: str = Field(min_length=1, max_length=100)
    usd_per_hour: str = Field(description="USD per hour for the whole instance, e.g. '21.958'")
    commitment: str = "on_demand"
    gpus: int = Field(1, ge=1, le=1024)
    source: str = "operator"
    effective_from: UtcDatetime | None = None


@router.post("/prices", status_code=201, summary="Add a price version (past costs keep their price)")
def add_price(body: PriceIn, services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("operator")
    if body.commitment not in COMMITMENTS:
        raise ValidationFailed(f"`commitment` must be one of {', '.join(COMMITMENTS)} but is {body.commitment!r}.",
                               field="commitment", value=body.commitment)
    p = set_price(services.db, body.provider, body.instance_type, body.usd_per_hour, commitment=body.commitment,
                  gpus=body.gpus, source=body.source, effective_from=body.effective_from, actor=principal.actor)
    return p.to_dict()


@router.get("/report", summary="Cost, revenue, margin, utilisation, idle cost, giveaways (`format=csv` too)")
def ledger_report(services: ServicesDep, principal: PrincipalDep, by: str = "day", since: UtcDatetime | None = None,
                  until: UtcDatetime | None = None, org: str | None = None, share_idle: bool = False,
                  format: Annotated[str, Query(pattern="^(json|csv)$")] = "json") -> Any:
    principal.require("operator")
    if by not in BY:
        raise ValidationFailed(f"`by` must be one of {', '.join(BY)} but is {by!r}.", field="by", value=by)
    end = _utc(until) or datetime.now(UTC)
    start = _utc(since) or end - timedelta(days=30)
    r = report(services.db, start, end, by, org_id=org, share_idle=share_idle)
    if format == "csv":
        return Response(r.csv(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="ledger-{by}.csv"'})
    return r.to_dict()


class FinancesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cash: str
    payroll: str = "0"
    rent: str = "0"
    other: str = "0"
    committed_cloud: str = "0"


@router.post("/finances", status_code=201, summary="Record cash on hand and monthly fixed costs (USD)")
def finances(body: FinancesIn, services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("operator")
    row = set_finances(services.db, **body.model_dump(), actor=principal.actor)
    return {"as_of": row.as_of.isoformat()}


@router.get("/runway", summary="Gross and net burn and runway from the ledger's recent trend")
def runway(services: ServicesDep, principal: PrincipalDep, days: Annotated[int, Query(ge=1, le=365)] = 30) -> dict:
    principal.require("operator")
    return from_ledger(services.db, days=days).to_dict()


def _utc(t: datetime | None) -> datetime | None:
    return None if t is None else (t if t.tzinfo else t.replace(tzinfo=UTC))


class BudgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: str = Field(description="all, free, plan:<id>, org:<id> or grant:<id>")
    period: str = "month"
    limit_usd: str | None = None
    thresholds: list[int] = Field(default_factory=lambda: [80, 100], description="alert percentages")
    hard: bool = False
    runway_floor_months: str | None = None
    webhook_url: str | None = None
    name: str = ""


@router.get("/budgets", summary="Budgets with this period's spend, reserved estimates and alerts")
def budgets(services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("operator")
    return {"budgets": status(services.db)}


@router.post("/budgets", status_code=201, summary="Create a budget (soft alerts, hard cap, runway floor)")
def create(body: BudgetIn, services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("operator")
    b = create_budget(services.db, body.scope, period=body.period, limit_usd=body.limit_usd,
                      thresholds=body.thresholds, hard=body.hard, runway_floor_months=body.runway_floor_months,
                      webhook_url=body.webhook_url, name=body.name,
                      allow_hosts=services.settings.outbound_allow_hosts)
    return next(x for x in status(services.db) if x["id"] == b.id)


@router.post("/budgets/{budget_id}/disable", summary="Stop a budget (its history stays)")
def disable(budget_id: str, services: ServicesDep, principal: PrincipalDep) -> dict:
    principal.require("operator")
    deactivate(services.db, budget_id)
    return next(x for x in status(services.db) if x["id"] == budget_id)
