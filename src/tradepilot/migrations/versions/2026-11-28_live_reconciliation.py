"""live reconciliation: the source of orders and fills (platform | external), reconciliation
runs with their differences, and per-symbol trade cursors (docs/exchanges.md)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 03:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tradepilot.core.types

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('trading_order', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=16), server_default='platform', nullable=False))
    with op.batch_alter_table('trading_fill', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=16), server_default='platform', nullable=False))

    op.create_table('live_reconciliation_run',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('lease_token', sa.BigInteger(), nullable=False),
    sa.Column('differences', sa.JSON(), nullable=False),
    sa.Column('error_code', sa.String(length=48), nullable=True),
    sa.Column('started_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['trading_account.id'],
                            name=op.f('fk_live_reconciliation_run_account_id_trading_account'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'],
                            name=op.f('fk_live_reconciliation_run_user_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_live_reconciliation_run'))
    )
    with op.batch_alter_table('live_reconciliation_run', schema=None) as batch_op:
        batch_op.create_index('ix_live_reconciliation_run_account_seq', ['account_id', 'seq'], unique=False)
        batch_op.create_index(batch_op.f('ix_live_reconciliation_run_user_id'), ['user_id'], unique=False)

    op.create_table('live_trade_cursor',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('last_trade_id', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['trading_account.id'],
                            name=op.f('fk_live_trade_cursor_account_id_trading_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'symbol', name=op.f('pk_live_trade_cursor'))
    )


def downgrade() -> None:
    op.drop_table('live_trade_cursor')
    with op.batch_alter_table('live_reconciliation_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_live_reconciliation_run_user_id'))
        batch_op.drop_index('ix_live_reconciliation_run_account_seq')
    op.drop_table('live_reconciliation_run')
    with op.batch_alter_table('trading_fill', schema=None) as batch_op:
        batch_op.drop_column('source')
    with op.batch_alter_table('trading_order', schema=None) as batch_op:
        batch_op.drop_column('source')
