"""The quiet run: what the last full `run --once` proved (quiet_state), and the validators of a
feed body that could not be read (feeds.unparsed)

Revision ID: 0015_quiet
Revises: 0014_fetch_seconds
"""
import sqlalchemy as sa
from alembic import op

revision = "0015_quiet"
down_revision = "0014_fetch_seconds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quiet_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("quiet_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("feeds", sa.Column("unparsed", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feeds") as batch:
        batch.drop_column("unparsed")
    op.drop_table("quiet_state")
