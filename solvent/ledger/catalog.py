"""The price catalog: published GPU list prices shipped as data, and the operator's own prices.

`prices.json` holds list prices per instance (USD/hour, with a source and a date per row). The
operator's prices (`solvent prices set`, the admin API) are `PriceVersion` rows that are only
ever added, each effective from a moment on, so a price change never rewrites a past cost. All
arithmetic is in integer micro-dollars (1 USD = 1,000,000 µ$).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ValidationFailed
from ..money import MICROS, usd_to_micros
from ..storage.db import Database, utcnow
from ..storage.models import PriceVersion, Worker

COMMITMENTS = ("on_demand", "1y", "3y", "spot", "capacity_block", "onprem")
WORKER = "worker"  # PriceVersion.provider of an explicit per-worker rate


@dataclass(frozen=True)
class Price:
    provider: str
    instance_type: str
    commitment: str
    gpus: int
    micros_per_hour: int  # per instance
    source: str
    as_of: str = ""
    effective_from: datetime | None = None  # operator prices only

    @property
    def micros_per_gpu_hour(self) -> int:
        return -(-self.micros_per_hour // self.gpus) if self.gpus > 1 else self.micros_per_hour

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "instance_type": self.instance_type, "commitment": self.commitment,
                "gpus": self.gpus, "usd_per_hour": str(Decimal(self.micros_per_hour) / MICROS),
                "usd_per_gpu_hour": str(Decimal(self.micros_per_gpu_hour) / MICROS), "source": self.source,
                "as_of": self.as_of,
                "effective_from": self.effective_from.isoformat() if self.effective_from else None}


@cache
def catalog() -> tuple[Price, ...]:
    """The shipped list prices."""
    data = json.loads((resources.files("solvent.ledger") / "prices.json").read_text())
    out = []
    for r in data["rows"]:
        src = data["sources"][r["source"]]
        out.append(Price(r["provider"], r["instance_type"], r["commitment"], int(r["gpus"]),
                         usd_to_micros(r["usd_per_hour"]), src["name"], src["as_of"]))
    return tuple(out)


def _check_commitment(commitment: str) -> str:
    if commitment not in COMMITMENTS:
        raise ValidationFailed(f"`commitment` must be one of {', '.join(COMMITMENTS)} but is {commitment!r}.",
                               field="commitment", value=commitment)
    return commitment


def set_price(db: Database, provider: str, instance_type: str, usd_per_hour: Any, *, commitment: str = "on_demand",
              gpus: int = 1, source: str = "operator", effective_from: datetime | None = None,
              actor: str = "cli") -> Price:
    """Add a price version (from `effective_from`, default now). Earlier versions are kept."""
    if not provider or not instance_type:
        raise ValidationFailed("`provider` and `instance_type` are required.", field="provider", value=provider)
    if not isinstance(gpus, int) or gpus < 1 or gpus > 1024:
        raise ValidationFailed(f"`gpus` must be a whole number from 1 to 1024 but is {gpus!r}.", field="gpus",
                               value=gpus)
    micros = usd_to_micros(usd_per_hour)
    _check_commitment(commitment)
    with db.session() as s:
        row = PriceVersion(provider=provider, instance_type=instance_type, commitment=commitment, gpus=gpus,
                           micros_per_hour=micros, source=source, effective_from=effective_from or utcnow(),
                           actor=actor)
        s.add(row)
        s.flush()
        return price_of_row(row)


def price_of_row(r: PriceVersion) -> Price:
    return Price(r.provider, r.instance_type, r.commitment, r.gpus, r.micros_per_hour, r.source or "operator",
                 effective_from=r.effective_from)


@cache
def _catalog_index() -> dict[tuple[str, str, str], Price]:
    out: dict[tuple[str, str, str], Price] = {}
    for p in catalog():
        out.setdefault((p.provider, p.instance_type, p.commitment), p)  # the first row of a key wins
    return out


def catalog_price(provider: str, instance_type: str, commitment: str) -> Price | None:
    """The shipped list price of one (provider, instance type, commitment), if the catalog has it."""
    return _catalog_index().get((provider, instance_type, commitment))


def price_at(s: Session, provider: str, instance_type: str, commitment: str, at: datetime) -> Price | None:
    """The price in force at `at`: the operator's latest version by then, else the shipped list price."""
    row = s.scalars(select(PriceVersion).where(
        PriceVersion.provider == provider, PriceVersion.instance_type == instance_type,
        PriceVersion.commitment == commitment, PriceVersion.effective_from <= at)
        .order_by(PriceVersion.effective_from.desc(), PriceVersion.id.desc()).limit(1)).first()
    return price_of_row(row) if row is not None else catalog_price(provider, instance_type, commitment)


def list_prices(s: Session) -> list[Price]:
    """Every shipped row and every operator version, for `solvent prices list`."""
    rows = s.scalars(select(PriceVersion).order_by(PriceVersion.provider, PriceVersion.instance_type,
                                                   PriceVersion.effective_from))
    return [*catalog(), *(price_of_row(r) for r in rows)]


