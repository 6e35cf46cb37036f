"""feeds.last_fetch_seconds: how long each feed's last successful fetch took (GET /metrics)

Revision ID: 0014_fetch_seconds
Revises: 0013_scale
"""
import sqlalchemy as sa
from alembic import op

revision = "0014_fetch_seconds"
down_revision = "0013_scale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("feeds", sa.Column("last_fetch_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feeds") as batch:
        batch.drop_column("last_fetch_seconds")
