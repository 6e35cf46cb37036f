"""The pause switch, alerts already sent, and a feed's failed polls in a row

Revision ID: 0010_pause_alerts
Revises: 0009_sign_in
"""
import sqlalchemy as sa
from alembic import op

revision = "0010_pause_alerts"
down_revision = "0009_sign_in"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pause_switch",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("actor", sa.String(100), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
    )
    # One row, always there: a claim locks it (FOR SHARE) and a pause updates it.
    op.execute("INSERT INTO pause_switch (id, paused) VALUES (1, false)")
    op.create_table(
        "alerts_sent",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("kind", "subject", name="uq_alerts_sent_kind_subject"),
    )
    op.add_column("feeds", sa.Column("failing", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("feeds", "failing")
    op.drop_table("alerts_sent")
    op.drop_table("pause_switch")
