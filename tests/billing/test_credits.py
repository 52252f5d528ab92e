"""The credit ledger on real SQLite and PostgreSQL: reserve/capture/release, grants, allowances, refunds,
idempotency, and property-based sequences of all of them (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from solvent.accounts import create_org
from solvent.billing import CreditLedger, ensure_plans, set_plan
from solvent.billing.credits import balances, verify_balances
from solvent.errors import Conflict, PaymentRequired, ValidationFailed
from solvent.storage import Database
from solvent.storage.models import CreditEntry, CreditHold, Job


@pytest.fixture
def ledger(db):
    ensure_plans(db)
    return CreditLedger(db)


def _org(db, plan="payg"):
    return create_org(db, "acme", plan_id=plan).id


def reserve(ledger, org, job, mc, now=None):
    with ledger.db.session() as s:
        return ledger.reserve_in(s, org, job, mc, now=now)


def settle(ledger, job, used, now=None):
    with ledger.db.session() as s:
        return ledger.settle_in(s, job, used, now=now)


def total_sum(db) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.coalesce(func.sum(CreditEntry.amount_mc), 0))))


def accounts(db, org) -> dict[str, int]:
    with db.session() as s:
        return balances(s, org)


def test_reserve_capture_release(ledger, db):
    org = _org(db)
    ledger.purchase(org, 10_000, "buy-1")
    reserve(ledger, org, "job-a", 3_000)
    assert accounts(db, org) == {"paid": 7_000, "held": 3_000}
    assert ledger.balance(org)["available_mc"] == 7_000
    hold = settle(ledger, "job-a", 2_000)  # used less than reserved: the rest comes back
    assert (hold.state, hold.captured_mc, hold.paid_by) == ("captured", 2_000, "paid")
    assert accounts(db, org) == {"paid": 8_000}
    reserve(ledger, org, "job-b", 8_000)
    settle(ledger, "job-b", 0)  # failed or canceled: everything comes back
    assert accounts(db, org) == {"paid": 8_000}
    assert total_sum(db) == 0


def test_insufficient_credits_is_402_with_price_and_balance(ledger, db):
    org = _org(db)
    ledger.purchase(org, 1_500, "buy")
    with pytest.raises(PaymentRequired) as e:
        reserve(ledger, org, "job", 2_000)
    err = e.value
    assert err.status == 402 and err.field == "credits"
    assert (err.extra["price_mc"], err.extra["balance_mc"]) == (2_000, 1_500)
    assert "2.000" in err.message and "1.500" in err.message
    assert "solvent credits" in err.extra["top_up"]
    assert accounts(db, org) == {"paid": 1_500}  # nothing was held


def test_replays_change_nothing(ledger, db):
    org = _org(db)
    t1, c1 = ledger.purchase(org, 5_000, "stripe:evt_1")
    t2, c2 = ledger.purchase(org, 5_000, "stripe:evt_1")
    assert (c1, c2) == (True, False) and t1.id == t2.id
    reserve(ledger, org, "job", 1_000)
    reserve(ledger, org, "job", 1_000)  # a retried admission of the same job
    settle(ledger, "job", 1_000)
    settle(ledger, "job", 0)  # a late failure report for a job already captured
    assert accounts(db, org) == {"paid": 4_000}
    ledger.refund(org, "job")
    ledger.refund(org, "job")
    assert accounts(db, org) == {"paid": 5_000}
    reserve(ledger, org, "job2", 1_000)
    settle(ledger, "job2", 0)
    with pytest.raises(Conflict):
        ledger.refund(org, "job2")  # released, so nothing to refund


def test_grants_are_consumed_first_and_reported_as_given_away(ledger, db):
    org = _org(db)
    ledger.purchase(org, 10_000, "buy")
    g = ledger.grant(org, 3_000, purpose="research")
    reserve(ledger, org, "j1", 5_000)
    hold = settle(ledger, "j1", 5_000)
    assert hold.paid_by == "mixed"
    assert accounts(db, org) == {"paid": 8_000}
    assert ledger.given_away(org) == {f"grant:{g.id}": 3_000}
    reserve(ledger, org, "j2", 1_000)
    assert settle(ledger, "j2", 1_000).paid_by == "paid"


def test_gpu_hour_grants_convert_at_the_operators_rate(ledger, db):
    org = _org(db)
    g = ledger.grant(org, gpu_hours=2, purpose="research cluster time")
    assert g.amount_mc == 2 * 250 * 1000  # 250 credits per GPU-hour by default
    reserve(ledger, org, "j", 125_000)
    settle(ledger, "j", 125_000)
    row = ledger.grants(org)[0]
    assert (row["gpu_hours"], row["remaining_gpu_hours"]) == (2.0, 1.5)
    with pytest.raises(ValidationFailed):
        ledger.grant(org, 1000, gpu_hours=1, purpose="both")
    with pytest.raises(ValidationFailed):
        ledger.grant(org, gpu_hours=-1, purpose="negative")


def test_grant_daily_cap_expiry_and_revocation(ledger, db):
    org = _org(db)
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    capped = ledger.grant(org, 10_000, purpose="partner", daily_cap_mc=2_000, starts_at=now - timedelta(days=1))
    reserve(ledger, org, "j1", 1_500, now=now)
    with pytest.raises(PaymentRequired):  # 500 left of today's cap, no paid credits
        reserve(ledger, org, "j2", 1_000, now=now)
    reserve(ledger, org, "j3", 1_000, now=now + timedelta(days=1))  # a new day, a new cap
    short = ledger.grant(org, 4_000, purpose="event", starts_at=now - timedelta(days=1), expires_at=now + timedelta(days=3))
    hold = reserve(ledger, org, "j4", 3_000, now=now + timedelta(days=2))
    assert hold.legs[0][0] == f"grant:{short.id}"  # the grant expiring soonest goes first
    settle(ledger, "j4", 0, now=now + timedelta(days=5))  # released after it expired → it expires too
    reserve(ledger, org, "j5", 10, now=now + timedelta(days=5))
    assert accounts(db, org).get(f"grant:{short.id}", 0) == 0
    ledger.revoke_grant(org, capped.id)
    assert accounts(db, org).get(f"grant:{capped.id}", 0) == 0
    assert ledger.balance(org)["by_source_mc"]["grants"] == 0
    assert total_sum(db) == 0


def test_allowance_per_period_expires(ledger, db):
    set_plan(db, "community", included_mc=5_000)
    org = _org(db, "community")
    day1 = datetime(2026, 11, 22, 9, tzinfo=UTC)
    reserve(ledger, org, "j1", 2_000, now=day1)
    settle(ledger, "j1", 2_000, now=day1)
    assert accounts(db, org) == {"allowance:2026-11-22": 3_000}
    reserve(ledger, org, "j2", 5_000, now=day1 + timedelta(days=1))  # yesterday's rest expired; a fresh 5
    assert accounts(db, org) == {"held": 5_000}
    assert ledger.given_away(org) == {"free": 2_000}  # day 1 use; the expired rest is not given away
    settle(ledger, "j2", 5_000, now=day1 + timedelta(days=1))
    assert ledger.given_away(org) == {"free": 7_000}  # a free plan's allowance is given away


def test_bad_amounts(ledger, db):
    org = _org(db)
    for bad in (0, -5, 10**16, 1.5, True):
        with pytest.raises(ValidationFailed):
            ledger.purchase(org, bad, f"k{bad}")
    with pytest.raises(ValidationFailed):
        ledger.grant(org, 100, purpose="x", starts_at=datetime(2026, 1, 2, tzinfo=UTC),
                     expires_at=datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValidationFailed):
        ledger.adjust(org, -1, "neg")  # paid credits are prepaid: never below zero


# ----------------------------------------------------------------------------------------------
# Property-based: any sequence keeps the books balanced and never spends what is not there
# ----------------------------------------------------------------------------------------------

KEYS = st.sampled_from(["k1", "k2", "k3"])
JOBS = st.sampled_from(["j1", "j2", "j3", "j4"])
AMOUNT = st.integers(min_value=1, max_value=5_000)
OPS = st.lists(st.one_of(
    st.tuples(st.just("purchase"), KEYS, AMOUNT),
    st.tuples(st.just("grant"), KEYS, AMOUNT),
    st.tuples(st.just("reserve"), JOBS, AMOUNT),
    st.tuples(st.just("capture"), JOBS, st.integers(min_value=0, max_value=6_000)),
    st.tuples(st.just("release"), JOBS, st.just(0)),
    st.tuples(st.just("refund"), JOBS, st.just(0)),
    st.tuples(st.just("adjust"), KEYS, st.integers(min_value=-3_000, max_value=3_000).filter(bool)),
), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_ledger_properties(tmp_path_factory, ops):
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('prop') / 'p.db'}")
    db.create_all()
    ensure_plans(db)
    ledger = CreditLedger(db)
    org = create_org(db, "p", plan_id="payg").id
    seen: dict[str, int] = {}  # idempotency keys applied → amount
    holds: dict[str, int] = {}  # job → reserved
    captured: dict[str, int] = {}
    owned = 0  # what the organisation owns: paid + grants − captured + refunded (held included)
    for op, ref, amount in ops:
        before = accounts(db, org)
        try:
            if op == "purchase":
                ledger.purchase(org, amount, f"p:{ref}")
                owned += amount if f"p:{ref}" not in seen else 0
                seen.setdefault(f"p:{ref}", amount)
            elif op == "grant":
                ledger.grant(org, amount, purpose="t", key=f"g:{ref}")
                owned += amount if f"g:{ref}" not in seen else 0
                seen.setdefault(f"g:{ref}", amount)
            elif op == "adjust":
                ledger.adjust(org, amount, f"a:{ref}")
                owned += amount if f"a:{ref}" not in seen else 0
                seen.setdefault(f"a:{ref}", amount)
            elif op == "reserve":
                spendable = ledger.balance(org)["available_mc"]
                try:
                    reserve(ledger, org, ref, amount)
                    if ref not in holds:
                        assert amount <= spendable
                        holds[ref] = amount
                except PaymentRequired:
                    assert ref not in holds and amount > spendable
            elif op in ("capture", "release") and ref in holds:
                settle(ledger, ref, amount if op == "capture" else 0)
                if ref not in captured:
                    captured[ref] = min(amount, holds[ref]) if op == "capture" else 0
                    owned -= captured[ref]
            elif op == "refund" and ref in captured:
                try:
                    ledger.refund(org, ref)
                    if captured[ref] > 0:
                        owned += captured.pop(ref)
                        captured[ref] = 0
                except Conflict:
                    assert captured[ref] == 0
        except ValidationFailed:
            assert op == "adjust" and amount < 0  # would take paid below zero: refused, nothing written
            assert accounts(db, org) == before
        acc = accounts(db, org)
        assert verify_balances(db) == [], "the running balances are the sums of the legs"
        assert total_sum(db) == 0, "every transaction balances"
        assert all(v >= 0 for v in acc.values()), f"no account below zero: {acc}"
        assert sum(acc.values()) == owned, "balance = sum of entries = what the model says"
        open_holds = sum(v for j, v in holds.items() if j not in captured)
        assert acc.get("held", 0) == open_holds
    db.dispose()


# ----------------------------------------------------------------------------------------------
# The race: 50 concurrent requests of 1 credit against a balance of 10 (PostgreSQL and SQLite)
# ----------------------------------------------------------------------------------------------


def test_concurrent_reservations_never_overspend(ledger, db):
    import threading

    from solvent.jobs import JobQueue

    org = _org(db)
    ledger.purchase(org, 10_000, "ten-credits")
    queue = JobQueue(db)
    results: list[str] = []
    barrier = threading.Barrier(50)

    def one(i: int) -> None:
        barrier.wait()
        try:
            queue.enqueue(org, "m", {"batch_size": 1}, on_insert=lambda s, job: ledger.reserve_in(s, org, job.id, 1_000))
            results.append("admitted")
        except PaymentRequired:
            results.append("402")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("admitted") == 10 and results.count("402") == 40
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 10  # a refused request leaves no job
        assert s.scalar(select(func.count()).select_from(CreditHold)) == 10
    assert accounts(db, org) == {"held": 10_000} and verify_balances(db) == []


def test_running_balances_are_backfilled_from_the_legs_by_the_migration(tmp_path):
    """A database with history from before running balances gets them computed from its legs."""
    from sqlalchemy import text

    from solvent.storage.migrate import upgrade

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(db, "0006")
    with db.session() as s:
        s.execute(text("INSERT INTO organisations (id, name, created_at, plan_id) VALUES ('o1', 'x', '2026-01-01', "
                       "'payg')"))
        s.execute(text("INSERT INTO credit_txns (id, org_id, kind, idempotency_key, amount_mc, memo, actor, created_at)"
                       " VALUES ('t1', 'o1', 'purchase', 'k1', 5000, '', 's', '2026-01-01'), ('t2', 'o1', 'reserve', "
                       "'k2', 1200, '', 's', '2026-01-02')"))
        s.execute(text("INSERT INTO credit_entries (txn_id, org_id, account, amount_mc, created_at) VALUES "
                       "('t1', 'o1', 'sys:purchases', -5000, '2026-01-01'), ('t1', 'o1', 'paid', 5000, '2026-01-01'), "
                       "('t2', 'o1', 'paid', -1200, '2026-01-02'), ('t2', 'o1', 'held', 1200, '2026-01-02')"))
    upgrade(db)
    assert verify_balances(db) == []
    with db.session() as s:
        assert balances(s, "o1") == {"paid": 3800, "held": 1200}
    db.dispose()
