"""Audience (issue 17): readers' choices (subscribers.cadence, subscriber_topics), the
once-per-person receipts (post_receipts), the desk's "keep out of email" (posts.no_email), and
the signup confirmation throttle (subscribers.confirm_sent_at)

Revision ID: 0012_audience
Revises: 0011_desk_roles
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_audience"
down_revision = "0011_desk_roles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite has it): a batch here rebuilt `posts`, a table others point at.
    op.add_column("subscribers", sa.Column("cadence", sa.String(length=20), nullable=True))
    op.add_column("subscribers", sa.Column("confirm_sent_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("posts", sa.Column("no_email", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "subscriber_topics",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subscriber_id", sa.Integer(), sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.UniqueConstraint("subscriber_id", "topic", name="uq_subscriber_topics"),
    )
    op.create_index("ix_subscriber_topics_subscriber_id", "subscriber_topics", ["subscriber_id"])
    op.create_table(
        "post_receipts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("post_id", sa.Integer(), sa.ForeignKey("posts.id"), nullable=False),
        sa.Column("delivery_id", sa.Integer(), sa.ForeignKey("deliveries.id"), nullable=False),
        sa.Column("cadence", sa.String(length=8), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("email", "post_id", "cadence", name="uq_post_receipts"),
    )
    op.create_index("ix_post_receipts_delivery", "post_receipts", ["delivery_id", "email"])


def downgrade() -> None:
    op.drop_index("ix_post_receipts_delivery", table_name="post_receipts")
    op.drop_table("post_receipts")
    op.drop_index("ix_subscriber_topics_subscriber_id", table_name="subscriber_topics")
    op.drop_table("subscriber_topics")
    with op.batch_alter_table("posts") as batch:
        batch.drop_column("no_email")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("confirm_sent_at")
        batch.drop_column("cadence")
