"""signals: trading signals followed against the market, and users' inbound signal webhooks

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28 06:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tradepilot.core.types

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    money = tradepilot.core.types.Money(precision=36, scale=18)
    utc = tradepilot.core.types.UTCDateTime(timezone=True)
    op.create_table('signal',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('strength', sa.Float(), nullable=False),
    sa.Column('entry', money, nullable=True),
    sa.Column('stop_loss', money, nullable=True),
    sa.Column('take_profit', money, nullable=True),
    sa.Column('timeframe', sa.String(length=4), nullable=False),
    sa.Column('horizon', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=12), nullable=False),
    sa.Column('reason', sa.String(length=1000), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('expires_at', utc, nullable=False),
    sa.Column('triggered_at', utc, nullable=True),
    sa.Column('trigger_price', money, nullable=True),
    sa.Column('outcome', sa.String(length=12), nullable=True),
    sa.Column('outcome_at', utc, nullable=True),
    sa.Column('exit_price', money, nullable=True),
    sa.Column('horizon_return', money, nullable=True),
    sa.Column('evaluated_at', utc, nullable=True),
    sa.Column('created_at', utc, nullable=False),
    sa.Column('updated_at', utc, nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_signal_user_id_user_account'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signal')),
    )
    op.create_index('ix_signal_user_created', 'signal', ['user_id', 'created_at', 'id'], unique=False)
    op.create_index('ix_signal_status', 'signal', ['status'], unique=False)
    op.create_table('signal_webhook',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('key', sa.String(length=32), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', utc, nullable=False),
    sa.Column('rotated_at', utc, nullable=False),
    sa.Column('last_used_at', utc, nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_signal_webhook_user_id_user_account'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signal_webhook')),
    sa.UniqueConstraint('key', name=op.f('uq_signal_webhook_key')),
    sa.UniqueConstraint('user_id', name=op.f('uq_signal_webhook_user_id')),
    )


def downgrade() -> None:
    op.drop_table('signal_webhook')
    op.drop_index('ix_signal_status', table_name='signal')
    op.drop_index('ix_signal_user_created', table_name='signal')
    op.drop_table('signal')
