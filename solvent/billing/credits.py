"""The credit ledger: append-only, double-entry, idempotent.

Every movement of credits is one `CreditTxn` whose `CreditEntry` legs sum to zero, and whose
idempotency key is unique: posting the same key twice returns the first transaction and
changes nothing. A balance is the sum of its account's legs; it is also kept as a running sum
(`CreditBalance`) written by the same statement-set that posts the legs, so it cannot drift from
them, and reading it costs one row however long the history (`verify_balances` checks both agree).

An organisation's accounts:

    paid                 credits it bought (purchases, adjustments, refunds)
    allowance:<period>   what its plan includes for one period; what is left expires with it
    grant:<id>           a compute grant (given away on purpose)
    held                 reserved for queued and running jobs

and the counterparties (`sys:*`): purchases, allowance, grants, adjustments, revenue:paid,
revenue:plan, given_away:free, given_away:grant:<id>, expired.

Admission RESERVES a job's price (grants first, soonest to expire first, then the plan's
allowance, then paid credits) into `held`; success CAPTURES what was used into revenue or
given-away, releasing the rest; failure or cancellation RELEASES everything to where it came
from (or to `sys:expired` when that allowance period or grant has ended). Every write first
locks the organisation's row (PostgreSQL `FOR UPDATE`; SQLite's `BEGIN IMMEDIATE` already holds
the database's write lock), so concurrent requests can never spend more than the balance.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..errors import Conflict, NotFound, PaymentRequired, ValidationFailed
from ..money import fmt_credits
from ..storage.db import Database, keep, utcnow
from ..storage.models import CreditBalance, CreditEntry, CreditHold, CreditTxn, Grant, Organisation
from .plans import PlanView, get_plan, period_bounds

KINDS = ("purchase", "allowance", "grant", "reserve", "capture", "release", "refund", "adjustment", "expiry")
MAX_MC = 10**15  # a sanity bound on any single amount (a trillion credits)
TOP_UP = ("buy credits (Stripe checkout), or ask an operator: `solvent credits grant ORG CREDITS` / "
          "`solvent credits adjust ORG CREDITS`")


def insufficient(price_mc: int, available_mc: int) -> PaymentRequired:
    """The 402 for a request that costs more than the organisation has: the price, the balance, how to top up."""
    return PaymentRequired(
        f"this request costs {fmt_credits(price_mc)} credits but your organisation has "
        f"{fmt_credits(available_mc)} available; {TOP_UP}.",
        field="credits", value=price_mc, price_mc=price_mc, balance_mc=available_mc,
        price=fmt_credits(price_mc), balance=fmt_credits(available_mc), top_up=TOP_UP)


def _check_amount(mc: Any, field: str = "amount", allow_negative: bool = False) -> int:
    if not isinstance(mc, int) or isinstance(mc, bool):
        raise ValidationFailed(f"`{field}` must be a whole number of milli-credits but is {mc!r}.", field=field,
                               value=mc)
    if (mc < 0 and not allow_negative) or mc == 0 or abs(mc) > MAX_MC:
        raise ValidationFailed(f"`{field}` must be {'non-zero' if allow_negative else 'positive'} and at most "
                               f"{MAX_MC} mc but is {mc}.", field=field, value=mc)
    return mc


def lock_org(s: Session, org_id: str) -> Organisation:
    """Serialise credit writes of one organisation for the rest of this transaction (locked once per transaction:
    the lock holds until it ends, so a second call returns the same row without another round trip)."""
    locked = s.info.setdefault("locked_orgs", {})
    if org_id in locked:
        return locked[org_id]
    org = s.scalar(select(Organisation).where(Organisation.id == org_id).with_for_update())
    if org is None:
        raise NotFound(f"`org` {org_id!r} was not found.", field="org", value=org_id)
    locked[org_id] = org
    return org


def post(s: Session, org_id: str, kind: str, key: str, legs: list[tuple[str, int]], *, job_id: str | None = None,
         grant_id: str | None = None, memo: str = "", actor: str = "system") -> tuple[CreditTxn, bool]:
    """Post a balanced transaction once; returns (txn, created). The caller holds the org lock."""
    assert kind in KINDS, kind
    existing = s.scalar(select(CreditTxn).where(CreditTxn.idempotency_key == key))
    if existing is not None:
        return existing, False
    legs = [(a, int(m)) for a, m in legs if m]
    if sum(m for _, m in legs) != 0:
        raise AssertionError(f"unbalanced transaction {kind} {key}: {legs}")
    txn = CreditTxn(org_id=org_id, kind=kind, idempotency_key=key, amount_mc=sum(m for _, m in legs if m > 0),
                    job_id=job_id, grant_id=grant_id, memo=memo, actor=actor)
    s.add(txn)
    s.flush()
    s.info.get("books", {}).pop(org_id, None)  # what this transaction read of the organisation's books is stale now
    totals: dict[str, int] = {}
    for account, mc in legs:
        s.add(CreditEntry(txn_id=txn.id, org_id=org_id, account=account, amount_mc=mc, created_at=txn.created_at))
        totals[account] = totals.get(account, 0) + mc
    s.flush()
    ins = (pg_insert if s.bind.dialect.name == "postgresql" else sqlite_insert)(CreditBalance)
    s.execute(ins.values([{"org_id": org_id, "account": a, "balance_mc": m} for a, m in totals.items()])
              .on_conflict_do_update(index_elements=["org_id", "account"],
                                     set_={"balance_mc": CreditBalance.balance_mc + ins.excluded.balance_mc}))
    return txn, True


def _books(s: Session, org_id: str) -> tuple[dict[str, int], list[Grant]]:
    """The organisation's balances and grants, read once per transaction until a `post` changes them."""
    books = s.info.setdefault("books", {})
    if org_id not in books:
        rows = s.execute(select(CreditBalance.account, CreditBalance.balance_mc).where(
            CreditBalance.org_id == org_id, CreditBalance.account.not_like("sys:%"),
            CreditBalance.balance_mc != 0)).all()
        books[org_id] = ({a: int(m) for a, m in rows}, list(s.scalars(select(Grant).where(Grant.org_id == org_id))))
    return books[org_id]


