"""Desk roles and content current at send time: staff_users.role (existing accounts become
admin) and deliveries.rendered_hash (the post's content hash the stored payload was rendered
from, so a send can tell whether the feed's copy changed since)

Revision ID: 0011_desk_roles
Revises: 0010_pause_alerts
"""
import sqlalchemy as sa
from alembic import op

revision = "0011_desk_roles"
down_revision = "0010_pause_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(sa.Column("role", sa.String(length=12), nullable=False, server_default="admin"))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("rendered_hash", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("rendered_hash")
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_column("role")
