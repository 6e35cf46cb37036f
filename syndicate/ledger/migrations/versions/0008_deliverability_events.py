"""deliverability_events: bounces, complaints and unsubscribes the mail services report, one
row per (provider, provider event id) so a replayed webhook is stored once; webhook_tokens:
one-time webhook tokens (Mailgun), so a replayed request is refused

Revision ID: 0008_deliverability
Revises: 0007_flood
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_deliverability"
down_revision = "0007_flood"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliverability_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("subtype", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("provider_event_id", sa.String(length=300), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "provider_event_id", name="uq_deliverability_events_provider_event"),
    )
    op.create_index("ix_deliverability_events_email", "deliverability_events", ["email"])
    op.create_index("ix_deliverability_events_delivery", "deliverability_events", ["delivery_id"])
    op.create_table(
        "webhook_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("token", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "token", name="uq_webhook_tokens_provider_token"),
    )


def downgrade() -> None:
    op.drop_table("webhook_tokens")
    op.drop_index("ix_deliverability_events_delivery", table_name="deliverability_events")
    op.drop_index("ix_deliverability_events_email", table_name="deliverability_events")
    op.drop_table("deliverability_events")
