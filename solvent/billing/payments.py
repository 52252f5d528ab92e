"""Stripe webhooks: verified signatures, one effect per event id.

Signature: `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed by the
endpoint secret>`; any v1 may match; older than the tolerance is a replay and refused. The event
id is recorded in the same transaction as its effect, so a redelivered (or replayed) event
changes nothing.

Effects:
- `checkout.session.completed` (paid): purchased credits — `metadata.credits`, else the amount
  paid at 1 credit per cent. The organisation is `client_reference_id` or `metadata.org_id`.
- `invoice.paid`: the organisation's plan (`metadata.plan` or the price's `lookup_key`, default
  `professional`) starts a paid period at the invoice line's `period.start`, with its allowance.
- `customer.subscription.updated`: the plan follows the subscription (active/trialing → its plan;
  canceled/unpaid/incomplete_expired → the default plan). `customer.subscription.deleted`: the
  default plan. Holds of running jobs are unaffected: a plan change never double-charges.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..accounts.audit import audit
from ..errors import BadRequest, NotFound, Unauthorized
from ..money import MC_PER_CREDIT
from ..storage.db import utcnow
from ..storage.models import Organisation, Plan, WebhookEvent
from .credits import lock_org
from .plans import get_plan


class BadSignature(Unauthorized):
    code = "bad_signature"


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header value for `payload` (what Stripe sends; used by tests and tools)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(payload: bytes, header: str | None, secret: str, tolerance: int = 300, now: float | None = None) -> dict:
    """The event, if `header` signs `payload` with `secret` within `tolerance` seconds; else 401."""
    if not header:
        raise BadSignature("missing `Stripe-Signature` header.", field="stripe-signature")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        k, _, v = item.strip().partition("=")
        parts.setdefault(k, []).append(v)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError) as e:
        raise BadSignature("`Stripe-Signature` has no valid timestamp `t=`.", field="stripe-signature") from e
    expected = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, v) for v in parts.get("v1", [])):
        raise BadSignature("the `Stripe-Signature` does not match the payload (tampered, or the wrong secret).",
                           field="stripe-signature")
    age = (time.time() if now is None else now) - t
    if abs(age) > tolerance:
        raise BadSignature(f"the signature is {int(age)} s old (tolerance {tolerance} s): refused as a replay.",
                           field="stripe-signature", value=t)
    try:
        event = json.loads(payload)
    except json.JSONDecodeError as e:
        raise BadRequest(f"the webhook body is not JSON: {e.msg}.", field="body") from e
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise BadRequest("the webhook body is not a Stripe event (needs string `id` and `type`).", field="body")
    return event


def _org_for(s, obj: dict[str, Any]) -> Organisation:
    meta = obj.get("metadata") or {}
    sub_meta = (obj.get("subscription_details") or {}).get("metadata") or {}
    org_id = obj.get("client_reference_id") or meta.get("org_id") or sub_meta.get("org_id")
    org = s.get(Organisation, org_id) if org_id else None
    if org is None and obj.get("customer"):
        org = s.scalar(select(Organisation).where(Organisation.stripe_customer_id == obj["customer"]))
    if org is None:
        raise NotFound(f"no organisation for this event (org_id {org_id!r}, customer {obj.get('customer')!r}).",
                       field="org_id", value=org_id)
    if obj.get("customer") and not org.stripe_customer_id:
        org.stripe_customer_id = obj["customer"]
    return org


def _plan_of(s, obj: dict[str, Any], default: str) -> str:
    meta = obj.get("metadata") or {}
    sub_meta = (obj.get("subscription_details") or {}).get("metadata") or {}
    plan = meta.get("plan") or sub_meta.get("plan")
    if not plan:
        for line in ((obj.get("lines") or obj.get("items") or {}).get("data") or []):
            price = line.get("price") or (line.get("pricing") or {}).get("price_details") or {}
            if isinstance(price, dict) and price.get("lookup_key"):
                plan = price["lookup_key"]
                break
    plan = plan or default
    if s.get(Plan, plan) is None:
        raise NotFound(f"plan {plan!r} named by the event does not exist.", field="plan", value=plan)
    return plan


def _int(value: Any, field: str, low: int, high: int) -> int:
    """A whole number from an event's field (Stripe metadata values are strings), or a 400 naming the field."""
    try:
        n = int(str(value).strip()) if not isinstance(value, bool) and len(str(value)) <= 20 else None
    except ValueError:
        n = None
    if n is None or not low <= n <= high:
        raise BadRequest(f"`{field}` of the event must be a whole number from {low} to {high} but is "
                         f"{str(value)[:40]!r}.", field=field, value=str(value)[:40])
    return n


def handle(billing, event: dict[str, Any], default_plan: str = "community") -> dict[str, Any]:
    """Apply a verified event once. Returns what happened."""
    db, ledger = billing.db, billing.ledger
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise BadRequest("the event needs a string `id` and `type`.", field="event")
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    kind, obj = event["type"], data.get("object") if isinstance(data.get("object"), dict) else {}
    try:
        with db.session() as s:
            if s.get(WebhookEvent, f"stripe:{event['id']}") is not None:
                return {"event": event["id"], "duplicate": True}
            s.add(WebhookEvent(id=f"stripe:{event['id']}", type=kind))
            s.flush()
            out: dict[str, Any] = {"event": event["id"], "type": kind, "duplicate": False}
            if kind == "checkout.session.completed":
                if obj.get("payment_status", "paid") != "paid":
                    return {**out, "ignored": f"payment_status {obj.get('payment_status')!r}"}
                org = _org_for(s, obj)
                meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
                credits = meta.get("credits")
                credits = (_int(credits, "metadata.credits", 1, 10**9) if credits is not None else
                           _int(obj.get("amount_total") or 0, "amount_total", 1, 10**9))
                ledger.purchase_in(s, org.id, credits * MC_PER_CREDIT, f"stripe:{event['id']}",
                                   memo=f"Stripe checkout {obj.get('id', '')}", actor="stripe")
                audit(s, "stripe", "credits.purchased", org.id, event["id"], credits=credits)
                out.update(org_id=org.id, credits=credits)
            elif kind == "invoice.paid":
                org = lock_org(s, _org_for(s, obj).id)
                plan_id = _plan_of(s, obj, "professional")
                lines = (obj.get("lines") or {}).get("data") or [{}]
                start = (lines[0].get("period") or {}).get("start") or obj.get("period_start")
                org.plan_id = plan_id
                org.plan_anchor_at = (datetime.fromtimestamp(_int(start, "period.start", 0, 253402300799), UTC)
                                      if start else utcnow())
                now = max(utcnow(), org.plan_anchor_at)
                period = ledger.roll_in(s, org, get_plan(s, plan_id), now)
                audit(s, "stripe", "plan.paid_period", org.id, event["id"], plan=plan_id, period=period)
                out.update(org_id=org.id, plan=plan_id, period=period)
            elif kind in ("customer.subscription.updated", "customer.subscription.deleted"):
                org = lock_org(s, _org_for(s, obj).id)
                active = kind.endswith("updated") and obj.get("status") in ("active", "trialing", "past_due")
                previous, org.plan_id = org.plan_id, _plan_of(s, obj, "professional") if active else default_plan
                audit(s, "stripe", "plan.changed", org.id, event["id"], plan=org.plan_id, previous=previous)
                out.update(org_id=org.id, plan=org.plan_id)
            else:
                out["ignored"] = "event type not used by Solvent"
            return out
    except IntegrityError:  # the same event delivered twice at once: the other delivery applied it
        return {"event": event["id"], "duplicate": True}
