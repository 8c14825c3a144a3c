"""ai feeds: the operator's RSS/Atom entries already scored, each feed's validators; feed texts have no user

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-28 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tradepilot.core.types

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ai_feed_entry',
    sa.Column('feed', sa.String(length=64), nullable=False),
    sa.Column('entry_key', sa.String(length=64), nullable=False),
    sa.Column('link', sa.Text(), nullable=True),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('symbols', sa.Text(), nullable=False),
    sa.Column('published_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stored_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ai_feed_entry')),
    sa.UniqueConstraint('feed', 'entry_key', name='uq_ai_feed_entry_feed_entry_key'),
    )
    op.create_table('ai_feed_state',
    sa.Column('feed', sa.String(length=64), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('etag', sa.String(length=512), nullable=True),
    sa.Column('last_modified', sa.String(length=128), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('entries_stored', sa.Integer(), nullable=False),
    sa.Column('fetched_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('feed', name=op.f('pk_ai_feed_state')),
    )
    # texts of the operator's feeds belong to no user: every user's sentiment includes them
    with op.batch_alter_table('ai_sentiment_text') as batch:
        batch.alter_column('user_id', existing_type=sa.Uuid(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM ai_sentiment_text WHERE user_id IS NULL")
    with op.batch_alter_table('ai_sentiment_text') as batch:
        batch.alter_column('user_id', existing_type=sa.Uuid(), nullable=False)
    op.drop_table('ai_feed_state')
    op.drop_table('ai_feed_entry')
