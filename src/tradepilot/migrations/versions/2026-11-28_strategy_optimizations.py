"""strategy optimizations

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 03:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tradepilot.core.types

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('strategy_optimization',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('strategy_config_id', sa.Uuid(), nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('strategy', sa.String(length=64), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('symbols', sa.JSON(), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('period_start', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('period_end', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('request', sa.JSON(), nullable=False),
    sa.Column('study_prefix', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('report', sa.JSON(), nullable=True),
    sa.Column('trials', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['strategy_config_id'], ['strategy_config.id'], name=op.f('fk_strategy_optimization_strategy_config_id_strategy_config'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_strategy_optimization_user_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_strategy_optimization'))
    )
    with op.batch_alter_table('strategy_optimization', schema=None) as batch_op:
        batch_op.create_index('ix_strategy_optimization_config_created', ['strategy_config_id', 'created_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('strategy_optimization', schema=None) as batch_op:
        batch_op.drop_index('ix_strategy_optimization_config_created')

    op.drop_table('strategy_optimization')
