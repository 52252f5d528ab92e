"""`newest_first`: pages in (created_at, id) order, never repeating or skipping a row, scoped to one org."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from solvent.errors import ValidationFailed
from solvent.storage.db import newest_first
from solvent.storage.models import Job, JobState


def _job(s, org, n, when):
    s.add(Job(id=f"job_{n:03d}", org_id=org, model="m", mode="txt2img", params={}, state=JobState.queued,
              created_at=when))


def test_pages_cover_every_row_once_even_with_equal_times(db, orgs):
    a, b = orgs
    same = datetime(2026, 1, 1, tzinfo=UTC)
    with db.session() as s:
        for n in range(7):
            _job(s, a, n, same if n < 4 else datetime(2026, 1, 2, n, tzinfo=UTC))
        _job(s, b, 99, same)
    seen, cursor = [], None
    while True:
        with db.session() as s:
            q = newest_first(s, select(Job).where(Job.org_id == a), Job, a, cursor, "job").limit(3)
            page = [j.id for j in s.scalars(q)]
        if not page:
            break
        seen += page
        cursor = page[-1]
    assert sorted(seen) == [f"job_{n:03d}" for n in range(7)] and len(seen) == len(set(seen))
    assert seen[:3] == ["job_006", "job_005", "job_004"]


def test_another_orgs_cursor_is_refused(db, orgs):
    a, b = orgs
    with db.session() as s:
        _job(s, b, 1, datetime(2026, 1, 1, tzinfo=UTC))
    with db.session() as s, pytest.raises(ValidationFailed) as e:
        newest_first(s, select(Job), Job, a, "job_001", "job")
    assert e.value.field == "cursor"