def balances(s: Session, org_id: str) -> dict[str, int]:
    """The organisation's own accounts and their balances (sums of legs), zeros left out."""
    return dict(_books(s, org_id)[0])


def verify_balances(db: Database) -> list[str]:
    """Every running balance that differs from the sum of its legs (empty when the books agree)."""
    with db.session() as s:
        legs = {(o, a): int(m) for o, a, m in s.execute(
            select(CreditEntry.org_id, CreditEntry.account, func.sum(CreditEntry.amount_mc))
            .where(CreditEntry.org_id.is_not(None)).group_by(CreditEntry.org_id, CreditEntry.account))}
        kept = {(o, a): int(m) for o, a, m in s.execute(
            select(CreditBalance.org_id, CreditBalance.account, CreditBalance.balance_mc))}
    return [f"{o} {a}: legs sum to {legs.get((o, a), 0)} but the balance says {kept.get((o, a), 0)}"
            for o, a in sorted(legs.keys() | kept.keys()) if legs.get((o, a), 0) != kept.get((o, a), 0)]


def _period_label(plan: PlanView, org: Organisation, now: datetime) -> str:
    start, _ = period_bounds(plan.period, org.plan_anchor_at, now)
    return start.strftime("%Y-%m-%d") if plan.period == "day" else start.strftime("%Y-%m-%dT%H:%M")


def _grant_active(g: Grant, now: datetime) -> bool:
    return g.revoked_at is None and g.starts_at <= now and (g.expires_at is None or g.expires_at > now)


@dataclass
class Source:
    account: str
    available: int
    dest: str  # where captured credits go


