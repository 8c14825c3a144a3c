"""ai sentiment: texts a user has scored, per symbol

Revision ID: 0014
Revises: 0012
Create Date: 2026-11-28 04:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tradepilot.core.types

revision = '0014'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ai_sentiment_text',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=True),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=8), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('p_bearish', sa.Float(), nullable=False),
    sa.Column('p_neutral', sa.Float(), nullable=False),
    sa.Column('p_bullish', sa.Float(), nullable=False),
    sa.Column('published_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_ai_sentiment_text_user_id_user_account'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ai_sentiment_text')),
    sa.UniqueConstraint('user_id', 'symbol', 'digest', name='uq_ai_sentiment_text_user_symbol_digest'),
    )
    op.create_index('ix_ai_sentiment_text_user_symbol_published', 'ai_sentiment_text',
                    ['user_id', 'symbol', 'published_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_ai_sentiment_text_user_symbol_published', table_name='ai_sentiment_text')
    op.drop_table('ai_sentiment_text')
