"""Budgets on real SQLite and PostgreSQL: a hard cap on the free tier stops free jobs and nothing else,
concurrent admission never overshoots a cap, thresholds alert once and reach a real webhook, and the
runway floor pauses the free tier."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import func, select

from solvent.accounts import create_org
from solvent.api.admission import admit_in
from solvent.billing import Payer, PriceRequest, set_plan
from solvent.errors import ValidationFailed
from solvent.jobs import QueueLimits
from solvent.jobs.registry import create_worker
from solvent.ledger.budgets import BudgetExceeded, create_budget, status
from solvent.ledger.catalog import WORKER, set_price
from solvent.ledger.runway import set_finances
from solvent.storage.models import Budget, Job, WorkerUptime
from tests.harness import make_services

REQ = PriceRequest(model="solvent-tiny", cost_class="tiny", width=64, height=64, steps=20)


class Ops:
    """The real admission path (credits, then budgets, in the enqueue transaction) and a worker at $3.60/h."""

    def __init__(self, db, tmp_path):
        self.s = make_services(db, tmp_path, limits=QueueLimits(max_queued_per_org=500, max_queued_total=500),
                               outbound_allow_hosts=["127.0.0.1"])
        for plan in ("community", "payg"):  # plan limits are tested elsewhere; here only budgets refuse
            set_plan(db, plan, concurrent_jobs=100, rpm=10_000)
        self.db = db
        self.worker, _ = create_worker(db, "w", provider="local")
        set_price(db, WORKER, self.worker.id, "3.60", effective_from=datetime(2026, 1, 1, tzinfo=UTC))  # 1 µ$/ms
        self.free = create_org(db, "free", plan_id="community").id
        self.payg = create_org(db, "payg", plan_id="payg").id
        self.s.billing.ledger.purchase(self.payg, 10**9, "buy")

    def submit(self, org: str):
        job, _ = self.s.queue.enqueue(org, "solvent-tiny", {"prompt": "x"},
                                      on_insert=lambda s, j: admit_in(self.s, s, j, Payer(org, None), REQ, {}))
        return job

    def run(self, job, device_seconds: float = 0.5) -> None:
        leased = self.s.queue.lease(self.worker.id)
        assert leased.id == job.id
        self.s.queue.complete(job.id, self.worker.id, {"images": [{"index": 0}],
                                                       "usage": {"device_seconds": device_seconds, "images": 1}})


@pytest.fixture
def ops(db, tmp_path):
    return Ops(db, tmp_path)


def test_a_hard_cap_on_the_free_tier_stops_free_jobs_and_nothing_else(ops, db):
    ops.run(ops.submit(ops.payg))  # history: this model costs 500 µ$ an image on this fleet
    create_budget(db, "free", period="day", limit_usd="0.0012", hard=True)  # room for two estimates
    first, second = ops.submit(ops.free), ops.submit(ops.free)
    with pytest.raises(BudgetExceeded, match="free") as e:
        ops.submit(ops.free)
    assert e.value.code == "budget_exceeded" and e.value.status == 403
    ops.run(first, device_seconds=0.2)  # priced at 200 µ$; its 500 µ$ estimate is released
    ops.submit(ops.free)  # the estimate is now (500 + 200) / 2: 200 done + 500 held + 350 new ≤ 1200
    with pytest.raises(BudgetExceeded):
        ops.submit(ops.free)  # 200 + 850 + 350 > 1200
    for _ in range(3):
        ops.submit(ops.payg)  # paid work is not in the scope
    (b,) = status(db)
    assert (b["spent_micros"], b["reserved_micros"], b["used_percent"]) == (200, 850, 87.5)
    assert second.id


def test_concurrent_admission_never_overshoots_a_cap(ops, db):
    ops.run(ops.submit(ops.payg))  # 500 µ$ an image
    create_budget(db, "all", period="month", limit_usd="0.005", hard=True)  # ten estimates
    results: list[str] = []

    def attempt(org):
        try:
            ops.submit(org)
            results.append("ok")
        except BudgetExceeded:
            results.append("refused")

    threads = [threading.Thread(target=attempt, args=(ops.payg if i % 2 else ops.free,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.session() as s:
        reserved = s.scalar(select(func.sum(Budget.reserved_micros)))
        holds = [j.budget_hold for j in s.scalars(select(Job).where(Job.budget_hold.is_not(None)))]
    assert results.count("ok") == 9 and results.count("refused") == 21  # 500 done + 9 × 500 held = the cap
    assert reserved == 4500 and sum(h["micros"] for h in holds) == 4500 and len(holds) == 9


def test_concurrent_admission_and_settlement_keep_exact_books(ops, db):
    """Admissions and completions racing over two hard budgets (locked in one order): no deadlock, and
    afterwards each budget's reservation is exactly its unfinished jobs' holds and its spend their costs."""
    from solvent.storage.models import JobCost

    ops.run(ops.submit(ops.payg))  # history: 500 µ$ an image
    everything = create_budget(db, "all", limit_usd="1000", hard=True)
    mine = create_budget(db, f"org:{ops.payg}", limit_usd="1000", hard=True)
    errors: list[BaseException] = []
    done = threading.Event()

    def submit():
        try:
            for _ in range(8):
                ops.submit(ops.payg)
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    def work():
        try:
            while not done.is_set():
                job = ops.s.queue.lease(ops.worker.id)
                if job is None:
                    time.sleep(0.005)
                    continue
                ops.s.queue.complete(job.id, ops.worker.id, {"images": [{"index": 0}],
                                                             "usage": {"device_seconds": 0.3, "images": 1}})
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    submitters = [threading.Thread(target=submit) for _ in range(4)]
    workers = [threading.Thread(target=work) for _ in range(2)]
    for th in submitters + workers:
        th.start()
    for th in submitters:
        th.join()
    time.sleep(0.3)
    done.set()
    for th in workers:
        th.join()
    assert errors == []
    with db.session() as s:
        jobs = list(s.scalars(select(Job).where(Job.budget_hold.is_not(None))))
        open_holds = sum(j.budget_hold["micros"] for j in jobs if j.finished_at is None)
        assert len(jobs) == 32
        for b in (everything, mine):
            row = s.get(Budget, b.id)
            costs = s.scalar(select(func.coalesce(func.sum(JobCost.cost_micros), 0)).where(
                JobCost.job_id.in_([j.id for j in jobs])))
            assert row.reserved_micros == open_holds
            assert row.spent_micros == 500 + costs  # the first job was priced before, and counted at creation


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_thresholds_alert_once_per_period_and_reach_the_webhook(ops, db):
    Hook.received.clear()
    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/alerts"
        create_budget(db, f"org:{ops.payg}", period="day", limit_usd="0.001", thresholds=[50, 100], webhook_url=url,
                      allow_hosts=["127.0.0.1"])  # the test's receiver is on loopback: the operator allows it
        ops.run(ops.submit(ops.payg), device_seconds=0.6)  # 600 µ$ of 1000: 50% crossed
        ops.run(ops.submit(ops.payg), device_seconds=0.1)  # 700: nothing new
        ops.run(ops.submit(ops.payg), device_seconds=0.4)  # 1100: 100% crossed
        deadline = time.monotonic() + 10
        while any(not a["delivered"] for a in status(db)[0]["alerts"]) and time.monotonic() < deadline:
            time.sleep(0.05)  # the on_final threads post after each job's commit
        (b,) = status(db)
        assert [(a["threshold_percent"], a["delivered"]) for a in b["alerts"]] == [(50, "webhook 204"),
                                                                                   (100, "webhook 204")]
        assert sorted(h["threshold_percent"] for h in Hook.received) == [50, 100]
        assert Hook.received[0]["scope"] == f"org:{ops.payg}" and Hook.received[0]["limit_micros"] == 1000
        ops.submit(ops.payg)  # soft budgets never refuse
    finally:
        server.shutdown()


def test_a_budget_sees_the_period_so_far_and_one_from_another_process_applies_within_its_ttl(ops, db):
    ops.run(ops.submit(ops.payg), device_seconds=0.6)  # 600 µ$ before any budget exists
    b = create_budget(db, f"org:{ops.payg}", period="day", limit_usd="0.001", thresholds=[50, 100])
    (st,) = status(db)
    assert st["spent_micros"] == 600 and [a["threshold_percent"] for a in st["alerts"]] == [50]  # due at once
    ops.run(ops.submit(ops.payg), device_seconds=0.5)  # 1100: 100% crossed, 50% not raised again
    (st,) = status(db)
    assert st["spent_micros"] == 1100 and [a["threshold_percent"] for a in st["alerts"]] == [50, 100]
    assert b.id

    # Another process (the CLI) adds a hard cap: this server re-reads budgets within definitions_ttl.
    ops.s.budgets.definitions_ttl = 0.3
    ops.submit(ops.free)  # definitions cached now
    with db.session() as s:
        s.add(Budget(name="elsewhere", scope="free", period="day", limit_micros=1, hard=True, thresholds_bp=[]))
    time.sleep(0.35)
    with pytest.raises(BudgetExceeded, match="elsewhere"):
        ops.submit(ops.free)
    ops.submit(ops.payg)


def test_the_estimate_follows_jobs_priced_here_without_a_query(ops, db):
    from sqlalchemy import event

    create_budget(db, "all", limit_usd="1000", hard=True)
    first = ops.submit(ops.payg)
    assert first.budget_hold["micros"] == 2000  # no history: 2 s an image at the fleet's dearest rate, 1 µ$/ms
    ops.run(first, device_seconds=0.5)
    ops.run(ops.submit(ops.payg), device_seconds=1.5)  # history now 500 and 1500 µ$
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda c, cur, stmt, *a: seen.append(stmt))
    job = ops.submit(ops.payg)
    assert job.budget_hold == {"budgets": [job.budget_hold["budgets"][0]], "micros": 1000}
    assert not [q for q in seen if "job_costs" in q or "FROM workers" in q]  # cached, and updated at settlement
    assert sum(q.lstrip().upper().startswith("UPDATE BUDGETS") for q in seen) == 1


def test_a_new_period_starts_from_zero_and_a_late_job_of_the_last_one_does_not_enter_it(ops, db):
    b = create_budget(db, f"org:{ops.payg}", period="day", limit_usd="1", thresholds=[50])
    today = datetime.now(UTC)
    for key, spent, want in (((today - timedelta(days=1)).strftime("%Y-%m-%d"), 999_999, (600, "today")),
                             ((today + timedelta(days=1)).strftime("%Y-%m-%d"), 777, (777, "tomorrow"))):
        with db.session() as s:
            row = s.get(Budget, b.id)
            row.period_key, row.spent_micros = key, spent
        ops.run(ops.submit(ops.payg), device_seconds=0.6)
        with db.session() as s:
            row = s.get(Budget, b.id)
            assert row.spent_micros == want[0]
            assert row.period_key == (today.strftime("%Y-%m-%d") if want[1] == "today" else key)
    assert status(db)[0]["alerts"] == []  # 999,999 was yesterday's; 600 of 1,000,000 today crosses nothing


def test_budget_rows_and_job_holds_are_backfilled_by_the_migration(tmp_path):
    """Spend sums and holds from before 0008 (`budget_spend`, `budget_holds`) move onto the rows."""
    from sqlalchemy import text

    from solvent.storage.db import Database
    from solvent.storage.migrate import upgrade

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(db, "0007")
    with db.session() as s:
        s.execute(text("INSERT INTO organisations (id, name, created_at, plan_id) VALUES ('o1', 'x', '2026-01-01', "
                       "'payg')"))
        s.execute(text("INSERT INTO budgets (id, name, scope, period, limit_micros, thresholds_bp, hard, "
                       "reserved_micros, active, created_at) VALUES ('b1', 'all', 'all', 'month', 9000, '[]', 1, 700, "
                       "1, '2026-01-01')"))
        s.execute(text("INSERT INTO budget_spend (budget_id, period_key, spent_micros) VALUES ('b1', '2026-10', 50), "
                       "('b1', '2026-11', 1234)"))
        for j in ("j1", "j2"):
            s.execute(text("INSERT INTO jobs (id, org_id, state, mode, model, params, priority, skips, attempts, "
                           "max_attempts, cancel_requested, progress, created_at) VALUES (:j, 'o1', 'queued', "
                           "'txt2img', 'solvent-tiny', '{}', 0, 0, 0, 3, 0, 0, '2026-11-02')"), {"j": j})
        s.execute(text("INSERT INTO budget_holds (job_id, budget_ids, estimate_micros, created_at) VALUES "
                       "('j1', '[\"b1\"]', 700, '2026-11-02')"))
    upgrade(db)
    with db.session() as s:
        b = s.get(Budget, "b1")
        assert (b.period_key, b.spent_micros, b.reserved_micros) == ("2026-11", 1234, 700)
        assert s.get(Job, "j1").budget_hold == {"budgets": ["b1"], "micros": 700}
        assert s.get(Job, "j2").budget_hold is None
    db.dispose()


def test_runway_floor_pauses_the_free_tier(ops, db):
    now = datetime.now(UTC)
    with db.session() as s:  # the fleet has been up for ten days at $3.60/h: $864 of cloud in 30 days
        s.add(WorkerUptime(worker_id=ops.worker.id, started_at=now - timedelta(days=10), last_seen_at=now))
    set_finances(db, cash="1000", payroll="0")  # $1000 ÷ $864/month ≈ 1.16 months
    create_budget(db, "free", runway_floor_months="2")
    with pytest.raises(BudgetExceeded, match="runway is 1.15 months"):
        ops.submit(ops.free)
    ops.submit(ops.payg)


def test_budget_validation_names_the_field(db):
    for kwargs, field in (({"scope": "everyone", "limit_usd": "1"}, "scope"),
                          ({"scope": "all", "limit_usd": "1", "period": "week"}, "period"),
                          ({"scope": "all", "hard": True, "runway_floor_months": "1"}, "hard"),
                          ({"scope": "all"}, "limit"),
                          ({"scope": "all", "limit_usd": "1", "thresholds": [0]}, "thresholds"),
                          ({"scope": "all", "limit_usd": "1", "webhook_url": "ftp://x"}, "webhook_url"),
                          ({"scope": "all", "runway_floor_months": "-2"}, "runway_floor_months")):
        with pytest.raises(ValidationFailed) as e:
            create_budget(db, **kwargs)
        assert e.value.field == field, (kwargs, e.value.message)
