"""Indexes for a full ledger (1,000,000 deliveries, 100,000 posts; bench/bench_scale.py): the
planner's pending posts, `status` by due time (all, or one channel), and what is still to go
out (`schedule`, the desk's queue tabs) by due time, without a full sort

Revision ID: 0013_scale
Revises: 0012_audience
"""
import sqlalchemy as sa
from alembic import op

revision = "0013_scale"
down_revision = "0012_audience"
branch_labels = None
depends_on = None

UNPLANNED = sa.text("planned_at IS NULL")
# The states `schedule` lists (engine/upcoming.py PENDING): a few thousand rows among a million sent
# ones. Without this partial index PostgreSQL walks ix_deliveries_due past every sent row.
PENDING = sa.text("state IN ('planned', 'held', 'claimed', 'sending')")


def upgrade() -> None:
    # Only the few posts the planner has yet to plan: every tick asks, and the rest never change.
    op.create_index("ix_posts_unplanned", "posts", ["id"], postgresql_where=UNPLANNED, sqlite_where=UNPLANNED)
    op.create_index("ix_deliveries_due", "deliveries", ["due_at", "id"])
    op.create_index("ix_deliveries_channel_due", "deliveries", ["channel", "due_at", "id"])
    op.create_index("ix_deliveries_pending_due", "deliveries", ["due_at", "id"], postgresql_where=PENDING,
                    sqlite_where=PENDING)


def downgrade() -> None:
    op.drop_index("ix_deliveries_pending_due", "deliveries")
    op.drop_index("ix_deliveries_channel_due", "deliveries")
    op.drop_index("ix_deliveries_due", "deliveries")
    op.drop_index("ix_posts_unplanned", "posts")
