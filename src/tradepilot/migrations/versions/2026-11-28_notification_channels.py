"""notification channels: targets (Telegram chats, webhooks, Web Push subscriptions), Telegram
link codes and the per-attempt delivery log (docs/notifications.md)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 03:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tradepilot.core.types

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('notification_target',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('channel', sa.String(length=24), nullable=False),
    sa.Column('address_encrypted', sa.Text(), nullable=False),
    sa.Column('address_hash', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=True),
    sa.Column('trading_commands', sa.Boolean(), nullable=False),
    sa.Column('created_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_notification_target_user_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_target')),
    sa.UniqueConstraint('channel', 'address_hash', name=op.f('uq_notification_target_channel_address_hash'))
    )
    with op.batch_alter_table('notification_target', schema=None) as batch_op:
        batch_op.create_index('ix_notification_target_user_channel', ['user_id', 'channel'], unique=False)

    op.create_table('telegram_link_code',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('expires_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_telegram_link_code_user_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('code_hash', name=op.f('pk_telegram_link_code'))
    )
    with op.batch_alter_table('telegram_link_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_telegram_link_code_user_id'), ['user_id'], unique=False)

    op.create_table('notification_attempt',
    sa.Column('notification_id', sa.Uuid(), nullable=False),
    sa.Column('channel', sa.String(length=24), nullable=False),
    sa.Column('target_id', sa.Uuid(), nullable=True),
    sa.Column('job_id', sa.Uuid(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('detail', sa.String(length=300), nullable=True),
    sa.Column('retry_after_seconds', sa.Float(), nullable=True),
    sa.Column('created_at', tradepilot.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['notification_id'], ['notification.id'], name=op.f('fk_notification_attempt_notification_id_notification'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_attempt'))
    )
    with op.batch_alter_table('notification_attempt', schema=None) as batch_op:
        batch_op.create_index('ix_notification_attempt_notification', ['notification_id', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('notification_attempt', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_attempt_notification')
    op.drop_table('notification_attempt')
    with op.batch_alter_table('telegram_link_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_telegram_link_code_user_id'))
    op.drop_table('telegram_link_code')
    with op.batch_alter_table('notification_target', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_target_user_channel')
    op.drop_table('notification_target')
