"""digest editions record the posts they hold (unique per channel and post)

Revision ID: 0004
Revises: 0003

Editions planned before this revision kept their posts only in the payload
(``payload["edition"]["post_ids"]``): they are copied here, so no post already mailed in a
digest is mailed again by the next edition.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('digest_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=100), nullable=False),
    sa.Column('post_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['post_id'], ['posts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('channel', 'post_id', name='uq_digest_items_channel_post')
    )
    op.create_index('ix_digest_items_delivery', 'digest_items', ['delivery_id'], unique=False)
    _copy_memberships()


def downgrade() -> None:
    op.drop_index('ix_digest_items_delivery', table_name='digest_items')
    op.drop_table('digest_items')


def _copy_memberships() -> None:
    conn = op.get_bind()
    deliveries = sa.table('deliveries', sa.column('id', sa.Integer), sa.column('subject', sa.String),
                          sa.column('channel', sa.String), sa.column('payload', sa.JSON))
    posts = sa.table('posts', sa.column('id', sa.Integer))
    items = sa.table('digest_items', sa.column('delivery_id', sa.Integer), sa.column('channel', sa.String),
                     sa.column('post_id', sa.Integer))
    existing = set(conn.execute(sa.select(posts.c.id)).scalars())
    taken: set[tuple[str, int]] = set()
    rows = []
    for did, channel, payload in conn.execute(
            sa.select(deliveries.c.id, deliveries.c.channel, deliveries.c.payload)
            .where(deliveries.c.subject.like('digest:%')).order_by(deliveries.c.id)):
        edition = (payload or {}).get('edition') or {}
        for pid in edition.get('post_ids') or []:
            if pid in existing and (channel, pid) not in taken:  # the earliest edition keeps it
                taken.add((channel, pid))
                rows.append({'delivery_id': did, 'channel': channel, 'post_id': pid})
    if rows:
        op.bulk_insert(items, rows)
