"""The compute ledger: versioned prices, worker uptime, per-job cost.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

from solvent.storage.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as b:
        b.add_column(sa.Column("commitment", sa.String(16), nullable=False, server_default="on_demand"))
    op.create_table(
        "worker_uptime",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("worker_id", sa.String(40), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_worker_uptime_worker_id", "worker_uptime", ["worker_id"])
    op.create_table(
        "price_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("instance_type", sa.String(100), nullable=False),
        sa.Column("commitment", sa.String(16), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("micros_per_hour", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("effective_from", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_price_versions_key", "price_versions",
                    ["provider", "instance_type", "commitment", "effective_from"])
    op.create_table(
        "job_costs",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("worker_id", sa.String(40), nullable=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("instance_type", sa.String(100), nullable=False),
        sa.Column("commitment", sa.String(16), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("plan_id", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("paid_by", sa.String(16), nullable=False),
        sa.Column("grant_ids", sa.JSON(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("device_ms", sa.BigInteger(), nullable=False),
        sa.Column("rate_micros_per_hour", sa.BigInteger(), nullable=False),
        sa.Column("list_rate_micros_per_hour", sa.BigInteger(), nullable=False),
        sa.Column("rate_source", sa.String(200), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("list_cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("captured_mc", sa.BigInteger(), nullable=False),
        sa.Column("revenue_micros", sa.BigInteger(), nullable=False),
        sa.Column("given_away_mc", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_job_costs_org_id", "job_costs", ["org_id"])
    op.create_index("ix_job_costs_worker_id", "job_costs", ["worker_id"])
    op.create_index("ix_job_costs_finished", "job_costs", ["finished_at"])
    op.create_table(
        "finances",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("as_of", UTCDateTime(), nullable=False),
        sa.Column("cash_micros", sa.BigInteger(), nullable=False),
        sa.Column("payroll_micros", sa.BigInteger(), nullable=False),
        sa.Column("rent_micros", sa.BigInteger(), nullable=False),
        sa.Column("other_micros", sa.BigInteger(), nullable=False),
        sa.Column("committed_cloud_micros", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
    )
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(80), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("limit_micros", sa.BigInteger(), nullable=True),
        sa.Column("thresholds_bp", sa.JSON(), nullable=False),
        sa.Column("hard", sa.Boolean(), nullable=False),
        sa.Column("runway_floor_cm", sa.Integer(), nullable=True),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("reserved_micros", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "budget_spend",
        sa.Column("budget_id", sa.String(40), primary_key=True),
        sa.Column("period_key", sa.String(16), primary_key=True),
        sa.Column("spent_micros", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "budget_holds",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("budget_ids", sa.JSON(), nullable=False),
        sa.Column("estimate_micros", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "budget_alerts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("budget_id", sa.String(40), nullable=False),
        sa.Column("period_key", sa.String(16), nullable=False),
        sa.Column("threshold_bp", sa.Integer(), nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), nullable=False),
        sa.Column("limit_micros", sa.BigInteger(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("delivered", sa.String(200), nullable=False),
        sa.UniqueConstraint("budget_id", "period_key", "threshold_bp", name="uq_budget_alert"),
    )
    op.create_index("ix_budget_alerts_budget_id", "budget_alerts", ["budget_id"])
    op.create_table(
        "bill_imports",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("providers", sa.JSON(), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("billed_micros", sa.BigInteger(), nullable=False),
        sa.Column("effective_micros", sa.BigInteger(), nullable=False),
        sa.Column("imported_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "bill_lines",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("import_id", sa.String(40), sa.ForeignKey("bill_imports.id", ondelete="CASCADE"), nullable=False),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("resource_id", sa.Text(), nullable=False),
        sa.Column("day", UTCDateTime(), nullable=False),
        sa.Column("charge_category", sa.String(32), nullable=False),
        sa.Column("commitment_status", sa.String(16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("billed_micros", sa.BigInteger(), nullable=False),
        sa.Column("effective_micros", sa.BigInteger(), nullable=False),
        sa.Column("list_micros", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_bill_lines_import_id", "bill_lines", ["import_id"])
    op.create_index("ix_bill_lines_provider_day", "bill_lines", ["provider", "day"])


def downgrade() -> None:
    op.drop_table("bill_lines")
    op.drop_table("bill_imports")
    op.drop_table("budget_alerts")
    op.drop_table("budget_holds")
    op.drop_table("budget_spend")
    op.drop_table("budgets")
    op.drop_table("finances")
    op.drop_table("job_costs")
    op.drop_table("price_versions")
    op.drop_table("worker_uptime")
    with op.batch_alter_table("workers") as b:
        b.drop_column("commitment")