@dataclass(frozen=True)
class OnPrem:
    """Amortised cost of owning GPUs (economics.md): capital over its life and utilisation, plus power and colo."""

    capex_usd: str  # purchase price of the servers
    gpus: int
    years: str = "4"
    overhead: str = "0.1"  # installation, networking, spares: a fraction of capex
    utilisation: str = "0.7"
    kw_per_gpu: str = "0.7"
    pue: str = "1.4"
    usd_per_kwh: str = "0.12"
    colocation_usd_per_gpu_hour: str = "0"

    def micros_per_gpu_hour(self) -> int:
        try:
            capex, years, overhead, util = (Decimal(x) for x in (self.capex_usd, self.years, self.overhead,
                                                                 self.utilisation))
            kw, pue, kwh, colo = (Decimal(x) for x in (self.kw_per_gpu, self.pue, self.usd_per_kwh,
                                                       self.colocation_usd_per_gpu_hour))
        except InvalidOperation as e:
            raise ValidationFailed(f"on-premises inputs must be numbers: {e}", field="onprem") from None
        for name, v in (("capex", capex), ("years", years), ("utilisation", util)):
            if v <= 0:
                raise ValidationFailed(f"`{name}` must be positive but is {v}.", field=name, value=str(v))
        if self.gpus < 1:
            raise ValidationFailed(f"`gpus` must be at least 1 but is {self.gpus}.", field="gpus", value=self.gpus)
        if util > 1:
            raise ValidationFailed(f"`utilisation` is a fraction from 0 to 1 but is {util}.", field="utilisation",
                                   value=str(util))
        usd = (capex * (1 + overhead) / (years * 8760 * self.gpus * util) + kw * pue * kwh / util + colo)
        return int((usd * MICROS).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def set_worker_rate(db: Database, worker_id: str, usd_per_hour: Any, actor: str = "worker",
                    source: str = "declared by the worker") -> Price | None:
    """Price one worker explicitly, as the operator decided; a new version only on change.

    Only the operator's own paths call this: `solvent serve --usd-per-hour` (its in-process worker),
    `solvent workers create --usd-per-hour` (a price set with the worker's token), and approving a remote
    worker's request (`request_worker_rate`). A remote worker's declaration alone never prices it.
    """
    if usd_per_hour in (None, ""):
        return None
    micros = usd_to_micros(usd_per_hour)
    with db.session() as s:
        now = utcnow()
        current = price_at(s, WORKER, worker_id, "on_demand", now)
        if current is not None and current.micros_per_hour == micros:
            return current
    return set_price(db, WORKER, worker_id, usd_per_hour, source=source, actor=actor)


def request_worker_rate(db: Database, worker_id: str, usd_per_hour: Any) -> int | None:
    """A remote worker's `--usd-per-hour`: recorded as a request for the operator to approve, not applied.

    Returns the requested µ$/hour (None when it asked for nothing). The worker stays priced by the operator's
    price for it, or by the catalog, until `approve_worker_rate`.
    """
    if usd_per_hour in (None, ""):
        return None
    micros = usd_to_micros(usd_per_hour)
    with db.session() as s:
        w = s.get(Worker, worker_id)
        w.hardware = {**(w.hardware or {}), "requested_micros_per_hour": micros}
    return micros


def approve_worker_rate(db: Database, worker_id: str, actor: str = "operator") -> Price:
    """Apply the rate a worker asked for (the operator's decision)."""
    with db.session() as s:
        w = s.get(Worker, worker_id)
        if w is None:
            raise ValidationFailed(f"`worker` {worker_id!r} was not found.", field="worker", value=worker_id)
        micros = (w.hardware or {}).get("requested_micros_per_hour")
    if micros is None:
        raise ValidationFailed(f"worker {worker_id!r} asked for no rate; set one with a price instead.",
                               field="worker", value=worker_id)
    return set_worker_rate(db, worker_id, str(Decimal(micros) / MICROS), actor=actor,
                           source="requested by the worker, approved by the operator")


IMPORT_COLUMNS = ("provider", "instance_type", "usd_per_hour")


def import_prices(db: Database, text: str, actor: str = "cli") -> list[Price]:
    """Add price versions from CSV (provider, instance_type, usd_per_hour[, commitment, gpus, source,
    effective_from]); every row is checked before any is added."""
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(text)))
    missing = [c for c in IMPORT_COLUMNS if rows and c not in rows[0]] or ([] if rows else ["(no rows)"])
    if missing:
        raise ValidationFailed(f"`file` needs the columns {', '.join(IMPORT_COLUMNS)}; missing: {', '.join(missing)}.",
                               field="file", value=missing)
    checked = []
    for n, r in enumerate(rows, start=2):
        try:
            when = r.get("effective_from") or None
            at = datetime.fromisoformat(when) if when else None
            if at is not None and at.tzinfo is None:
                from datetime import UTC

                at = at.replace(tzinfo=UTC)
            usd_to_micros(r["usd_per_hour"])
            _check_commitment(r.get("commitment") or "on_demand")
            gpus = int(r.get("gpus") or 1)
        except (ValidationFailed, ValueError) as e:
            raise ValidationFailed(f"line {n} of the price file: {getattr(e, 'message', e)}", field="file",
                                   value=n) from None
        checked.append((r, gpus, at))
    return [set_price(db, r["provider"], r["instance_type"], r["usd_per_hour"],
                      commitment=r.get("commitment") or "on_demand", gpus=gpus, source=r.get("source") or "import",
                      effective_from=at, actor=actor) for r, gpus, at in checked]
