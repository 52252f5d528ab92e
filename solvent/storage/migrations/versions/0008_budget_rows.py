"""Budgets keep this period's spend on their own row, and a job carries its budget hold.

Admission with a hard budget becomes one `UPDATE … RETURNING` per budget (the reservation, with the
spend to check it against) instead of a locked join, an update and an insert; settlement one
update instead of a delete, an update, a select and an upsert. `budget_spend` and `budget_holds`
are folded in and dropped.

Revision ID: 0008
"""

import json

import sqlalchemy as sa
from alembic import op

from solvent.storage.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("budgets") as b:
        b.add_column(sa.Column("period_key", sa.String(16), nullable=False, server_default=""))
        b.add_column(sa.Column("spent_micros", sa.BigInteger, nullable=False, server_default="0"))
    with op.batch_alter_table("jobs") as b:
        b.add_column(sa.Column("budget_hold", sa.JSON, nullable=True))
    conn = op.get_bind()
    # The latest period each budget has a sum for (keys sort as dates: "2026-11" or "2026-11-23").
    for budget_id, key, spent in conn.execute(sa.text(
            "SELECT s.budget_id, s.period_key, s.spent_micros FROM budget_spend s WHERE s.period_key = "
            "(SELECT MAX(t.period_key) FROM budget_spend t WHERE t.budget_id = s.budget_id)")).all():
        conn.execute(sa.text("UPDATE budgets SET period_key = :k, spent_micros = :v WHERE id = :i"),
                     {"k": key, "v": spent, "i": budget_id})
    for job_id, ids, micros in conn.execute(sa.text(
            "SELECT job_id, budget_ids, estimate_micros FROM budget_holds")).all():
        ids = json.loads(ids) if isinstance(ids, str) else ids
        conn.execute(sa.text("UPDATE jobs SET budget_hold = :h WHERE id = :i").bindparams(
            sa.bindparam("h", type_=sa.JSON)), {"h": {"budgets": list(ids or []), "micros": int(micros)}, "i": job_id})
    op.drop_table("budget_holds")
    op.drop_table("budget_spend")


def downgrade() -> None:
    op.create_table(
        "budget_spend",
        sa.Column("budget_id", sa.String(40), primary_key=True),
        sa.Column("period_key", sa.String(16), primary_key=True),
        sa.Column("spent_micros", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "budget_holds",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("budget_ids", sa.JSON, nullable=False),
        sa.Column("estimate_micros", sa.BigInteger, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    conn = op.get_bind()
    conn.execute(sa.text("INSERT INTO budget_spend (budget_id, period_key, spent_micros) "
                         "SELECT id, period_key, spent_micros FROM budgets WHERE period_key <> ''"))
    for job_id, hold, created in conn.execute(sa.text(
            "SELECT id, budget_hold, created_at FROM jobs WHERE budget_hold IS NOT NULL AND finished_at IS NULL")).all():
        hold = json.loads(hold) if isinstance(hold, str) else hold
        conn.execute(sa.text("INSERT INTO budget_holds (job_id, budget_ids, estimate_micros, created_at) "
                             "VALUES (:j, :b, :m, :c)").bindparams(sa.bindparam("b", type_=sa.JSON)),
                     {"j": job_id, "b": hold["budgets"], "m": hold["micros"], "c": created})
    with op.batch_alter_table("jobs") as b:
        b.drop_column("budget_hold")
    with op.batch_alter_table("budgets") as b:
        b.drop_column("spent_micros")
        b.drop_column("period_key")
