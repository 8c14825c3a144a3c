"""strategy runs: live runs of strategy configurations, and the strategy attribution of orders

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 03:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tradepilot.core.types

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('strategy_run',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('strategy_config_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('strategy', sa.String(length=64), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('symbols', sa.JSON(), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('stop_reason', sa.String(length=32), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('last_bar_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('orders_placed', sa.Integer(), nullable=False),
    sa.Column('orders_rejected', sa.Integer(), nullable=False),
    sa.Column('created_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['trading_account.id'],
                            name=op.f('fk_strategy_run_account_id_trading_account'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['strategy_config_id'], ['strategy_config.id'],
                            name=op.f('fk_strategy_run_strategy_config_id_strategy_config'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_strategy_run_user_id_user_account'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_strategy_run'))
    )
    with op.batch_alter_table('strategy_run', schema=None) as batch_op:
        batch_op.create_index('ix_strategy_run_config_created', ['strategy_config_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_strategy_run_status', ['status'], unique=False)
        batch_op.create_index('ix_strategy_run_user_created', ['user_id', 'created_at', 'id'], unique=False)

    with op.batch_alter_table('trading_order', schema=None) as batch_op:
        batch_op.add_column(sa.Column('strategy_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('strategy_run_id', sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f('ix_trading_order_strategy_run_id'), ['strategy_run_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('trading_order', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trading_order_strategy_run_id'))
        batch_op.drop_column('strategy_run_id')
        batch_op.drop_column('strategy_id')

    with op.batch_alter_table('strategy_run', schema=None) as batch_op:
        batch_op.drop_index('ix_strategy_run_user_created')
        batch_op.drop_index('ix_strategy_run_status')
        batch_op.drop_index('ix_strategy_run_config_created')

    op.drop_table('strategy_run')
