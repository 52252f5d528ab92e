"""Running credit balances per organisation account, so admission reads one row instead of summing every leg.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_balances",
        sa.Column("org_id", sa.String(40), primary_key=True),
        sa.Column("account", sa.String(80), primary_key=True),
        sa.Column("balance_mc", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO credit_balances (org_id, account, balance_mc) SELECT org_id, account, SUM(amount_mc) "
               "FROM credit_entries WHERE org_id IS NOT NULL GROUP BY org_id, account")


def downgrade() -> None:
    op.drop_table("credit_balances")
