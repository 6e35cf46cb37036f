"""sign-in hardening: sign_in_throttle (attempts per name and source address, counted atomically)
and staff_users.session_epoch (signing out ends the session server-side); the per-account
failed_logins/locked_until lock is gone (anyone could lock a staff member out with it)

Revision ID: 0009_sign_in
Revises: 0008_deliverability
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_sign_in"
down_revision = "0008_deliverability"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_throttle",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))
        batch.drop_column("failed_logins")
        batch.drop_column("locked_until")


def downgrade() -> None:
    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch.drop_column("session_epoch")
    op.drop_table("sign_in_throttle")
