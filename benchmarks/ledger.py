"""Compute-ledger speed, as ratios against baselines measured in the same run.

    python benchmarks/ledger.py [--runs 5] [--jobs-per-run 200] [--report-jobs 1000000] [--focus-rows 1000000]
                                [--skip-postgres]

(a) recording overhead: jobs admitted, leased and completed per second through the real queue with
    billing only (the baseline) vs with the ledger's hooks too (job cost, budget settlement and alerts
    at completion; a soft budget on everything), and vs the same plus a hard budget on the job's
    organisation (its reservation at admission); admission alone (enqueue with credits reserved) the
    same three ways, plus the baseline timed twice (A/A: the noise of this machine); `admit()` as the
    API calls it; SQLite and PostgreSQL;
(b) report time: `report(by=day)` and `report(by=provider)` over N priced jobs and 10 workers' uptime,
    SQLite and PostgreSQL, against one SUM over the same rows (the floor);
(c) FOCUS import: rows per second and the importing process's peak memory for an N-row CSV file
    (in a fresh subprocess), against the file's size.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG_ADMIN = os.environ.get("SOLVENT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def databases(tmp: Path, skip_pg: bool):
    from sqlalchemy import create_engine, text

    from solvent.storage import Database

    out = [("sqlite", Database(f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:6]}.db'}"), None)]
    if not skip_pg:
        name = f"solvent_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))

        def drop(name=name):
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        out.append(("postgresql", Database(PG_ADMIN.rsplit("/", 1)[0] + "/" + name), drop))
    for _, db, _ in out:
        db.create_all()
    return out


# -- (a) recording overhead ---------------------------------------------------------------------------


def overhead(db, tmp: Path, runs: int, n: int) -> dict[str, float]:
    import dataclasses

    from sqlalchemy import select

    from solvent.accounts import Principal, create_org
    from solvent.api.admission import admit, admit_in
    from solvent.api.schemas import GenerationIn
    from solvent.billing import Billing, Payer, PriceRequest, ensure_plans, set_plan
    from solvent.config import Settings
    from solvent.jobs import JobQueue, QueueLimits
    from solvent.jobs.registry import create_worker, declare
    from solvent.ledger.budgets import create_budget
    from solvent.ledger.catalog import set_worker_rate
    from solvent.root import assemble
    from solvent.storage.models import Job

    ensure_plans(db)
    set_plan(db, "payg", concurrent_jobs=10**6, rpm=10**6)
    limits = QueueLimits(max_queued_per_org=10**6, max_queued_total=10**6)
    full = assemble(Settings(home=tmp / "home"), db, limits)
    bare_q, bare_b = JobQueue(db, limits), Billing(db)
    bare_q.in_final.append(bare_b.settle_in)
    worker, _ = create_worker(db, "bench", provider="aws", instance_type="g5.xlarge")
    set_worker_rate(db, worker.id, "1.006")
    create_budget(db, "all", limit_usd="1000000")  # soft: alerts only, never refuses, so no reservation
    req = PriceRequest(model="solvent-tiny", cost_class="tiny", width=64, height=64, steps=20)
    result = {"images": [{"index": 0}], "usage": {"device_seconds": 0.25, "images": 1}}
    body = GenerationIn(prompt="a red circle on a blue background", model="solvent-tiny")

    class NoBudgets:  # the API's admission with budgets switched off: the baseline for `admit()`
        def admit_in(self, s, job):
            pass

    unbudgeted = dataclasses.replace(full, budgets=NoBudgets())

    def paths(org: str) -> dict:
        """Each timed path for one organisation: (a queue, what one call does)."""
        payer, principal = Payer(org, None), Principal(org, None, ("generate",))

        def cycle(q, hook):
            job, _ = q.enqueue(org, "solvent-tiny", {"prompt": "x"}, on_insert=hook)
            q.lease(worker.id)
            q.complete(job.id, worker.id, result)

        def bare_hook(s, j):
            bare_b.admit_in(s, j, payer, req, {})

        def ledger_hook(s, j):
            admit_in(full, s, j, payer, req, {})

        return {
            "bare": (bare_q, lambda: cycle(bare_q, bare_hook)),
            "ledger": (full.queue, lambda: cycle(full.queue, ledger_hook)),
            "hard": (full.queue, lambda: cycle(full.queue, ledger_hook)),
            "bare_admit": (bare_q, lambda: bare_q.enqueue(org, "solvent-tiny", {"prompt": "x"}, on_insert=bare_hook)),
            "bare_admit_again": (bare_q, lambda: bare_q.enqueue(org, "solvent-tiny", {"prompt": "x"},
                                                                on_insert=bare_hook)),
            "ledger_admit": (full.queue, lambda: full.queue.enqueue(org, "solvent-tiny", {"prompt": "x"},
                                                                    on_insert=ledger_hook)),
            "hard_admit": (full.queue, lambda: full.queue.enqueue(org, "solvent-tiny", {"prompt": "x"},
                                                                  on_insert=ledger_hook)),
            "bare_api": (bare_q, lambda: admit(unbudgeted, principal, body)),
            "ledger_api": (full.queue, lambda: admit(full, principal, body)),
            "hard_api": (full.queue, lambda: admit(full, principal, body)),
        }

    times: dict[str, list[float]] = {}
    # The variants of a group are interleaved call by call (the order rotating with each call), so drift on
    # this shared machine (other processes, the database's background work) falls on all of them alike; each
    # run gives every variant a fresh organisation (one purchase in its books) and starts from an empty
    # queue. A "hard" variant's organisation has its own hard budget. Each call's wall time is kept: the
    # figure is the median call, as calls per second.
    for i in range(runs):
        for group in (("bare", "ledger", "hard"), ("bare_admit", "bare_admit_again", "ledger_admit", "hard_admit"),
                      ("bare_api", "ledger_api", "hard_api")):
            declare(db, worker.id, models=[{"id": "solvent-tiny", "family": "tiny", "default_steps": 20}])  # alive
            calls, orgs = {}, {}
            for name in group:
                org = orgs[name] = create_org(db, f"bench {name} {i}", plan_id="payg").id
                full.billing.ledger.purchase(org, 10**12, f"bench-{org}")
                if name.startswith("hard"):
                    create_budget(db, f"org:{org}", limit_usd="1000000", hard=True)
                calls[name] = paths(org)[name]
            with db.session() as s:
                full.budgets.definitions(s)  # re-read once after the new budgets, untimed
            for k in range(n):
                for name in group[k % len(group):] + group[:k % len(group)]:
                    t0 = time.perf_counter()
                    calls[name][1]()
                    times.setdefault(name, []).append(time.perf_counter() - t0)
            for name, org in orgs.items():
                with db.session() as s:
                    queued = list(s.scalars(select(Job.id).where(Job.org_id == org, Job.state == "queued")))
                for job_id in queued:
                    calls[name][0].cancel(org, job_id)
    return {name: 1 / statistics.median(v) for name, v in times.items()}


# -- (b) report time ----------------------------------------------------------------------------------


def fill(db, n: int, start: datetime) -> None:
    from sqlalchemy import insert

    from solvent.jobs.registry import create_worker
    from solvent.storage.models import JobCost, WorkerUptime

    rng = random.Random(0)
    workers = []
    for i in range(10):
        w, _ = create_worker(db, f"w{i}", provider=("aws", "gcp", "lambda")[i % 3], instance_type="bench")
        workers.append(w)
    with db.session() as s:
        for w in workers:
            s.execute(insert(WorkerUptime), [{"worker_id": w.id, "started_at": start + timedelta(days=d),
                                              "last_seen_at": start + timedelta(days=d, hours=20)} for d in range(30)])
    batch = []
    for i in range(n):
        w = workers[i % 10]
        ms = rng.randrange(200, 4000)
        batch.append({"job_id": f"job_{i:09d}", "org_id": f"org_{i % 50}", "worker_id": w.id, "provider": w.provider,
                      "instance_type": "bench", "commitment": "on_demand", "model": ("sd15", "sdxl", "tiny")[i % 3],
                      "plan_id": ("payg", "community", "professional")[i % 3], "state": "succeeded",
                      "paid_by": ("paid", "free", "plan")[i % 3], "grant_ids": [], "images": 1, "device_ms": ms,
                      "rate_micros_per_hour": 1_006_000, "list_rate_micros_per_hour": 1_006_000, "rate_source": "x",
                      "cost_micros": ms * 1_006_000 // 3_600_000, "list_cost_micros": ms * 1_006_000 // 3_600_000,
                      "captured_mc": 100, "revenue_micros": 1000, "given_away_mc": 0,
                      "finished_at": start + timedelta(seconds=i * 30 * 86400 // n)})
        if len(batch) == 20_000:
            with db.session() as s:
                s.execute(insert(JobCost), batch)
            batch = []
    if batch:
        with db.session() as s:
            s.execute(insert(JobCost), batch)


def report_times(db, n: int, runs: int) -> dict[str, float]:
    from sqlalchemy import func, select

    from solvent.ledger.reports import report
    from solvent.storage.models import JobCost

    start = datetime(2026, 1, 1, tzinfo=UTC)
    t0 = time.perf_counter()
    fill(db, n, start)
    out = {"fill": time.perf_counter() - t0}
    end = start + timedelta(days=30)
    times: dict[str, list[float]] = {"read": [], "day": [], "provider": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        with db.session() as s:
            s.execute(select(func.count(), func.sum(JobCost.cost_micros)).where(
                JobCost.finished_at >= start, JobCost.finished_at < end)).one()
        times["read"].append(time.perf_counter() - t0)
        for by in ("day", "provider"):
            t0 = time.perf_counter()
            r = report(db, start, end, by)
            times[by].append(time.perf_counter() - t0)
            assert r.total.jobs == n
    out.update({k: statistics.median(v) for k, v in times.items()})
    return out


# -- (c) FOCUS import ---------------------------------------------------------------------------------


def focus_file(path: Path, rows: int) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(f"""COPY (SELECT
        round(random() * 3, 6) AS BilledCost, round(random() * 3, 6) AS EffectiveCost, 3.0 AS ListCost,
        'USD' AS BillingCurrency,
        strftime(TIMESTAMP '2026-01-01' + to_hours(i % 720), '%Y-%m-%dT%H:%M:%SZ') AS ChargePeriodStart,
        strftime(TIMESTAMP '2026-01-01' + to_hours(i % 720 + 1), '%Y-%m-%dT%H:%M:%SZ') AS ChargePeriodEnd,
        'Usage' AS ChargeCategory, 'i-' || (i % 500) AS ResourceId, 'Amazon Elastic Compute Cloud' AS ServiceName,
        'AWS' AS ProviderName, CASE WHEN i % 97 = 0 THEN 'Unused' ELSE '' END AS CommitmentDiscountStatus,
        'sku-' || (i % 13) AS SkuId, '{{"team": "gen"}}' AS Tags
        FROM range({rows}) t(i)) TO '{path}' (HEADER, DELIMITER ',')""")
    con.close()


IMPORT_CHILD = """
import resource, sys, time
sys.path.insert(0, sys.argv[3])
from solvent.storage import Database
from solvent.ledger.focus import import_focus
db = Database(sys.argv[1]); db.create_all()
t0 = time.perf_counter(); r = import_focus(db, sys.argv[2]); dt = time.perf_counter() - t0
print(r.rows, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def focus_import(tmp: Path, rows: int) -> dict[str, float]:
    path = tmp / f"focus-{rows}.csv"
    focus_file(path, rows)
    url = f"sqlite:///{tmp / f'focus-{uuid.uuid4().hex[:6]}.db'}"
    base = subprocess.run([sys.executable, "-c", "import resource, duckdb, sqlalchemy, solvent.ledger.focus; "
                           "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"], capture_output=True,
                          text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split()
    out = subprocess.run([sys.executable, "-c", IMPORT_CHILD, url, str(path), str(ROOT)], capture_output=True,
                         text=True, check=True).stdout.split()
    n, dt, peak_kb = int(out[0]), float(out[1]), int(out[2])
    return {"rows": n, "seconds": dt, "rows_per_s": n / dt, "peak_mb": peak_kb / 1024,
            "baseline_mb": int(base[0]) / 1024, "file_mb": path.stat().st_size / 2**20}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--jobs-per-run", type=int, default=200)
    p.add_argument("--report-jobs", type=int, default=1_000_000)
    p.add_argument("--focus-rows", type=int, default=1_000_000)
    p.add_argument("--skip-postgres", action="store_true")
    p.add_argument("--only", choices=("overhead", "report", "focus"))
    args = p.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; medians of {args.runs} runs\n")
    with tempfile.TemporaryDirectory(prefix="solvent-bench-") as t:
        tmp = Path(t)
        if args.only in (None, "overhead"):
            print("(a) recording overhead, calls/s (1 / the median call): billing only; with the ledger (ratio); "
                  "with the ledger and a hard budget on the job's organisation (ratio)")
            for name, db, drop in databases(tmp, args.skip_postgres):
                r = overhead(db, tmp, args.runs, args.jobs_per_run)
                for label, base, *others in (("admit + lease + complete", "bare", "ledger", "hard"),
                                             ("admission alone", "bare_admit", "bare_admit_again", "ledger_admit",
                                              "hard_admit"),
                                             ("admit() as the API calls it", "bare_api", "ledger_api", "hard_api")):
                    cells = "".join(f"   {o} {r[o]:7.1f} ({r[o] / r[base]:.2f})" for o in others)
                    print(f"    {name:<11} {label:<28} {base} {r[base]:7.1f}{cells}")
                db.dispose()
                drop and drop()
        if args.only in (None, "report"):
            print(f"(b) report over {args.report_jobs:,} priced jobs and 10 workers' uptime, seconds")
            for name, db, drop in databases(tmp, args.skip_postgres):
                r = report_times(db, args.report_jobs, max(1, args.runs // 2))
                print(f"    {name:<11} fill {r['fill']:7.1f}   one SUM {r['read']:6.2f}   by day {r['day']:6.2f} "
                      f"({r['day'] / r['read']:.1f}× SUM)   by provider {r['provider']:6.2f} "
                      f"({r['provider'] / r['read']:.1f}× SUM)")
                db.dispose()
                drop and drop()
        if args.only in (None, "focus"):
            r = focus_import(tmp, args.focus_rows)
            print(f"(c) FOCUS import of {r['rows']:,} rows ({r['file_mb']:.0f} MB CSV): {r['seconds']:.1f} s, "
                  f"{r['rows_per_s']:,.0f} rows/s, peak memory {r['peak_mb']:.0f} MB (imports alone: "
                  f"{r['baseline_mb']:.0f} MB)")
    print(f"\npeak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
