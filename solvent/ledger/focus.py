"""Real bills: import FOCUS 1.x cost-and-usage files, reconcile them with the meter, export our own usage.

Import reads a CSV or Parquet export (AWS Data Exports, Azure Cost Management, Google Cloud)
with DuckDB under a memory limit (it spills to disk), checks it, and stores its cost summed per
provider, resource, UTC day, charge category and commitment status. Nothing is stored unless the
whole file is good; the file's sha256 makes a second import of it a no-op, and a file whose
charge periods overlap an earlier import for the same provider is refused.

Reconciliation compares, per provider, what the ledger metered (workers' uptime priced at their
rates) with BilledCost (cash) and EffectiveCost (amortised, after discounts), allocates the
effective usage cost to jobs by device time (the rest of the uptime is idle), and reports the
difference: spend no worker metered, and commitments left unused (waste).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..billing.plans import period_bounds
from ..errors import ValidationFailed
from ..money import MICROS_PER_MC, fmt_usd
from ..storage.db import Database
from ..storage.models import BillImport, BillLine, JobCost, Worker
from .costing import uptime_cost

MANDATORY = ("BilledCost", "EffectiveCost", "ListCost", "BillingCurrency", "ChargePeriodStart", "ChargePeriodEnd",
             "ChargeCategory", "ResourceId", "ServiceName")
PROVIDER_COLUMNS = ("ProviderName", "ServiceProviderName")  # FOCUS 1.0–1.2; 1.3
PROVIDERS = {"aws": "aws", "amazon web services": "aws", "amazon": "aws", "microsoft": "azure", "azure": "azure",
             "microsoft azure": "azure", "google cloud": "gcp", "google": "gcp", "gcp": "gcp",
             "google cloud platform": "gcp", "coreweave": "coreweave", "lambda": "lambda", "lambda labs": "lambda"}
BATCH = 10_000


class FocusProblems(ValidationFailed):
    """The file cannot be imported; `problems` lists every reason at once."""

    code = "focus_rejected"


def provider_id(name: str) -> str:
    return PROVIDERS.get((name or "").strip().lower(), (name or "").strip().lower())


def _ms(v: int | None) -> datetime | None:
    return None if v is None else datetime.fromtimestamp(v / 1000, UTC)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ImportResult:
    import_id: str
    created: bool
    rows: int
    lines: int
    providers: list[str]
    period_start: datetime
    period_end: datetime
    billed_micros: int
    effective_micros: int
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["period_start"], d["period_end"] = self.period_start.isoformat(), self.period_end.isoformat()
        return d


def import_focus(db: Database, path: str | Path, memory_limit: str = "256MB") -> ImportResult:
    import duckdb

    path = Path(path)
    if not path.is_file():
        raise ValidationFailed(f"`file` {str(path)!r} does not exist.", field="file", value=str(path))
    digest = sha256_of(path)
    with db.session() as s:
        done = s.scalar(select(BillImport).where(BillImport.sha256 == digest))
        if done is not None:
            return ImportResult(done.id, False, done.rows, 0, done.providers, done.period_start, done.period_end,
                                done.billed_micros, done.effective_micros,
                                f"already imported as {done.id} on {done.imported_at:%Y-%m-%d %H:%M} UTC; "
                                "nothing imported again")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    with tempfile.TemporaryDirectory(prefix="solvent-focus-") as spill:
        try:  # settings and the file name go in as values, never spliced into SQL
            con = duckdb.connect(config={"memory_limit": str(memory_limit), "temp_directory": spill})
        except duckdb.Error as e:
            raise ValidationFailed(f"`memory_limit` {memory_limit!r} is not a DuckDB memory size: {e}",
                                   field="memory_limit", value=str(memory_limit)) from None
        try:
            con.execute("SET TimeZone='UTC'")  # a constant, nothing interpolated
            try:
                rel = (con.read_parquet(str(path)) if parquet else
                       con.read_csv(str(path), header=True, all_varchar=True, compression="auto"))
                rel.create_view("focus")
                columns = [r[0] for r in con.execute("DESCRIBE focus").fetchall()]
            except duckdb.Error as e:
                raise FocusProblems(f"`file` {path.name!r} is not a readable FOCUS CSV or Parquet file: {e}",
                                    field="file", value=path.name, problems=[str(e)]) from None
            return _import(db, con, path, digest, columns)
        finally:
            con.close()


def _import(db: Database, con, path: Path, digest: str, columns: list[str]) -> ImportResult:
    problems = [f"missing mandatory column {c}" for c in MANDATORY if c not in columns]
    pcol = next((c for c in PROVIDER_COLUMNS if c in columns), None)
    if pcol is None:
        problems.append("missing mandatory column ProviderName (FOCUS 1.0–1.2) or ServiceProviderName (1.3)")
    if problems:
        raise FocusProblems(f"`file` {path.name!r} cannot be imported: " + "; ".join(problems) + ".", field="file",
                            value=path.name, problems=problems)
    status_col = "CommitmentDiscountStatus" if "CommitmentDiscountStatus" in columns else "NULL"
    con.execute(f"""CREATE TEMP VIEW clean AS SELECT
        "{pcol}" AS provider, COALESCE(CAST(ResourceId AS VARCHAR), '') AS resource,
        TRY_CAST(ChargePeriodStart AS TIMESTAMPTZ) AS t0, TRY_CAST(ChargePeriodEnd AS TIMESTAMPTZ) AS t1,
        CAST(ChargePeriodStart AS VARCHAR) AS raw_t0,
        COALESCE(CAST(ChargeCategory AS VARCHAR), '') AS category,
        COALESCE(CAST({status_col} AS VARCHAR), '') AS status, CAST(BillingCurrency AS VARCHAR) AS currency,
        TRY_CAST(BilledCost AS DECIMAL(38, 10)) AS billed, TRY_CAST(EffectiveCost AS DECIMAL(38, 10)) AS effective,
        TRY_CAST(ListCost AS DECIMAL(38, 10)) AS list, BilledCost AS raw_billed, EffectiveCost AS raw_effective
        FROM focus""")
    n = con.execute("SELECT count(*) FROM clean").fetchone()[0]
    if n == 0:
        problems.append("the file has no rows")
    currencies = [r[0] for r in con.execute("SELECT DISTINCT currency FROM clean ORDER BY 1").fetchall()]
    if len(currencies) > 1:
        problems.append(f"mixed billing currencies {', '.join(str(c) for c in currencies)} (import one currency "
                        "per file)")
    bad_time = con.execute("SELECT count(*), min(raw_t0) FROM clean WHERE t0 IS NULL OR t1 IS NULL OR t1 <= t0"
                           ).fetchone()
    if bad_time[0]:
        problems.append(f"{bad_time[0]} row(s) with a missing or empty charge period (e.g. start {bad_time[1]!r})")
    bad_cost = con.execute("SELECT count(*), min(CAST(raw_billed AS VARCHAR)) FROM clean WHERE "
                           "(billed IS NULL AND raw_billed IS NOT NULL) OR (effective IS NULL AND raw_effective IS NOT "
                           "NULL)").fetchone()
    if bad_cost[0]:
        problems.append(f"{bad_cost[0]} row(s) with a cost that is not a number (e.g. {bad_cost[1]!r})")
    spans = {provider_id(p): (_ms(a), _ms(b)) for p, a, b in con.execute(
        "SELECT provider, epoch_ms(min(t0)), epoch_ms(max(t1)) FROM clean WHERE t0 IS NOT NULL AND t1 IS NOT NULL "
        "GROUP BY provider").fetchall()}
    with db.session() as s:
        for prev in s.scalars(select(BillImport)):
            for prov, (a, b) in spans.items():
                if prov in prev.providers and a < prev.period_end and prev.period_start < b:
                    problems.append(f"charge periods of {prov} ({a:%Y-%m-%d %H:%M} – {b:%Y-%m-%d %H:%M}) overlap "
                                    f"import {prev.id} ({prev.period_start:%Y-%m-%d} – {prev.period_end:%Y-%m-%d}) "
                                    f"from {prev.filename!r}")
    if problems:
        raise FocusProblems(f"`file` {path.name!r} cannot be imported: " + "; ".join(problems) + ".", field="file",
                            value=path.name, problems=problems)
    cur = con.execute("""SELECT provider, resource, epoch_ms(date_trunc('day', t0)), category, status, count(*),
        CAST(round(sum(COALESCE(billed, 0)) * 1000000) AS BIGINT),
        CAST(round(sum(COALESCE(effective, 0)) * 1000000) AS BIGINT),
        CAST(round(sum(COALESCE(list, 0)) * 1000000) AS BIGINT)
        FROM clean GROUP BY ALL ORDER BY 1, 2, 3""")
    start = min(a for a, _ in spans.values())
    end = max(b for _, b in spans.values())
    with db.session() as s:  # one transaction: the whole file or nothing
        imp = BillImport(sha256=digest, filename=path.name, providers=sorted(spans), period_start=start,
                         period_end=end, rows=n, currency=currencies[0] if currencies else "USD")
        s.add(imp)
        s.flush()
        lines = billed = effective = 0
        while batch := cur.fetchmany(BATCH):
            s.add_all(BillLine(import_id=imp.id, provider=provider_id(p), resource_id=r, day=_ms(d),
                               charge_category=c, commitment_status=st, rows=k, billed_micros=bm,
                               effective_micros=em, list_micros=lm)
                      for p, r, d, c, st, k, bm, em, lm in batch)
            lines += len(batch)
            billed += sum(x[6] for x in batch)
            effective += sum(x[7] for x in batch)
        imp.billed_micros, imp.effective_micros = billed, effective
        return ImportResult(imp.id, True, n, lines, imp.providers, start, end, billed, effective,
                            f"imported {n} rows as {lines} daily lines")


@dataclass
class Reconciled:
    provider: str
    billed_micros: int = 0
    effective_micros: int = 0
    usage_effective_micros: int = 0  # ChargeCategory Usage
    unused_commitment_micros: int = 0  # waste: reserved and not used
    metered_micros: int = 0  # the ledger: workers' uptime × their rates
    busy_ms: int = 0
    uptime_ms: int = 0
    allocated_to_jobs_micros: int = 0
    idle_micros: int = 0
    resources: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def unmetered_micros(self) -> int:
        """Spend the meter did not see (storage, network, machines not running a worker) or priced differently."""
        return self.effective_micros - self.metered_micros

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["unmetered_micros"] = self.unmetered_micros
        return d


def reconcile(db: Database, start: datetime, end: datetime) -> tuple[list[Reconciled], dict[str, int]]:
    """Per provider: the bill against the meter; and the effective usage cost allocated to each job."""
    out: dict[str, Reconciled] = {}
    allocation: dict[str, int] = {}
    with db.session() as s:
        for ln in s.scalars(select(BillLine).where(BillLine.day >= start, BillLine.day < end)):
            r = out.setdefault(ln.provider, Reconciled(ln.provider))
            r.billed_micros += ln.billed_micros
            r.effective_micros += ln.effective_micros
            if ln.charge_category.lower() == "usage":
                r.usage_effective_micros += ln.effective_micros
            if ln.commitment_status.lower() == "unused":
                r.unused_commitment_micros += ln.effective_micros
            res = r.resources.setdefault(ln.resource_id, {"billed_micros": 0, "effective_micros": 0})
            res["billed_micros"] += ln.billed_micros
            res["effective_micros"] += ln.effective_micros
        for w in s.scalars(select(Worker)):
            r = out.setdefault(w.provider, Reconciled(w.provider))
            ms, cost = uptime_cost(s, w, start, end)
            r.uptime_ms += ms
            r.metered_micros += cost
        jobs = list(s.scalars(select(JobCost).where(JobCost.finished_at >= start, JobCost.finished_at < end)))
        for j in jobs:
            if j.provider in out:
                out[j.provider].busy_ms += j.device_ms
        for j in jobs:  # the bill's usage cost spread over uptime: each job its device time's share
            r = out.get(j.provider)
            if r is not None and r.uptime_ms:
                share = r.usage_effective_micros * min(j.device_ms, r.uptime_ms) // r.uptime_ms
                allocation[j.job_id] = share
                r.allocated_to_jobs_micros += share
        for r in out.values():
            r.idle_micros = r.usage_effective_micros - r.allocated_to_jobs_micros if r.uptime_ms else 0
    return sorted(out.values(), key=lambda r: r.provider), allocation


def reconcile_text(rows: list[Reconciled]) -> str:
    head = (f"{'provider':<10} {'billed':>12} {'effective':>12} {'metered':>12} {'unmetered':>12} "
            f"{'to jobs':>11} {'idle':>11} {'unused commit':>14}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.provider[:10]:<10} {fmt_usd(r.billed_micros):>12} {fmt_usd(r.effective_micros):>12} "
                     f"{fmt_usd(r.metered_micros):>12} {fmt_usd(r.unmetered_micros):>12} "
                     f"{fmt_usd(r.allocated_to_jobs_micros):>11} {fmt_usd(r.idle_micros):>11} "
                     f"{fmt_usd(r.unused_commitment_micros):>14}")
    return "\n".join(lines)


EXPORT_COLUMNS = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "BillingCurrency", "PricingCurrency",
                  "PricingCurrencyEffectiveCost", "PricingQuantity", "PricingUnit", "ConsumedQuantity",
                  "ConsumedUnit", "ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart", "BillingPeriodEnd",
                  "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency", "ProviderName",
                  "PublisherName", "InvoiceIssuerName", "ServiceName", "ServiceCategory", "ResourceId",
                  "ResourceType", "SkuId", "SubAccountId", "Tags")


def export_focus(db: Database, start: datetime, end: datetime) -> str:
    """Solvent's own usage as FOCUS rows: one per priced job, billed in USD, priced in credits."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(EXPORT_COLUMNS)
    with db.session() as s:
        for j in s.scalars(select(JobCost).where(JobCost.finished_at >= start, JobCost.finished_at < end)
                           .order_by(JobCost.finished_at)):
            if not j.captured_mc:
                continue
            t1 = j.finished_at
            t0 = t1 - timedelta(milliseconds=j.device_ms)
            bstart, bend = period_bounds("month", None, t1)  # the billing period is the calendar month
            usd = f"{j.revenue_micros / 1e6:.6f}"
            w.writerow([usd, usd, f"{j.captured_mc * MICROS_PER_MC / 1e6:.6f}", usd, "USD", "credits",
                        f"{j.captured_mc / 1000:.3f}", j.images, "Images", f"{j.device_ms / 1000:.3f}", "GPU-seconds",
                        _iso(t0), _iso(t1), _iso(bstart), _iso(bend), "Usage", "", f"{j.model} on {j.provider}",
                        "Usage-Based", "Solvent", "Solvent", "Solvent", "Solvent image generation", "AI and Machine Learning",
                        j.job_id, "Image generation job", j.model, j.org_id,
                        json.dumps({"paid_by": j.paid_by, "plan": j.plan_id})])
    return buf.getvalue()


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
