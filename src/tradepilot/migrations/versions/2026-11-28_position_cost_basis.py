"""position cost basis: the exact cost of the open quantity, so the average entry is one
rounding of cost ÷ quantity (a position opened by one order averages what the order did)

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-28 10:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tradepilot.core.types

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL on existing rows: their next fill starts from quantity × average entry, as before
    with op.batch_alter_table('trading_position') as batch:
        batch.add_column(sa.Column('cost_basis', tradepilot.core.types.Money(precision=36, scale=18), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('trading_position') as batch:
        batch.drop_column('cost_basis')
