"""live accounts: encrypted exchange credentials and key permissions on trading_account,
the exchange's order id on trading_order (docs/exchanges.md)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 00:56:41.616569
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('trading_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credentials_encrypted', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('key_permissions', sa.JSON(), nullable=True))

    with op.batch_alter_table('trading_order', schema=None) as batch_op:
        batch_op.add_column(sa.Column('exchange_order_id', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('trading_order', schema=None) as batch_op:
        batch_op.drop_column('exchange_order_id')

    with op.batch_alter_table('trading_account', schema=None) as batch_op:
        batch_op.drop_column('key_permissions')
        batch_op.drop_column('credentials_encrypted')
