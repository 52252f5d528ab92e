"""Organisations: created with a plan."""


from __future__ import annotations

from ..errors import NotFound, ValidationFailed
from ..storage.db import Database
from ..storage.models import (
    Organisation,
    Plan,
)


def create_org(db: Database, name: str, plan_id: str = "community") -> Organisation:
    if not name or len(name) > 200:
        raise ValidationFailed(f"`name` must be 1–200 characters but is {name!r}.", field="name", value=name)
    with db.session() as s:
        if s.get(Plan, plan_id) is None:
            raise NotFound(f"`plan` {plan_id!r} was not found.", field="plan", value=plan_id)
        org = Organisation(name=name, plan_id=plan_id)
        s.add(org)
    return org
