"""Security: keys owned by the user who made them, operator organisations, e-mail verification,
throttles for password checks and sign-ups, and the retention clock of job inputs.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

from solvent.storage.models import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no batch): on SQLite a batch rebuild of `organisations` would drop and re-create it,
    # and with foreign keys on that cascades into every table that refers to it.
    op.add_column("api_keys", sa.Column("created_by", sa.String(40), nullable=True))
    op.create_index("ix_api_keys_created_by", "api_keys", ["created_by"])
    op.add_column("organisations", sa.Column("operator", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("organisations", sa.Column("needs_verification", sa.Boolean(), nullable=False,
                                             server_default=sa.false()))
    op.add_column("users", sa.Column("email_verified_at", UTCDateTime(), nullable=True))
    op.add_column("jobs", sa.Column("inputs_collected_at", UTCDateTime(), nullable=True))
    op.create_table(
        "throttles",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("blocked_until", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "email_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_email_tokens_user_id", "email_tokens", ["user_id"])
    # Until now an operator user was an operator everywhere; from now on only in an organisation marked
    # as the operator's: every organisation an operator user owns keeps that power.
    op.get_bind().execute(sa.text(
        "UPDATE organisations SET operator = :t WHERE id IN (SELECT m.org_id FROM memberships m "
        "JOIN users u ON u.id = m.user_id WHERE u.operator = :t AND m.role = 'owner')").bindparams(t=True))
    # Every key that already carries `operator` lives in such an organisation (it was minted by one).
    op.get_bind().execute(sa.text(
        "UPDATE organisations SET operator = :t WHERE id IN (SELECT org_id FROM api_keys WHERE "
        "CAST(scopes AS TEXT) LIKE '%operator%')").bindparams(t=True))


def downgrade() -> None:
    # The added columns stay (dropping a column of `organisations` on SQLite means a rebuild that cascades).
    op.drop_table("email_tokens")
    op.drop_table("throttles")
