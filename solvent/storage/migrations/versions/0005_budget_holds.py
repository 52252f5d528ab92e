"""Budget holds lose their `state`: a hold is deleted when its job is priced, so every row is held.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("budget_holds") as b:
        b.drop_column("state")


def downgrade() -> None:
    with op.batch_alter_table("budget_holds") as b:
        b.add_column(sa.Column("state", sa.String(12), nullable=False, server_default="held"))
