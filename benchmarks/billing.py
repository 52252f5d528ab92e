"""Admission cost against an organisation's history: does a long credit history slow its next job down?

    python benchmarks/billing.py [--history-jobs 100000] [--runs 5] [--jobs-per-run 100] [--skip-postgres]

Two organisations on the same database: one fresh (a purchase), one with N jobs of history (each job's
reserve and capture legs, 4 per job, written in bulk, its running balances computed from them as the
migration does). Admission (billing's limits, price and credit reservation inside the enqueue
transaction) is timed for both, interleaved, median of --runs; the ratio history / fresh is the cost of
the history (1.0 = none). Admission queued jobs are cancelled, untimed, between runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger import databases  # noqa: E402  (benchmarks/ledger.py: SQLite and a scratch PostgreSQL database)


def history(db, org: str, jobs: int) -> None:
    """`jobs` reserve + capture transactions in the organisation's books, and its balances from the legs."""
    from sqlalchemy import insert, inspect, text

    from solvent.storage.models import CreditEntry, CreditTxn

    now = datetime.now(UTC)
    step = 20_000
    with db.session() as s:
        for lo in range(0, jobs, step):
            hi = min(jobs, lo + step)
            s.execute(insert(CreditTxn), [
                {"id": f"h{org[-8:]}{i}{k}", "org_id": org, "kind": kind, "idempotency_key": f"h:{org}:{i}:{k}",
                 "amount_mc": 100, "memo": "", "actor": "bench", "created_at": now}
                for i in range(lo, hi) for k, kind in (("r", "reserve"), ("c", "capture"))])
            s.execute(insert(CreditEntry), [
                {"txn_id": f"h{org[-8:]}{i}{k}", "org_id": org, "account": acct, "amount_mc": mc, "created_at": now}
                for i in range(lo, hi)
                for k, acct, mc in (("r", "paid", -100), ("r", "held", 100), ("c", "held", -100),
                                    ("c", "sys:revenue:paid", 100))])
        if "credit_balances" not in inspect(s.connection()).get_table_names():
            return  # a checkout from before running balances (to measure the change): the legs are the history
        s.execute(text("DELETE FROM credit_balances WHERE org_id = :o"), {"o": org})
        s.execute(text("INSERT INTO credit_balances (org_id, account, balance_mc) SELECT org_id, account, "
                       "SUM(amount_mc) FROM credit_entries WHERE org_id = :o GROUP BY org_id, account"), {"o": org})


def admission(db, runs: int, n: int, jobs: int) -> dict[str, float]:
    from sqlalchemy import select

    from solvent.accounts import create_org
    from solvent.billing import Billing, Payer, PriceRequest, ensure_plans, set_plan
    from solvent.jobs import JobQueue, QueueLimits
    from solvent.storage.models import Job

    ensure_plans(db)
    set_plan(db, "payg", concurrent_jobs=10**6, rpm=10**6)
    queue, billing = JobQueue(db, QueueLimits(max_queued_per_org=10**6, max_queued_total=10**6)), Billing(db)
    queue.in_final.append(billing.settle_in)
    req = PriceRequest(model="solvent-tiny", cost_class="tiny", width=64, height=64, steps=20)
    orgs = {}
    for name in ("fresh", "history"):
        orgs[name] = create_org(db, name, plan_id="payg").id
        billing.ledger.purchase(orgs[name], 10**12, f"bench:{name}")
    t0 = time.perf_counter()
    history(db, orgs["history"], jobs)
    print(f"    wrote {jobs:,} jobs of history ({4 * jobs:,} legs) in {time.perf_counter() - t0:.1f} s")
    times: dict[str, list[float]] = {}
    for i in range(runs):
        for name in ("fresh", "history") if i % 2 == 0 else ("history", "fresh"):
            org, payer = orgs[name], Payer(orgs[name], None)
            t0 = time.perf_counter()
            for _ in range(n):
                queue.enqueue(org, "solvent-tiny", {"prompt": "x"},
                              on_insert=lambda s, j, payer=payer: billing.admit_in(s, j, payer, req, {}))
            times.setdefault(name, []).append((time.perf_counter() - t0) / n * 1000)
            with db.session() as s:
                queued = list(s.scalars(select(Job.id).where(Job.org_id == org, Job.state == "queued")))
            for job_id in queued:
                queue.cancel(org, job_id)
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--history-jobs", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--jobs-per-run", type=int, default=100)
    p.add_argument("--skip-postgres", action="store_true")
    args = p.parse_args()
    print(f"admission, ms per job (median of {args.runs}): a fresh organisation vs one with "
          f"{args.history_jobs:,} jobs of credit history")
    with tempfile.TemporaryDirectory(prefix="solvent-bench-") as t:
        for name, db, drop in databases(Path(t), args.skip_postgres):
            r = admission(db, args.runs, args.jobs_per_run, args.history_jobs)
            print(f"    {name:<11} fresh {r['fresh']:6.2f}   with history {r['history']:6.2f}   "
                  f"(ratio {r['history'] / r['fresh']:.2f})")
            db.dispose()
            drop and drop()


if __name__ == "__main__":
    main()
