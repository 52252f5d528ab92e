"""FOCUS bills on real SQLite and PostgreSQL: files built from the spec's columns (CSV and Parquet,
FOCUS 1.0–1.2 and 1.3 provider columns), the refusals (missing columns, mixed currencies, bad
periods, overlaps, re-imports), reconciliation against the meter, and our own usage exported."""

from __future__ import annotations

import csv
from datetime import timedelta

import duckdb
import pytest
from sqlalchemy import func, select

from solvent.accounts import create_org
from solvent.ledger.focus import FocusProblems, export_focus, import_focus, reconcile
from solvent.storage.models import BillLine
from tests.ledger.test_costing import T0, Fleet

H = timedelta(hours=1)
COLUMNS = ["BilledCost", "EffectiveCost", "ListCost", "BillingCurrency", "ChargePeriodStart", "ChargePeriodEnd",
           "ChargeCategory", "ResourceId", "ServiceName", "ProviderName", "CommitmentDiscountStatus"]


def row(start, hours=1, billed="1.006", effective="0.9", listed="1.006", currency="USD", category="Usage",
        resource="i-aws1", provider="AWS", status=""):
    end = start + hours * H
    return [billed, effective, listed, currency, start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            end.strftime("%Y-%m-%dT%H:%M:%SZ"), category, resource, "Amazon Elastic Compute Cloud", provider, status]


def write(path, rows, columns=COLUMNS):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(rows)
    return path


BILL = [row(T0), row(T0 + H),  # the GPU instance, two hours at $1.006 billed, $0.90 effective
        row(T0, 24, billed="0.10", effective="0.10", listed="0.10", resource="vol-1"),  # storage: unmetered
        row(T0, 24, billed="0", effective="0.50", listed="0.50", resource="ri-1", status="Unused")]  # waste


def test_import_reconcile_and_allocate(db, tmp_path):
    fleet = Fleet(db, tmp_path)
    org = create_org(db, "payg", plan_id="payg").id
    fleet.billing.ledger.purchase(org, 1_000_000, "buy")
    job = fleet.job(org, fleet.aws, 1.8)
    fleet.at(job, T0 + H / 2)
    fleet.up(fleet.aws, T0, T0 + 2 * H)  # metered: 2 h × $1.006

    r = import_focus(db, write(tmp_path / "aws-2026-01.csv", BILL))
    assert (r.created, r.rows, r.lines, r.providers) == (True, 4, 3, ["aws"])
    assert (r.billed_micros, r.effective_micros) == (2_112_000, 2_400_000)
    again = import_focus(db, tmp_path / "aws-2026-01.csv")
    assert not again.created and again.import_id == r.import_id and "already imported" in again.message
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(BillLine)) == 3

    rows, alloc = reconcile(db, T0, T0 + timedelta(days=1))
    by = {r.provider: r for r in rows}
    assert set(by) == {"aws", "gcp", "local"} and by["gcp"].metered_micros == by["gcp"].billed_micros == 0
    aws = by["aws"]
    assert (aws.provider, aws.billed_micros, aws.effective_micros, aws.metered_micros) == (
        "aws", 2_112_000, 2_400_000, 2_012_000)
    assert (aws.unmetered_micros, aws.unused_commitment_micros) == (388_000, 500_000)
    assert alloc == {job: 2_400_000 * 1800 // 7_200_000}  # the job's device time's share of the usage bill
    assert aws.idle_micros == 2_400_000 - 600 and aws.resources["vol-1"]["effective_micros"] == 100_000


def test_refusals_name_every_problem_and_import_nothing(db, tmp_path):
    cols = [c for c in COLUMNS if c not in ("EffectiveCost", "ProviderName")]
    with pytest.raises(FocusProblems) as e:
        import_focus(db, write(tmp_path / "cols.csv", [[v for c, v in zip(COLUMNS, row(T0), strict=True)
                                                        if c in cols]], cols))
    assert any("EffectiveCost" in p for p in e.value.extra["problems"])
    assert any("ProviderName" in p for p in e.value.extra["problems"])

    mixed = [row(T0), row(T0 + H, currency="EUR"), row(T0 + 2 * H, hours=0), row(T0 + 3 * H, billed="lots")]
    with pytest.raises(FocusProblems) as e:
        import_focus(db, write(tmp_path / "mixed.csv", mixed))
    problems = " | ".join(e.value.extra["problems"])
    assert "mixed billing currencies EUR, USD" in problems
    assert "1 row(s) with a missing or empty charge period" in problems
    assert "1 row(s) with a cost that is not a number (e.g. 'lots')" in problems

    import_focus(db, write(tmp_path / "jan.csv", [row(T0)]))
    with pytest.raises(FocusProblems, match="overlap import"):
        import_focus(db, write(tmp_path / "jan-again.csv", [row(T0, billed="2")]))
    import_focus(db, write(tmp_path / "gcp.csv", [row(T0, provider="Google Cloud", resource="g2")]))  # other provider
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(BillLine)) == 2
    with pytest.raises(FocusProblems, match="not a readable"):
        import_focus(db, write(tmp_path / "x.parquet", [row(T0 + 30 * H)]))


def test_parquet_and_focus_1_3_provider_column(db, tmp_path):
    csv_path = write(tmp_path / "src.csv", BILL, [*COLUMNS[:-2], "ServiceProviderName", COLUMNS[-1]])
    parquet = tmp_path / "azure.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * REPLACE (CAST(BilledCost AS DOUBLE) AS BilledCost) FROM read_csv('{csv_path}', "
                f"header=true, all_varchar=true)) TO '{parquet}' (FORMAT parquet)")
    con.close()
    r = import_focus(db, parquet)
    assert (r.created, r.rows, r.billed_micros, r.effective_micros, r.providers) == (True, 4, 2_112_000, 2_400_000,
                                                                                      ["aws"])


def test_export_our_usage_as_focus(db, tmp_path):
    fleet = Fleet(db, tmp_path)
    org = create_org(db, "payg", plan_id="payg").id
    fleet.billing.ledger.purchase(org, 1_000_000, "buy")
    job = fleet.job(org, fleet.gcp, 1.8, images=2)
    fleet.at(job, T0 + H)
    rows = list(csv.DictReader(export_focus(db, T0, T0 + timedelta(days=1)).splitlines()))
    (r,) = rows
    assert (r["ResourceId"], r["BilledCost"], r["PricingCurrency"], r["PricingCurrencyEffectiveCost"]) == (
        job, "0.002000", "credits", "0.200")
    assert (r["ChargePeriodStart"], r["ChargePeriodEnd"], r["PricingQuantity"]) == (
        "2026-01-05T00:59:58Z", "2026-01-05T01:00:00Z", "2")
    assert r["SubAccountId"] == org and r["BillingPeriodStart"] == "2026-01-01T00:00:00Z"
