"""The compute ledger on real SQLite and PostgreSQL: exact arithmetic on a constructed fleet (two
priced providers and an explicitly priced worker, jobs paid by credits, a plan, the free tier and a
grant, idle stretches, a price change mid-period), the shipped catalog, on-prem amortisation and the
runway of the Stability 2023 worked example."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from solvent.accounts import create_org
from solvent.billing import set_plan
from solvent.billing.admission import Payer
from solvent.billing.pricing import PriceRequest
from solvent.errors import ValidationFailed
from solvent.jobs import QueueLimits
from solvent.jobs.registry import create_worker
from solvent.ledger.catalog import OnPrem, catalog, price_at, set_price, set_worker_rate
from solvent.ledger.costing import cost_of, record_job_cost_in
from solvent.ledger.reports import report
from solvent.ledger.runway import compute, from_ledger, set_finances
from solvent.money import usd_to_micros
from solvent.storage.models import JobCost, WorkerUptime
from tests.harness import make_services

T0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)


class Fleet:
    def __init__(self, db, tmp):
        self.db = db
        # The house as `solvent serve` wires it: settlement captures credits, prices the job, charges budgets.
        self.services = make_services(db, tmp, limits=QueueLimits(max_queued_per_org=1000, max_queued_total=1000))
        self.queue, self.billing = self.services.queue, self.services.billing
        self.aws, _ = create_worker(db, "aws-1", provider="aws", instance_type="g5.xlarge")
        self.gcp, _ = create_worker(db, "gcp-1", provider="gcp", instance_type="g2-standard-4", commitment="1y")
        self.own, _ = create_worker(db, "own-1", provider="local")

    def job(self, org: str, worker, device_seconds: float, images: int = 1, fail: bool = False) -> str:
        req = PriceRequest(model="solvent-tiny", cost_class="tiny", width=64, height=64, steps=20, images=images)
        job, _ = self.queue.enqueue(org, "solvent-tiny", {"prompt": "x", "batch_size": images},
                                 on_insert=lambda s, j: self.billing.admit_in(s, j, Payer(org, None), req))
        leased = self.queue.lease(worker.id)
        assert leased.id == job.id
        if fail:
            self.queue.fail(job.id, worker.id, "boom", "failed on purpose")
        else:
            self.queue.complete(job.id, worker.id, {"images": [{"index": i} for i in range(images)],
                                                    "usage": {"device_seconds": device_seconds, "images": images}})
        return job.id

    def at(self, job_id: str, when: datetime) -> None:
        with self.db.session() as s:
            s.execute(update(JobCost).where(JobCost.job_id == job_id).values(finished_at=when))

    def up(self, worker, start: datetime, end: datetime) -> None:
        with self.db.session() as s:
            s.add(WorkerUptime(worker_id=worker.id, started_at=start, last_seen_at=end))

    def cost(self, job_id: str) -> JobCost:
        with self.db.session() as s:
            return s.get(JobCost, job_id)


@pytest.fixture
def fleet(db, tmp_path):
    return Fleet(db, tmp_path)


def test_catalog_rows_have_a_source_and_a_date_and_exact_prices():
    rows = catalog()
    assert {p.provider for p in rows} >= {"aws", "gcp", "coreweave", "lambda", "azure"}
    assert {p.instance_type for p in rows if p.provider == "aws"} >= {"p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge",
                                                                     "g5.xlarge", "g6.xlarge", "g6e.xlarge"}
    assert {p.instance_type for p in rows if p.provider == "gcp"} >= {"a2-highgpu-1g", "a3-highgpu-8g",
                                                                     "g2-standard-4"}
    assert all(p.source and p.as_of for p in rows)
    p5 = next(p for p in rows if (p.instance_type, p.commitment) == ("p5.48xlarge", "on_demand"))
    assert (p5.micros_per_hour, p5.micros_per_gpu_hour) == (55_040_000, 6_880_000)
    assert {p.commitment for p in rows if p.instance_type == "a3-highgpu-8g"} == {"on_demand", "spot", "1y", "3y"}
    assert usd_to_micros("1.0065") == 1_006_500 and usd_to_micros("$0.0000005") == 1
    for junk in ("abc", "-1", "nan", "1e99"):
        with pytest.raises(ValidationFailed, match="usd_per_hour"):
            usd_to_micros(junk)


def test_onprem_amortisation_is_the_reference_formula():
    # 8 GPUs for $300,000 over 4 years, 10% overhead, 70% busy, 0.7 kW × PUE 1.4 × $0.12/kWh, no colo:
    # 330000 / (4 × 8760 × 8 × 0.7) + 0.7 × 1.4 × 0.12 / 0.7 = 1.681751…+0.168 = 1.849751… $/GPU-h
    assert OnPrem(capex_usd="300000", gpus=8).micros_per_gpu_hour() == 1_849_751
    assert OnPrem(capex_usd="300000", gpus=8, colocation_usd_per_gpu_hour="0.25").micros_per_gpu_hour() == 2_099_751
    with pytest.raises(ValidationFailed, match="utilisation"):
        OnPrem(capex_usd="1", gpus=1, utilisation="1.5").micros_per_gpu_hour()


def test_price_versions_never_rewrite_a_past_cost(fleet, db):
    org = create_org(db, "payg", plan_id="payg").id
    fleet.billing.ledger.purchase(org, 1_000_000, "buy")
    a = fleet.job(org, fleet.aws, 1.8)
    assert fleet.cost(a).cost_micros == 503  # 1.8 s × $1.006/h (catalog, on demand)
    set_price(db, "aws", "g5.xlarge", "1.20", source="negotiated", effective_from=datetime.now(UTC) - timedelta(
        seconds=1))
    b = fleet.job(org, fleet.aws, 1.8)
    assert fleet.cost(b).cost_micros == 600 and fleet.cost(b).rate_source.startswith("aws g5.xlarge on_demand")
    assert fleet.cost(a).cost_micros == 503  # unchanged
    with db.session() as s:
        assert price_at(s, "aws", "g5.xlarge", "on_demand", T0).micros_per_hour == 1_006_000
    with pytest.raises(ValidationFailed, match="commitment"):
        set_price(db, "aws", "g5.xlarge", "1", commitment="forever")


def test_job_cost_revenue_and_giveaways_by_who_paid(fleet, db):
    payg = create_org(db, "payg", plan_id="payg").id
    fleet.billing.ledger.purchase(payg, 1_000_000, "buy")
    pro = create_org(db, "pro", plan_id="professional").id
    free = create_org(db, "free", plan_id="community").id
    granted = create_org(db, "granted", plan_id="payg").id
    grant = fleet.billing.ledger.grant(granted, 50_000, purpose="research")
    set_worker_rate(db, fleet.own.id, "2.50")

    paid = fleet.cost(fleet.job(payg, fleet.gcp, 1.8))
    # the worker pays the 1-year commitment ($0.445/h); list is on demand ($0.707/h); 100 mc at $0.01/credit
    assert (paid.cost_micros, paid.list_cost_micros, paid.revenue_micros, paid.paid_by) == (223, 354, 1000, "paid")
    plan = fleet.cost(fleet.job(pro, fleet.own, 3.6))
    # explicit $2.50/h; plan revenue is the fee amortised over its allowance: $20 × 100 / 1,000,000 mc
    assert (plan.cost_micros, plan.revenue_micros, plan.paid_by, plan.rate_source) == (
        2500, 2000, "plan", "worker rate (declared by the worker)")
    given = fleet.cost(fleet.job(free, fleet.aws, 1.8))
    assert (given.revenue_micros, given.given_away_mc, given.paid_by) == (0, 100, "free")
    g = fleet.cost(fleet.job(granted, fleet.aws, 1.8, images=2))
    assert (g.revenue_micros, g.given_away_mc, g.grant_ids, g.images, g.captured_mc) == (0, 200, [grant.id], 2, 200)
    failed = fleet.cost(fleet.job(payg, fleet.aws, 0, fail=True))
    assert (failed.state, failed.captured_mc, failed.revenue_micros) == ("failed", 0, 0)
    assert record_job_cost_in is not None and cost_of(1, 3_600_000) == 1 and cost_of(1, 1_799_999) == 0


def test_batched_jobs_share_their_device_call_by_work_and_add_up_exactly(fleet, db):
    set_plan(db, "payg", concurrent_jobs=10)  # four jobs in flight at once
    payg = create_org(db, "payg", plan_id="payg").id
    fleet.billing.ledger.purchase(payg, 1_000_000, "buy")
    set_worker_rate(db, fleet.own.id, "1.00")  # 1,000,000 µ$/h: 1000 ms cost 277.8 µ$, so every split must round
    params = {"prompt": "x", "width": 64, "height": 64, "steps": 20}
    req = PriceRequest(model="solvent-tiny", cost_class="tiny", width=64, height=64, steps=20)
    ids = [fleet.queue.enqueue(payg, "solvent-tiny", {**params, "prompt": f"p{i}"},
                               on_insert=lambda s, j: fleet.billing.admit_in(s, j, Payer(payg, None), req))[0].id
           for i in range(4)]
    first = fleet.queue.lease(fleet.own.id)
    batch = [first, *fleet.queue.lease_like(fleet.own.id, first, 2)]  # three jobs in one device call
    assert [j.id for j in batch] == ids[:3]

    def usage(i: int) -> dict:
        return {"device_seconds": 0.333, "images": 1, "batch": {"id": "b1", "requests": 3, "device_ms": 1000,
                                                                 "work_before": i, "work": 1, "total_work": 3}}

    fleet.queue.complete(ids[0], fleet.own.id, {"images": [{"index": 0}], "usage": usage(0)})
    fleet.queue.complete(ids[1], fleet.own.id, {"images": [{"index": 0}], "usage": usage(1)})
    fleet.queue.cancelled(ids[2], fleet.own.id, {**usage(2), "images": 0})  # cancelled while the batch ran on
    rows = [fleet.cost(i) for i in ids[:3]]
    # Time: 333 + 333 + 334 = 1000 ms. Cost: the rounded running total 93, 185, 278 µ$ gives 93 + 92 + 93 = 278,
    # exactly the call's cost at the rate; a cancelled member pays its share and brings no revenue.
    assert [r.device_ms for r in rows] == [333, 333, 334]
    assert [r.cost_micros for r in rows] == [93, 92, 93] and sum(r.cost_micros for r in rows) == cost_of(1000, 10**6)
    assert [r.batch_id for r in rows] == ["b1", "b1", "b1"]
    assert (rows[2].state, rows[2].images, rows[2].revenue_micros) == ("canceled", 0, 0)
    assert fleet.queue.lease(fleet.own.id).id == ids[3]  # the fourth job runs alone: its own time at the rate
    fleet.queue.complete(ids[3], fleet.own.id, {"images": [{"index": 0}], "usage": {"device_seconds": 0.5,
                                                                                    "images": 1}})
    alone = fleet.cost(ids[3])
    assert (alone.device_ms, alone.cost_micros, alone.batch_id) == (500, 139, "")
    total = report(db, by="worker", start=datetime.now(UTC) - H, end=datetime.now(UTC) + H).total
    assert (total.jobs, total.images, total.device_ms, total.cost_micros) == (4, 3, 1500, 278 + 139)


def test_day_report_with_idle_time_and_a_price_change_mid_period(fleet, db):
    payg = create_org(db, "payg", plan_id="payg").id
    fleet.billing.ledger.purchase(payg, 1_000_000, "buy")
    free = create_org(db, "free", plan_id="community").id
    a = fleet.job(payg, fleet.aws, 1.8)  # $1.006/h → 503 µ$
    set_price(db, "aws", "g5.xlarge", "1.20", effective_from=T0 + H)  # the operator's rate from 01:00 on day 1
    b = fleet.job(free, fleet.aws, 1.8)  # now at $1.20/h → 600 µ$
    c = fleet.job(payg, fleet.gcp, 1.8)  # 223 µ$
    fleet.at(a, T0 + H / 6)
    fleet.at(b, T0 + H * 1.5)
    fleet.at(c, T0 + timedelta(days=1, minutes=10))
    fleet.up(fleet.aws, T0, T0 + 2 * H)  # up 2 h on day 1: 1 h at 1.006 + 1 h at 1.20
    fleet.up(fleet.gcp, T0 + timedelta(days=1), T0 + timedelta(days=1, minutes=30))  # 30 min at 0.445

    r = report(db, T0, T0 + timedelta(days=2), "day")
    day1, day2 = r.lines
    assert (day1.key, day1.jobs, day1.cost_micros, day1.uptime_ms) == ("2026-01-05", 2, 1103, 7_200_000)
    assert day1.idle_micros == 1_006_000 + 1_200_000 - 1103
    assert (day1.revenue_micros, day1.given_away_mc, day1.given_away_cost_micros) == (1000, 100, 600)
    assert day1.margin_micros == 1000 - (1_006_000 + 1_200_000)
    assert day1.utilisation_bp == 3600 * 10000 // 7_200_000  # 3.6 s busy of 2 h → 5 bp
    assert (day2.key, day2.cost_micros, day2.idle_micros) == ("2026-01-06", 223, 222_500 - 223)
    assert r.total.total_cost_micros == 1_006_000 + 1_200_000 + 222_500
    assert r.total.cost_per_image_micros == -(-r.total.total_cost_micros // 3)

    by_provider = {ln.key: ln for ln in report(db, T0, T0 + timedelta(days=2), "provider").lines}
    assert (by_provider["aws"].cost_micros, by_provider["aws"].idle_micros) == (1103, 2_206_000 - 1103)
    assert (by_provider["gcp"].cost_micros, by_provider["gcp"].idle_micros) == (223, 222_277)
    by_paid = {ln.key: ln for ln in report(db, T0, T0 + timedelta(days=2), "paid_by").lines}
    assert set(by_paid) == {"paid", "free", "__idle__"} and by_paid["__idle__"].idle_micros == 2_206_000 - 1103 + 222_277
    shared = {ln.key: ln.idle_micros for ln in report(db, T0, T0 + timedelta(days=2), "org", share_idle=True).lines}
    # idle 2,427,174 µ$ shared by busy cost 726 : 600, the odd micro-dollar to the larger remainder
    assert shared == {payg: 1_328_905, free: 1_098_269}
    one_org = report(db, T0, T0 + timedelta(days=2), "total", org_id=free)
    assert (one_org.total.jobs, one_org.total.idle_micros) == (1, 0)  # an organisation never sees the idle fleet
    csv_text = report(db, T0, T0 + timedelta(days=2), "week").csv()
    assert csv_text.splitlines()[0].startswith("week,jobs,images") and "2026-W02" in csv_text
    with pytest.raises(ValidationFailed, match="`by`"):
        report(db, T0, T0 + H, "colour")


def test_runway_of_the_stability_2023_example():
    m = 1_000_000
    r = compute(cash_micros=4_000_000 * m, cloud_metered_micros=8_250_000 * m, fixed_micros=4_500_000 * m,
                revenue_micros=920_000 * m)
    assert (r.gross_burn_micros, r.net_burn_micros) == (12_750_000 * m, 11_830_000 * m)
    assert r.months == Decimal("0.34") and r.days == Decimal("10.3")  # about ten days
    committed = compute(4_000_000 * m, 1_000_000 * m, 4_500_000 * m, 920_000 * m, cloud_committed_micros=8_250_000 * m)
    assert committed.net_burn_micros == 11_830_000 * m  # commitments are owed even when the GPUs sit idle
    assert compute(1 * m, 1 * m, 0, 2 * m).months is None  # revenue covers the burn


def test_runway_from_the_ledger_trend(fleet, db):
    with pytest.raises(ValidationFailed, match="finances"):
        from_ledger(db)
    set_finances(db, cash="100000", payroll="20000", rent="5000", committed_cloud="1000")
    now = T0 + timedelta(days=30)
    fleet.up(fleet.aws, T0, T0 + 10 * H)  # 10 h at $1.006 in the last 30 days
    r = from_ledger(db, now=now, days=30)
    assert r.cloud_metered_micros == 10_060_000 and r.cloud_committed_micros == 1_000_000_000
    assert r.net_burn_micros == 26_000_000_000 and r.months == Decimal("3.85")


def test_scenario_levers(fleet, db):
    from solvent.ledger.scenario import Levers, run

    payg = create_org(db, "payg", plan_id="payg").id
    fleet.billing.ledger.purchase(payg, 1_000_000, "buy")
    granted = create_org(db, "granted", plan_id="payg").id
    fleet.billing.ledger.grant(granted, 50_000, purpose="research")
    now = T0 + timedelta(days=30)
    for org in (payg, granted):
        fleet.at(fleet.job(org, fleet.aws, 1.8), now - H)  # 503 µ$ each; the paid one brings 1000 µ$
    fleet.up(fleet.aws, now - 10 * H, now)  # 10 h at $1.006
    set_finances(db, cash="100000", payroll="20000")
    r = run(db, Levers(price_change_pct=Decimal(10), grants_cut_pct=Decimal(100),
                       moves=[("aws", "g5.xlarge", "gcp", "g2-standard-4", "1y")]), now=now)
    assert (r.baseline.cloud_metered_micros, r.baseline.revenue_micros) == (10_060_000, 1000)
    assert dict(r.effects) == {"prices +10%": 100, "grants cut 100%": 503,
                               "aws g5.xlarge moved to gcp g2-standard-4 1y": 10_060_000 - 4_450_000}
    assert (r.scenario.cloud_metered_micros, r.scenario.revenue_micros) == (10_060_000 - 503 - 5_610_000, 1100)
    assert r.scenario.exact_months > r.baseline.exact_months
    with pytest.raises(ValidationFailed, match="grants_cut_pct"):
        run(db, Levers(grants_cut_pct=Decimal(150)), now=now)


def test_plots_are_svg_with_the_numbers(fleet, db):
    import xml.etree.ElementTree as ET

    from solvent.ledger.plots import cost_revenue_svg, utilisation_svg

    payg = create_org(db, "payg", plan_id="payg").id
    fleet.billing.ledger.purchase(payg, 1_000_000, "buy")
    fleet.at(fleet.job(payg, fleet.aws, 1.8), T0 + H)
    fleet.up(fleet.aws, T0, T0 + 2 * H)
    fleet.up(fleet.gcp, T0, T0 + H)
    ns = {"s": "http://www.w3.org/2000/svg"}
    days = ET.fromstring(cost_revenue_svg(report(db, T0, T0 + timedelta(days=3), "day")))
    titles = [t.text for t in days.iterfind(".//s:circle/s:title", ns)]
    assert titles[:2] == ["2026-01-05 cost $2.4570", "2026-01-05 revenue $0.0010"]  # 2 h × 1.006 + 1 h × 0.445
    assert titles[2:] == ["2026-01-06 cost $0.0000", "2026-01-06 revenue $0.0000", "2026-01-07 cost $0.0000",
                          "2026-01-07 revenue $0.0000"]
    bars = ET.fromstring(utilisation_svg(report(db, T0, T0 + timedelta(days=1), "provider")))
    labels = sorted(t.text for t in bars.iterfind(".//s:rect/s:title", ns))
    assert labels == ["aws: 0.0% busy, idle $2.01", "gcp: 0.0% busy, idle $0.45"]
    # The same charts as PNG: the cost line is drawn in its colour, the bars in theirs.
    import io

    from PIL import Image

    from solvent.ledger.plots import COST, REVENUE, cost_revenue_chart, utilisation_chart

    def pixels(png: bytes, colour: str) -> int:
        img = Image.open(io.BytesIO(png)).convert("RGB")
        want = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
        return sum(1 for p in img.getdata() if p == want)

    line = cost_revenue_chart(report(db, T0, T0 + timedelta(days=3), "day")).png()
    assert line.startswith(b"\x89PNG") and pixels(line, COST) > 100
    bar_png = utilisation_chart(report(db, T0, T0 + timedelta(days=1), "provider")).png()
    assert pixels(bar_png, REVENUE) == 0  # 0% busy: no bar height ...
    ink = sum(1 for p in Image.open(io.BytesIO(bar_png)).convert("L").getdata() if p < 128)
    assert ink > 500  # ... but the title, axis labels and provider names are drawn


def test_price_import_checks_every_row_first(db):
    from solvent.ledger.catalog import import_prices

    good = ("provider,instance_type,usd_per_hour,commitment,gpus,source,effective_from\n"
            "aws,p5.48xlarge,41.50,1y,8,EDP 2026,2026-01-01T00:00:00\n"
            "lambda,gpu_1x_h100_sxm5,3.10,,,,\n")
    assert len(import_prices(db, good)) == 2
    with db.session() as s:
        p5 = price_at(s, "aws", "p5.48xlarge", "1y", T0)
        assert (p5.micros_per_hour, p5.micros_per_gpu_hour, p5.source) == (41_500_000, 5_187_500, "EDP 2026")
        assert price_at(s, "aws", "p5.48xlarge", "1y", datetime(2025, 12, 31, tzinfo=UTC)) is None
    bad = "provider,instance_type,usd_per_hour\naws,g5.xlarge,1.1\naws,g6.xlarge,cheap\n"
    with pytest.raises(ValidationFailed, match="line 3"):
        import_prices(db, bad)
    with db.session() as s:
        assert price_at(s, "aws", "g5.xlarge", "on_demand", datetime.now(UTC)).micros_per_hour == 1_006_000
    with pytest.raises(ValidationFailed, match="missing: usd_per_hour"):
        import_prices(db, "provider,instance_type\naws,x\n")
