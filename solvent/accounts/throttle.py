"""Guessing defences: the one password check, and counters per client address and per account.

Every path that checks a password (login, accepting an invitation as an existing user, changing a
password) calls `check_password`. It counts failures in three throttles, each a row locked for the
transaction (`SELECT … FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` serialises writers):

- `pw:ip:<address>`: all failures from one client address, whatever the account (spraying);
- `pw:pair:<user>:<address>`: one account from one address (guessing one password);
- `pw:user:<user>`: one account from anywhere (a botnet guessing one password).

Past a throttle's free attempts each further failure doubles its back-off (exponential, capped).
While backed off the throttle refuses with 429 and `Retry-After` *before* checking anything. The
per-account throttle has a short cap, so a stranger who guesses from elsewhere delays the real user by
at most `ACCOUNT_RULE.cap`, never locks them out; the address and pair throttles, which the stranger
cannot share with the user, back off for up to an hour. A right password clears the pair and the
account counters (not the address one: one address guessing many accounts stays slow).

Counters are only touched by failures and successes; nothing is stored for addresses that never fail.
Sign-ups are counted per address in a fixed window (`hit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import TooManyRequests
from ..storage.db import utcnow
from ..storage.models import Throttle, User

_hasher = PasswordHasher()  # argon2id, the library's recommended parameters
_DUMMY = _hasher.hash("solvent-dummy-password")


@dataclass(frozen=True)
class Rule:
    free: int  # failures before any back-off
    base: timedelta  # the first back-off
    cap: timedelta  # the longest back-off


IP_RULE = Rule(free=20, base=timedelta(seconds=2), cap=timedelta(hours=1))
PAIR_RULE = Rule(free=5, base=timedelta(seconds=2), cap=timedelta(hours=1))
ACCOUNT_RULE = Rule(free=10, base=timedelta(seconds=1), cap=timedelta(seconds=60))
FORGET_AFTER = timedelta(hours=24)  # a counter with no failure for this long starts again from zero


class LockedOut(TooManyRequests):
    code = "too_many_attempts"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _row(s: Session, key: str, now: datetime) -> Throttle:
    row = s.scalar(select(Throttle).where(Throttle.key == key).with_for_update())
    if row is None:
        row = Throttle(key=key, count=0, window_start=now, blocked_until=None)
        s.add(row)
        s.flush()
    elif row.window_start + FORGET_AFTER < now and (row.blocked_until is None or row.blocked_until <= now):
        row.count, row.window_start, row.blocked_until = 0, now, None
    return row


def _keys(user: User | None, email: str, ip: str) -> list[tuple[str, Rule]]:
    who = user.id if user is not None else f"unknown:{email[:120]}"
    return [(f"pw:ip:{ip}", IP_RULE), (f"pw:pair:{who}:{ip}", PAIR_RULE), (f"pw:user:{who}", ACCOUNT_RULE)]


def check_password(s: Session, user: User | None, password: str | None, ip: str, email: str = "") -> bool | int:
    """Verify `password` for `user` (None: no such account, the same argon2 work is done).

    Returns True, False (a counted failure), or the seconds to wait (int, nothing was checked).
    Run inside the caller's transaction; the caller must commit before raising its refusal.
    """
    now = utcnow()
    rows = [(_row(s, key, now), rule) for key, rule in _keys(user, email, ip)]
    waits = [r.blocked_until for r, _ in rows if r.blocked_until is not None and r.blocked_until > now]
    if waits:
        return int((max(waits) - now).total_seconds()) + 1
    try:
        ok = _hasher.verify(user.password_hash if user is not None else _DUMMY, password or "")
    except (VerificationError, InvalidHashError):
        ok = False
    ok = bool(ok) and user is not None
    if ok:
        for r, rule in rows:
            if rule is not IP_RULE:
                r.count, r.window_start, r.blocked_until = 0, now, None
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
        return True
    for r, rule in rows:
        r.count += 1
        r.window_start = now
        over = r.count - rule.free
        if over > 0:
            r.blocked_until = now + min(rule.cap, rule.base * (2 ** min(over - 1, 20)))
    return False


def refuse(wait: int) -> LockedOut:
    return LockedOut(f"too many wrong passwords from here or for this account: try again in {wait} s.",
                     field="password", retry_after=wait)


def hit(s: Session, key: str, limit: int, window: timedelta) -> int:
    """Count one event under `key` in a fixed window; returns seconds to wait if over `limit` (0: allowed)."""
    now = utcnow()
    row = s.scalar(select(Throttle).where(Throttle.key == key).with_for_update())
    if row is None:
        s.add(Throttle(key=key, count=1, window_start=now))
        return 0
    if row.window_start + window <= now:
        row.count, row.window_start = 0, now
    if row.count >= limit:
        return int((row.window_start + window - now).total_seconds()) + 1
    row.count += 1
    return 0
