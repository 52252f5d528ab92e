"""Money's units, in one place: credits kept as integer milli-credits, dollars as integer micro-dollars.

1 credit = 1,000 milli-credits (mc) = $0.01 at list price, so 1 mc = 10 µ$. Amounts cross the wire and the
command line as decimal strings (`parse_credits`, `usd_to_micros`) and leave as formatted strings
(`fmt_credits`, `fmt_usd`); nothing in between is a float.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from .errors import ValidationFailed

MC_PER_CREDIT = 1000
MICROS_PER_CREDIT = 10_000  # 1 credit = $0.01 list price
MICROS_PER_MC = MICROS_PER_CREDIT // MC_PER_CREDIT  # 1 mc = 10 µ$ at list price
MICROS = 1_000_000  # µ$ per dollar


def credits_to_mc(credits: int) -> int:
    """A whole number of credits (an API or settings field) as milli-credits."""
    return int(credits) * MC_PER_CREDIT


def parse_credits(text: Any, field: str = "credits") -> int:
    """'12.5' → 12500 mc, exactly; at most 3 decimals; refuses junk naming the field."""
    try:
        d = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        raise ValidationFailed(f"`{field}` must be a number but is {text!r}.", field=field, value=text) from None
    if not d.is_finite():
        raise ValidationFailed(f"`{field}` must be a number but is {text!r}.", field=field, value=text)
    mc = d * MC_PER_CREDIT
    if mc != mc.to_integral_value():
        raise ValidationFailed(f"`{field}` has at most 3 decimals but is {text!r}.", field=field, value=text)
    return int(mc)


def fmt_credits(mc: int) -> str:
    """Milli-credits as a decimal credit string: 12345 → '12.345'."""
    sign = "-" if mc < 0 else ""
    q, r = divmod(abs(mc), MC_PER_CREDIT)
    return f"{sign}{q}.{r:03d}"


def mc_to_credits_number(mc: int) -> float:
    """Milli-credits as the JSON number a wire format wants (Stability's `credits`); display only."""
    return mc / MC_PER_CREDIT


def usd_to_micros(value: Any, field: str = "usd_per_hour") -> int:
    """'1.006' → 1006000; exact (Decimal), rounded half up to the micro-dollar; refuses junk."""
    try:
        d = Decimal(str(value).strip().lstrip("$"))
    except (InvalidOperation, ValueError):
        raise ValidationFailed(f"`{field}` must be an amount in USD (e.g. 2.745) but is {value!r}.", field=field,
                               value=value) from None
    if not d.is_finite() or d < 0 or d > 10_000_000:
        raise ValidationFailed(f"`{field}` must be between 0 and 10,000,000 USD but is {value!r}.", field=field,
                               value=value)
    return int((d * MICROS).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def fmt_usd(micros: int, places: int = 2) -> str:
    q = (Decimal(micros) / MICROS).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"-${-q:,}" if q < 0 else f"${q:,}"
