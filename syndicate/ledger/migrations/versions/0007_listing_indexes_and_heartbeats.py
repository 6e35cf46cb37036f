"""Indexes for long lists (the desk's dated Sent tab, `status --since`) and the runner heartbeat

Revision ID: 0007_flood
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_flood"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_state_sent", "deliveries", ["state", "sent_at"])
    op.create_index("ix_deliveries_updated", "deliveries", ["updated_at"])
    op.create_table(
        "heartbeats",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("host", sa.String(200), nullable=False, server_default=""),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_poll_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("heartbeats")
    op.drop_index("ix_deliveries_updated", "deliveries")
    op.drop_index("ix_deliveries_state_sent", "deliveries")
