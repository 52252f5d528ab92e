"""Job costs record the device call a batched job shared (`batch_id`, empty when it ran alone).

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_costs") as b:
        b.add_column(sa.Column("batch_id", sa.String(40), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("job_costs") as b:
        b.drop_column("batch_id")
