"""The audit log: who did what to which organisation, written in the transaction that did it."""


from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..storage.db import Database
from ..storage.models import (
    AuditEvent,
)


def audit(s: Session, actor: str, action: str, org_id: str | None = None, target: str = "",
          **details: Any) -> None:
    """Append one event to the audit log (inside the caller's transaction)."""
    s.add(AuditEvent(actor=actor, action=action, org_id=org_id, target=target, details=details))


def record(db: Database, actor: str, action: str, org_id: str | None = None, target: str = "", **details: Any) -> None:
    """Append one event to the audit log in its own transaction."""
    with db.session() as s:
        audit(s, actor, action, org_id, target, **details)


def audit_log(db: Database, org_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    with db.session() as s:
        q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if org_id is not None:
            q = q.where(AuditEvent.org_id == org_id)
        return [{"at": e.at.isoformat(), "actor": e.actor, "org_id": e.org_id, "action": e.action,
                 "target": e.target, "details": e.details} for e in s.scalars(q)]
