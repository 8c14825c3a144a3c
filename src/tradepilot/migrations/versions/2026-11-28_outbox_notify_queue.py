"""outbox notify queue: the notifier reads the events still to notify through a partial index
(``outbox_event.notify``) instead of re-scanning five minutes of events against its receipts;
its scan cursor goes

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-28 16:20:00.000000
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

import tradepilot.core.types

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

# the event types the consumer read before this revision (notifications/sources.py)
_EXACT = ("fill.created", "order.updated", "alert.triggered", "strategy_run.started", "strategy_run.stopped",
          "strategy_run.failed")
_PREFIXES = ("strategy.", "security.", "report.")


def upgrade() -> None:
    with op.batch_alter_table('outbox_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notify', sa.Boolean(), nullable=True))
        batch_op.create_index('ix_outbox_event_notify', ['created_at', 'id'], unique=False,
                              postgresql_where=sa.text('notify = true'), sqlite_where=sa.text('notify = 1'))
    # Queue what the old consumer had not handled yet: the candidate events of users from its
    # cursor's look-back (5 minutes) on that have no receipt. (Events that make no notification
    # among them are cleared by the consumer without one.)
    moment = tradepilot.core.types.UTCDateTime(timezone=True)
    outbox = sa.table('outbox_event', sa.column('id', sa.String), sa.column('type', sa.String),
                      sa.column('user_id', sa.Uuid), sa.column('created_at', moment), sa.column('notify', sa.Boolean))
    cursor = sa.table('notification_cursor', sa.column('consumer', sa.String), sa.column('position', moment))
    receipts = sa.table('consumed_event', sa.column('consumer', sa.String), sa.column('event_id', sa.String))
    bind = op.get_bind()
    position = bind.execute(sa.select(cursor.c.position).where(cursor.c.consumer == 'notifications')).scalar()
    if position is not None:
        bind.execute(sa.update(outbox).where(
            outbox.c.user_id.is_not(None),
            sa.or_(outbox.c.type.in_(_EXACT), *(outbox.c.type.startswith(p) for p in _PREFIXES)),
            outbox.c.created_at >= position - timedelta(minutes=5),
            ~sa.exists().where(receipts.c.consumer == 'notifications', receipts.c.event_id == outbox.c.id),
        ).values(notify=True))
    op.drop_table('notification_cursor')


def downgrade() -> None:
    op.create_table('notification_cursor',
                    sa.Column('consumer', sa.String(length=64), nullable=False),
                    sa.Column('position', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('consumer', name=op.f('pk_notification_cursor')))
    with op.batch_alter_table('outbox_event', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_event_notify', postgresql_where=sa.text('notify = true'),
                            sqlite_where=sa.text('notify = 1'))
        batch_op.drop_column('notify')
