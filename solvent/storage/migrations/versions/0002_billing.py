"""Billing: plans, the credit ledger (transactions, entries, holds), grants, webhook events; key caps.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

from solvent.storage.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organisations") as b:
        b.add_column(sa.Column("plan_id", sa.String(40), nullable=False, server_default="community"))
        b.add_column(sa.Column("plan_anchor_at", UTCDateTime(), nullable=True))
        b.add_column(sa.Column("stripe_customer_id", sa.String(100), nullable=True))
    op.create_index("ix_organisations_stripe_customer_id", "organisations", ["stripe_customer_id"])
    with op.batch_alter_table("api_keys") as b:
        b.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
        b.add_column(sa.Column("credit_cap_mc", sa.BigInteger(), nullable=True))
        b.add_column(sa.Column("cap_period", sa.String(8), nullable=False, server_default="month"))
        b.add_column(sa.Column("max_pixels", sa.Integer(), nullable=True))
        b.add_column(sa.Column("max_steps", sa.Integer(), nullable=True))
        b.add_column(sa.Column("rpm", sa.Integer(), nullable=True))
        b.add_column(sa.Column("concurrent_jobs", sa.Integer(), nullable=True))
        b.add_column(sa.Column("rotated_from", sa.String(40), nullable=True))
        b.add_column(sa.Column("preferences", sa.JSON(), nullable=False, server_default="{}"))
    op.create_index("ix_jobs_org_created", "jobs", ["org_id", "created_at"])
    op.create_table(
        "plans",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("price_micros", sa.BigInteger(), nullable=True),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("included_mc", sa.BigInteger(), nullable=False),
        sa.Column("daily_images", sa.Integer(), nullable=True),
        sa.Column("commercial", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("concurrent_jobs", sa.Integer(), nullable=False),
        sa.Column("rpm", sa.Integer(), nullable=False),
        sa.Column("max_pixels", sa.BigInteger(), nullable=False),
        sa.Column("max_steps", sa.Integer(), nullable=False),
        sa.Column("allowed_models", sa.JSON(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "credit_txns",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("org_id", sa.String(40), sa.ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("amount_mc", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=True),
        sa.Column("grant_id", sa.String(40), nullable=True),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_credit_txns_org_id", "credit_txns", ["org_id"])
    op.create_index("ix_credit_txns_job_id", "credit_txns", ["job_id"])
    op.create_table(
        "credit_entries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("txn_id", sa.String(40), sa.ForeignKey("credit_txns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=True),
        sa.Column("account", sa.String(80), nullable=False),
        sa.Column("amount_mc", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_credit_entries_txn_id", "credit_entries", ["txn_id"])
    op.create_index("ix_credit_entries_org_account", "credit_entries", ["org_id", "account"])
    op.create_table(
        "credit_holds",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("org_id", sa.String(40), sa.ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("api_key_id", sa.String(40), nullable=True),
        sa.Column("amount_mc", sa.BigInteger(), nullable=False),
        sa.Column("legs", sa.JSON(), nullable=False),
        sa.Column("period", sa.String(32), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("captured_mc", sa.BigInteger(), nullable=False),
        sa.Column("paid_by", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("settled_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_credit_holds_org_id", "credit_holds", ["org_id"])
    op.create_index("ix_credit_holds_api_key_id", "credit_holds", ["api_key_id"])
    op.create_table(
        "grants",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("org_id", sa.String(40), sa.ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("amount_mc", sa.BigInteger(), nullable=False),
        sa.Column("daily_cap_mc", sa.BigInteger(), nullable=True),
        sa.Column("gpu_millihours", sa.BigInteger(), nullable=True),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_grants_org_id", "grants", ["org_id"])
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(120), primary_key=True),
        sa.Column("type", sa.String(80), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    for t in ("webhook_events", "grants", "credit_holds", "credit_entries", "credit_txns", "plans"):
        op.drop_table(t)
    op.drop_index("ix_jobs_org_created", "jobs")
    with op.batch_alter_table("api_keys") as b:
        for c in ("expires_at", "credit_cap_mc", "cap_period", "max_pixels", "max_steps", "rpm", "concurrent_jobs",
                  "rotated_from", "preferences"):
            b.drop_column(c)
    op.drop_index("ix_organisations_stripe_customer_id", "organisations")
    with op.batch_alter_table("organisations") as b:
        for c in ("plan_id", "plan_anchor_at", "stripe_customer_id"):
            b.drop_column(c)