class CreditLedger:
    """Ledger operations; the `*_in` methods run inside the caller's transaction."""

    def __init__(self, db: Database, credits_per_gpu_hour: int = 250):
        self.db = db
        self.credits_per_gpu_hour = credits_per_gpu_hour  # converts GPU-hour grants into credits

    # ------------------------------------------------------------------------------------------
    # Periods, allowances and expiry
    # ------------------------------------------------------------------------------------------

    def roll_in(self, s: Session, org: Organisation, plan: PlanView, now: datetime) -> str:
        """Expire ended allowances and grants, grant this period's allowance. Returns the period label."""
        period = _period_label(plan, org, now)
        current = f"allowance:{period}"
        bal, grants = _books(s, org.id)
        bal = dict(bal)
        for account, mc in bal.items():
            if account.startswith("allowance:") and account != current and mc > 0:
                post(s, org.id, "expiry", f"expire:{org.id}:{account}", [(account, -mc),
                     ("sys:expired", mc)], memo=f"allowance {account[10:]} ended")
        for g in grants:
            mc = bal.get(f"grant:{g.id}", 0)
            if mc > 0 and not _grant_active(g, now) and g.starts_at <= now:
                post(s, org.id, "expiry", f"expire:grant:{g.id}", [(f"grant:{g.id}", -mc),
                     ("sys:expired", mc)], grant_id=g.id,
                     memo="grant revoked" if g.revoked_at is not None else "grant expired")
        if plan.included_mc > 0 and not org.needs_verification:  # sign-up's allowance waits for a verified address
            post(s, org.id, "allowance", f"allowance:{org.id}:{plan.id}:{period}",
                 [("sys:allowance", -plan.included_mc), (current, plan.included_mc)],
                 memo=f"{plan.name} allowance for {period}")
        return period

    def _grant_used_today(self, s: Session, org_id: str, grant_account: str, now: datetime) -> int:
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        used = 0
        for h in s.scalars(select(CreditHold).where(CreditHold.org_id == org_id, CreditHold.created_at >= day,
                                                    CreditHold.state != "released")):
            for leg in h.legs:
                if leg[0] == grant_account:
                    used += leg[1] if h.state == "held" else leg[3]
        return used

    def sources_in(self, s: Session, org: Organisation, plan: PlanView, period: str, now: datetime) -> list[Source]:
        """Where credits may be drawn from now, in the order they are consumed."""
        bal, grants = _books(s, org.id)
        out: list[Source] = []
        far = now + timedelta(days=365 * 100)
        for g in sorted(grants, key=lambda g: (g.expires_at or far, g.created_at)):
            account = f"grant:{g.id}"
            avail = bal.get(account, 0)
            if avail <= 0 or not _grant_active(g, now):
                continue
            if g.daily_cap_mc is not None:
                avail = min(avail, max(0, g.daily_cap_mc - self._grant_used_today(s, org.id, account, now)))
            if avail > 0:
                out.append(Source(account, avail, f"sys:given_away:grant:{g.id}"))
        allowance = bal.get(f"allowance:{period}", 0)
        if allowance > 0:
            out.append(Source(f"allowance:{period}", allowance,
                              "sys:given_away:free" if plan.free else "sys:revenue:plan"))
        if bal.get("paid", 0) > 0:
            out.append(Source("paid", bal["paid"], "sys:revenue:paid"))
        return out

    # ------------------------------------------------------------------------------------------
    # Reserve, capture, release, refund
    # ------------------------------------------------------------------------------------------

    def reserve_in(self, s: Session, org_id: str, job_id: str, amount_mc: int, *, api_key_id: str | None = None,
                   now: datetime | None = None) -> CreditHold:
        """Hold `amount_mc` for `job_id` or raise 402 naming the price and the balance."""
        now = now or utcnow()
        org = lock_org(s, org_id)
        existing = s.get(CreditHold, job_id)
        if existing is not None:
            return existing
        plan = get_plan(s, org.plan_id)
        period = self.roll_in(s, org, plan, now)
        sources = self.sources_in(s, org, plan, period, now)
        available = sum(x.available for x in sources)
        if amount_mc > available:
            raise insufficient(amount_mc, available)
        legs, need = [], amount_mc
        for src in sources:
            take = min(need, src.available)
            if take:
                legs.append([src.account, take, src.dest, 0])
                need -= take
            if not need:
                break
        post(s, org_id, "reserve", f"reserve:{job_id}", [*((a, -m) for a, m, _, _ in legs), ("held", amount_mc)],
             job_id=job_id, memo=f"hold for job {job_id}")
        hold = CreditHold(job_id=job_id, org_id=org_id, api_key_id=api_key_id, amount_mc=amount_mc, legs=legs,
                          period=period, created_at=now)
        s.add(hold)
        s.flush()
        return keep(s, hold)  # budget admission reads it next (its scopes)

    def _release_target(self, s: Session, org: Organisation, account: str, now: datetime) -> str:
        if account.startswith("allowance:"):
            plan = get_plan(s, org.plan_id)
            return account if account == f"allowance:{_period_label(plan, org, now)}" else "sys:expired"
        if account.startswith("grant:"):
            g = s.get(Grant, account[6:])
            return account if g is not None and _grant_active(g, now) else "sys:expired"
        return account

    def settle_in(self, s: Session, job_id: str, used_mc: int | None, now: datetime | None = None) -> CreditHold | None:
        """Capture `used_mc` of a job's hold (None or 0: release all) and release the rest. Idempotent."""
        now = now or utcnow()
        hold = s.get(CreditHold, job_id)
        if hold is None:
            return None
        org = lock_org(s, hold.org_id)
        s.refresh(hold)
        keep(s, hold)  # the ledger prices the job from it next, in this transaction
        if hold.state != "held":
            return hold
        used = max(0, min(int(used_mc or 0), hold.amount_mc))
        legs, capture, release, rest = [], [], [], used
        for account, mc, dest, _ in hold.legs:
            take = min(rest, mc)
            rest -= take
            legs.append([account, mc, dest, take])
            if take:
                capture.append((dest, take))
            if mc - take:
                release.append((self._release_target(s, org, account, now), mc - take))
        if used:
            post(s, hold.org_id, "capture", f"capture:{job_id}", [("held", -used), *capture], job_id=job_id,
                 memo=f"job {job_id} used {fmt_credits(used)} of {fmt_credits(hold.amount_mc)}")
        if used < hold.amount_mc:
            post(s, hold.org_id, "release", f"release:{job_id}", [("held", -(hold.amount_mc - used)), *release],
                 job_id=job_id, memo=f"job {job_id}: unused credits returned")
        kinds = {classify(d).kind for _, _, d, t in legs if t}
        hold.legs, hold.captured_mc, hold.settled_at = legs, used, now
        hold.state = "captured" if used else "released"
        hold.paid_by = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "")
        return hold

    def refund(self, org_id: str, job_id: str, actor: str = "system", memo: str = "") -> CreditTxn:
        """Give back what a job's capture took, to where it came from (paid credits stay paid)."""
        now = utcnow()
        with self.db.session() as s:
            org = lock_org(s, org_id)
            hold = s.get(CreditHold, job_id)
            if hold is None or hold.org_id != org_id:
                raise NotFound(f"`job` {job_id!r} has no charge to refund.", field="job", value=job_id)
            if hold.state == "refunded":
                return s.scalar(select(CreditTxn).where(CreditTxn.idempotency_key == f"refund:{job_id}"))
            if hold.state != "captured":
                raise Conflict(f"job {job_id!r} was not charged (its credits are {hold.state}); nothing to refund.",
                               field="job", value=job_id)
            legs = []
            for account, _, dest, taken in hold.legs:
                if taken:
                    legs += [(dest, -taken), (self._release_target(s, org, account, now), taken)]
            txn, _ = post(s, org_id, "refund", f"refund:{job_id}", legs, job_id=job_id, actor=actor,
                          memo=memo or f"refund of job {job_id}")
            hold.state = "refunded"
            return txn

    # ------------------------------------------------------------------------------------------
    # Money in: purchases, grants, adjustments
    # ------------------------------------------------------------------------------------------

    def purchase_in(self, s: Session, org_id: str, mc: int, key: str, memo: str = "", actor: str = "system"):
        _check_amount(mc)
        lock_org(s, org_id)
        return post(s, org_id, "purchase", key, [("sys:purchases", -mc), ("paid", mc)], memo=memo, actor=actor)

    def purchase(self, org_id: str, mc: int, key: str, memo: str = "", actor: str = "system") -> tuple[CreditTxn, bool]:
        with self.db.session() as s:
            return self.purchase_in(s, org_id, mc, key, memo, actor)

    def adjust(self, org_id: str, mc: int, key: str, memo: str = "", actor: str = "system") -> tuple[CreditTxn, bool]:
        """A manual correction of paid credits (positive or negative, never below zero)."""
        _check_amount(mc, allow_negative=True)
        with self.db.session() as s:
            lock_org(s, org_id)
            if s.scalar(select(CreditTxn).where(CreditTxn.idempotency_key == key)) is None and mc < 0:
                paid = balances(s, org_id).get("paid", 0)
                if paid + mc < 0:
                    raise ValidationFailed(f"`amount` {fmt_credits(mc)} would take paid credits below zero (they "
                                           f"are {fmt_credits(paid)}).", field="amount", value=mc)
            return post(s, org_id, "adjustment", key, [("sys:adjustments", -mc), ("paid", mc)], memo=memo,
                        actor=actor)

    def grant(self, org_id: str, mc: int | None = None, *, purpose: str = "", starts_at: datetime | None = None,
              expires_at: datetime | None = None, daily_cap_mc: int | None = None, key: str | None = None,
              actor: str = "system", gpu_hours: float | None = None) -> Grant:
        """Give an organisation credits (or GPU-hours, converted at `credits_per_gpu_hour`) on purpose.

        Grants are consumed before paid credits and reported as given away.
        """
        millihours = None
        if gpu_hours is not None:
            if mc is not None:
                raise ValidationFailed("give either credits or GPU-hours, not both.", field="gpu_hours")
            if not isinstance(gpu_hours, int | float) or isinstance(gpu_hours, bool) or not 0 < gpu_hours <= 10**7:
                raise ValidationFailed(f"`gpu_hours` must be a number from 0 to 10^7 but is {gpu_hours!r}.",
                                       field="gpu_hours", value=gpu_hours)
            millihours = round(gpu_hours * 1000)
            mc = millihours * self.credits_per_gpu_hour
        _check_amount(mc)
        if daily_cap_mc is not None:
            _check_amount(daily_cap_mc, "daily_cap")
        starts_at = starts_at or utcnow()
        if expires_at is not None and expires_at <= starts_at:
            raise ValidationFailed(f"`expires_at` ({expires_at.isoformat()}) must be after `starts_at` "
                                   f"({starts_at.isoformat()}).", field="expires_at", value=expires_at.isoformat())
        with self.db.session() as s:
            lock_org(s, org_id)
            if key is not None:
                txn = s.scalar(select(CreditTxn).where(CreditTxn.idempotency_key == key))
                if txn is not None:
                    return s.get(Grant, txn.grant_id)
            g = Grant(org_id=org_id, purpose=purpose, amount_mc=mc, daily_cap_mc=daily_cap_mc, starts_at=starts_at,
                      expires_at=expires_at, gpu_millihours=millihours)
            s.add(g)
            s.flush()
            post(s, org_id, "grant", key or f"grant:{g.id}", [("sys:grants", -mc), (f"grant:{g.id}", mc)],
                 grant_id=g.id, memo=purpose, actor=actor)
            return g

    def revoke_grant(self, org_id: str, grant_id: str, actor: str = "system") -> Grant:
        """Stop a grant: what is left of it expires (held credits return to `sys:expired` when released)."""
        now = utcnow()
        with self.db.session() as s:
            lock_org(s, org_id)
            g = s.get(Grant, grant_id)
            if g is None or g.org_id != org_id:
                raise NotFound(f"`grant` {grant_id!r} was not found.", field="grant", value=grant_id)
            if g.revoked_at is None:
                g.revoked_at = now
                left = balances(s, org_id).get(f"grant:{g.id}", 0)
                if left > 0:
                    post(s, org_id, "expiry", f"revoke:{g.id}", [(f"grant:{g.id}", -left), ("sys:expired", left)],
                         grant_id=g.id, memo="grant revoked", actor=actor)
            return g

    # ------------------------------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------------------------------

    def balance(self, org_id: str, now: datetime | None = None) -> dict[str, Any]:
        """Available credits by source (what a request could draw now), held credits, and the plan."""
        now = now or utcnow()
        with self.db.session() as s:
            org = s.get(Organisation, org_id)
            if org is None:
                raise NotFound(f"`org` {org_id!r} was not found.", field="org", value=org_id)
            plan = get_plan(s, org.plan_id)
            period = _period_label(plan, org, now)
            sources = self.sources_in(s, org, plan, period, now)
            bal = balances(s, org_id)
            granted = s.scalar(select(CreditTxn.id).where(
                CreditTxn.idempotency_key == f"allowance:{org.id}:{plan.id}:{period}"))
            # this period's allowance, not yet posted (none until a sign-up's address is verified)
            pending = plan.included_mc if granted is None and not org.needs_verification else 0
        by = {"grants": 0, "allowance": pending, "paid": 0}
        for src in sources:
            by["grants" if src.account.startswith("grant:") else src.account.split(":")[0]] += src.available
        available = sum(by.values())
        return {"org_id": org_id, "plan": plan.id, "period": period, "available_mc": available,
                "available": fmt_credits(available), "held_mc": bal.get("held", 0), "by_source_mc": by}

    def statement(self, org_id: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """Every transaction of an organisation with its legs, oldest first."""
        with self.db.session() as s:
            q = select(CreditTxn).where(CreditTxn.org_id == org_id).order_by(CreditTxn.created_at, CreditTxn.id)
            if since is not None:
                q = q.where(CreditTxn.created_at >= since)
            txns = s.scalars(q).all()
            entries: dict[str, list] = {}
            if txns:
                for e in s.scalars(select(CreditEntry).where(CreditEntry.org_id == org_id).order_by(CreditEntry.id)):
                    entries.setdefault(e.txn_id, []).append((e.account, e.amount_mc))
            return [{"id": t.id, "created_at": t.created_at.isoformat(), "kind": t.kind, "amount_mc": t.amount_mc,
                     "job_id": t.job_id, "grant_id": t.grant_id, "memo": t.memo, "actor": t.actor,
                     "idempotency_key": t.idempotency_key, "legs": entries.get(t.id, [])} for t in txns]

    def given_away(self, org_id: str | None = None) -> dict[str, int]:
        """Credits given away by destination (free tier, each grant), over all time."""
        with self.db.session() as s:  # from the running balances: one row per organisation and destination
            q = select(CreditBalance.account, func.sum(CreditBalance.balance_mc)).where(
                CreditBalance.account.like("sys:given_away:%"))
            if org_id is not None:
                q = q.where(CreditBalance.org_id == org_id)
            rows = s.execute(q.group_by(CreditBalance.account)).all()
        return {a[len("sys:given_away:"):]: int(m) for a, m in rows if m}

    def grants(self, org_id: str) -> list[dict[str, Any]]:
        now = utcnow()
        with self.db.session() as s:
            bal = balances(s, org_id)
            out = []
            for g in s.scalars(select(Grant).where(Grant.org_id == org_id).order_by(Grant.created_at)):
                left = bal.get(f"grant:{g.id}", 0)
                out.append({"id": g.id, "purpose": g.purpose, "amount_mc": g.amount_mc, "remaining_mc": left,
                            "gpu_hours": g.gpu_millihours / 1000 if g.gpu_millihours else None,
                            "remaining_gpu_hours": (round(left / self.credits_per_gpu_hour / 1000, 3)
                                                    if g.gpu_millihours else None),
                            "daily_cap_mc": g.daily_cap_mc,
                            "starts_at": g.starts_at.isoformat(),
                            "expires_at": g.expires_at.isoformat() if g.expires_at else None,
                            "revoked_at": g.revoked_at.isoformat() if g.revoked_at else None,
                            "active": _grant_active(g, now)})
            return out


@dataclass(frozen=True)
class Destination:
    """What a capture's counterparty account means: `kind` is paid / plan (revenue), free / grant (given away)."""

    kind: str
    grant_id: str | None = None

    @property
    def revenue(self) -> bool:
        return self.kind in ("paid", "plan")


_KINDS = {"sys:revenue:paid": "paid", "sys:revenue:plan": "plan", "sys:given_away:free": "free"}


def classify(dest: str) -> Destination:
    """The one reading of the credit ledger's capture destinations (`sys:revenue:*`, `sys:given_away:*`),
    for billing, costing and budgets alike."""
    if dest.startswith("sys:given_away:grant:"):
        return Destination("grant", dest.rsplit(":", 1)[1])
    try:
        return Destination(_KINDS[dest])
    except KeyError:
        raise ValueError(f"not a capture destination: {dest!r}") from None


STATEMENT_COLUMNS = ("created_at", "txn_id", "kind", "account", "amount_mc", "job_id", "grant_id", "memo", "actor",
                     "idempotency_key")


def statement_csv(rows: list[dict[str, Any]]) -> str:
    """A credit statement (`CreditLedger.statement`) as CSV, one line per leg; the API and the CLI both write this."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(STATEMENT_COLUMNS)
    for r in rows:
        for account, mc in r["legs"]:
            w.writerow([r["created_at"], r["id"], r["kind"], account, mc, r["job_id"] or "", r["grant_id"] or "",
                        r["memo"], r["actor"], r.get("idempotency_key") or ""])
    return buf.getvalue()
