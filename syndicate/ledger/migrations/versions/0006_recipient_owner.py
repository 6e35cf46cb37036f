"""recipient_sends.owner: the send that holds a recipient, so a resumed send can tell its own
claims from a dead worker's (a dead worker's `sending` was never mailed; its `issued` may have been)

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recipient_sends") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recipient_sends") as batch:
        batch.drop_column("owner")
